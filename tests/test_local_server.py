"""`imgrec server`: a local Prefect server kept running, which `imgrec run` then uses instead of starting a
temporary one (the run is still recorded in Prefect)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx

from tests.helpers import encode, free_port, photo

IMGREC = str(Path(sys.executable).parent / "imgrec")


def test_runs_use_the_server_imgrec_keeps(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env.update(IMGREC_STATE_DIR=str(tmp_path / "state"), PREFECT_HOME=str(tmp_path / "prefect-home"))
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "coffee.jpg").write_bytes(encode(photo("coffee")))

    def imgrec(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
        return subprocess.run([IMGREC, *args], capture_output=True, text=True, timeout=timeout, env=env)

    assert imgrec("server", "status").returncode == 1
    port = free_port()
    started = imgrec("server", "start", "--port", str(port))
    assert started.returncode == 0, started.stdout + started.stderr
    url = f"http://127.0.0.1:{port}/api"
    try:
        assert imgrec("server", "status").stdout.strip() == f"running at {url}"
        run = imgrec("run", str(tmp_path / "src"), "--out", str(tmp_path / "out"), "--apis", "image_tagging")
        assert run.returncode == 0, run.stdout + run.stderr
        assert "Starting temporary server" not in run.stderr  # the kept server, not a temporary one
        flow_runs = httpx.post(url + "/flow_runs/filter", json={}, timeout=10).json()
        assert [(r["parameters"]["run"]["out"], r["state_type"]) for r in flow_runs] == [
            (str(tmp_path / "out"), "COMPLETED")]
    finally:
        stopped = imgrec("server", "stop")
    assert stopped.stdout.strip() == "stopped"
    assert imgrec("server", "status").returncode == 1
