"""A local Prefect server kept running between runs, so `imgrec run` need not start a temporary one.

    imgrec server start [--port 4200]    # once; in the background
    imgrec run photos/                   # uses it: runs are recorded there, visible in its UI
    imgrec server stop

Without it, every `imgrec run` (with no PREFECT_API_URL) starts and stops Prefect's temporary server, which
costs ~15-20 s of a small run. The server's address and process id live in `<state_dir>/prefect-server.json`
(Settings' `state_dir`); a run uses it only while it answers, and never when PREFECT_API_URL is set.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

STATE_FILE = "prefect-server.json"


def _state(state_dir: Path) -> dict | None:
    try:
        return json.loads((state_dir / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None


def _healthy(url: str, timeout: float = 1.0) -> bool:
    import httpx

    try:
        return httpx.get(url.rstrip("/") + "/health", timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def running_url(state_dir: Path) -> str | None:
    """The API URL of the server `imgrec server start` left running, if it still answers."""
    state = _state(state_dir)
    return state["url"] if state and _healthy(state["url"]) else None


def start(state_dir: Path, port: int, wait_s: float = 120.0) -> str:
    if (url := running_url(state_dir)) is not None:
        return url
    state_dir.mkdir(parents=True, exist_ok=True)
    url = f"http://127.0.0.1:{port}/api"
    log = open(state_dir / "prefect-server.log", "ab")
    env = {**os.environ, "DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    proc = subprocess.Popen([str(Path(sys.executable).parent / "prefect"), "server", "start", "--host", "127.0.0.1",
                             "--port", str(port)], stdout=log, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)  # outlives this command, not its terminal's signals
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the Prefect server exited ({proc.returncode}); see {state_dir / 'prefect-server.log'}")
        if _healthy(url):
            (state_dir / STATE_FILE).write_text(json.dumps({"url": url, "pid": proc.pid}))
            return url
        time.sleep(0.5)
    proc.terminate()
    raise RuntimeError(f"the Prefect server did not answer within {wait_s:.0f} s")


def stop(state_dir: Path) -> bool:
    state = _state(state_dir)
    (state_dir / STATE_FILE).unlink(missing_ok=True)
    if not state:
        return False
    try:
        os.killpg(state["pid"], signal.SIGTERM)  # the server and the workers it started
    except (ProcessLookupError, PermissionError):
        return False
    return True
