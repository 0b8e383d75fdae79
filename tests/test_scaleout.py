"""Scale-out: one request rate across worker processes (Prefect global concurrency limit), and Prefect
deployments served by a real `prefect server` and worker."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

from tests.helpers import AK, PROJECT, SK, encode, photo, read_table


class RecordingApi:
    """Answers celebrity recognition with an empty result and records when each request arrived."""

    def __init__(self):
        self.arrivals: list[float] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.arrivals.append(time.monotonic())
                body = b'{"result": []}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def max_in_window(self, seconds: float = 1.0) -> int:
        times = sorted(self.arrivals)
        best, start = 0, 0
        for end in range(len(times)):
            while times[end] - times[start] >= seconds:
                start += 1
            best = max(best, end - start + 1)
        return best


def _images(folder: Path, n: int) -> None:
    folder.mkdir(parents=True)
    base = photo("coffee")[::4, ::4]
    for i in range(n):
        (folder / f"{i:03d}.jpg").write_bytes(encode(np.ascontiguousarray(np.roll(base, i, axis=1))))


def test_one_rate_across_two_worker_processes(prefect_api, tmp_path):
    api = RecordingApi()
    rate, per_worker = 6, 30
    env = {**os.environ, "PREFECT_API_URL": prefect_api, "HUAWEICLOUD_SDK_AK": AK, "HUAWEICLOUD_SDK_SK": SK,
           "HUAWEICLOUD_SDK_PROJECT_ID": PROJECT}
    procs = []
    for worker in ("a", "b"):
        _images(tmp_path / worker, per_worker)
        procs.append(subprocess.Popen(
            [str(Path(sys.executable).parent / "imgrec"), "run", str(tmp_path / worker), "--out", str(tmp_path / f"out-{worker}"),
             "--backend", "http", "--endpoint", api.base_url, "--apis", "celebrity_recognition", "--rate", str(rate),
             "--global-limit", "imgrec-test-api", "--concurrency", "4", "--shard-size", "10"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
    outputs = [p.communicate(timeout=300)[0].decode() for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    assert len(api.arrivals) == 2 * per_worker
    span = max(api.arrivals) - min(api.arrivals)
    aggregate = (len(api.arrivals) - 1) / span
    print(f"aggregate rate {aggregate:.2f}/s against a limit of {rate}/s; busiest 1-s window {api.max_in_window()}")
    assert aggregate <= rate * 1.05
    assert api.max_in_window() <= rate + 1
    for worker in ("a", "b"):
        assert len(read_table(tmp_path / f"out-{worker}", "images", "WHERE status = 'ok'")) == per_worker


async def test_workers_starting_together_create_the_global_limit_once(prefect_api):
    """Prefect's upsert reads, then creates: workers starting at the same moment race to create the limit
    (seen once in CI as ObjectAlreadyExists failing a run). Every one of them must succeed."""
    import asyncio

    from prefect.client.orchestration import get_client

    from imgrec.connectors.ratelimit import ensure_global_limit

    for round_ in range(3):
        name = f"imgrec-race-{round_}"
        await asyncio.gather(*(ensure_global_limit(name, 6) for _ in range(8)))
        async with get_client() as client:
            limit = await client.read_global_concurrency_limit_by_name(name)
        assert limit.limit == 6 and limit.slot_decay_per_second == 6


def _prefect(args: list[str], env: dict, timeout: float = 120) -> str:
    proc = subprocess.run([str(Path(sys.executable).parent / "prefect"), *args], env=env, capture_output=True,
                          text=True, timeout=timeout, cwd=Path(__file__).parents[1])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_deployments_on_a_real_prefect_server(tmp_path, gallery, service):
    from tests.helpers import free_port, write_config

    import httpx

    port = free_port()
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-home"), "DO_NOT_TRACK": "1",
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
           "IMGREC_PROJECT_DIR": str(Path(__file__).parents[1])}
    server = subprocess.Popen([str(Path(sys.executable).parent / "prefect"), "server", "start", "--host", "127.0.0.1",
                               "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 90
        while time.time() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        _prefect(["work-pool", "create", "imgrec-process", "--type", "process"], env)
        _prefect(["--no-prompt", "deploy", "--all", "--prefect-file", "deployments/prefect.yaml"], env)
        nightly = _prefect(["deployment", "inspect", "catalog-tagging/catalog-tagging-nightly"], env)
        assert "30 1 * * *" in nightly and "Asia/Shanghai" in nightly

        source, out = tmp_path / "catalog", tmp_path / "warehouse"
        (source / "new").mkdir(parents=True)
        (source / "old").mkdir()
        (source / "new" / "astronaut.jpg").write_bytes(encode(photo("astronaut")))
        (source / "old" / "coffee.jpg").write_bytes(encode(photo("coffee")))
        config = write_config(tmp_path, gallery)
        params = {"run": {"source": str(source), "out": str(out), "prefix": "new/", "backend": "local",
                          "apis": ["celebrity_recognition"], "config": str(config)}}
        _prefect(["deployment", "run", "catalog-backfill/catalog-backfill", "--params", json.dumps(params)], env)
        _prefect(["worker", "start", "--pool", "imgrec-process", "--run-once"], env, timeout=300)
        images = read_table(out, "images")
        assert [(r["key"], r["status"]) for r in images] == [("new/astronaut.jpg", "ok")]
        assert read_table(out, "faces")[0]["label"] == "Eileen Collins"
        runs = read_table(out, "runs")
        assert runs[0]["flow"] == "catalog-backfill" and json.loads(runs[0]["parameters"])["prefix"] == "new/"

        # A night with a wrong secret key on the worker: the flow run ends Failed, not Completed.
        failing = {"run": {"source": str(source), "out": str(tmp_path / "failing"), "backend": "http",
                           "endpoint": service.base_url, "apis": ["celebrity_recognition"]}}
        _prefect(["deployment", "run", "catalog-backfill/catalog-backfill", "--params", json.dumps(failing)], env)
        worker_env = {**env, "HUAWEICLOUD_SDK_AK": AK, "HUAWEICLOUD_SDK_SK": "wrong", "HUAWEICLOUD_SDK_PROJECT_ID": PROJECT}
        subprocess.run([str(Path(sys.executable).parent / "prefect"), "worker", "start", "--pool", "imgrec-process",
                        "--run-once"], env=worker_env, capture_output=True, text=True, timeout=300,
                       cwd=Path(__file__).parents[1])
        flow_runs = httpx.post(f"http://127.0.0.1:{port}/api/flow_runs/filter", json={}).json()
        states = sorted((r["parameters"].get("run", {}).get("out"), r["state_type"]) for r in flow_runs)
        assert (str(out), "COMPLETED") in states and (str(tmp_path / "failing"), "FAILED") in states, states
        assert {r["status"] for r in read_table(tmp_path / "failing", "images")} == {"failed"}
    finally:
        server.terminate()
        server.wait(20)


def test_service_with_two_worker_processes(tmp_path, gallery):
    import httpx
    import requests

    from tests.helpers import DOMAIN, PASSWORD, PROJECT_NAME, USER, ServiceProcess, write_config

    service = ServiceProcess(write_config(tmp_path, gallery), tmp_path / "service.log", workers=2)
    try:
        body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
            "name": USER, "password": PASSWORD, "domain": {"name": DOMAIN}}}}, "scope": {"project": {"name": PROJECT_NAME}}}}
        token = requests.post(service.base_url + "/v3/auth/tokens", json=body).headers["X-Subject-Token"]
        # New connections land on either worker; every one must accept the token the other issued.
        statuses = [httpx.post(service.base_url + f"/v2/{PROJECT}/image/celebrity-recognition",
                               headers={"X-Auth-Token": token}, json={"image": "!!"}).status_code for _ in range(12)]
        assert statuses == [400] * 12  # AIS.0015 (bad base64), i.e. authenticated on every worker
        metrics = httpx.get(service.base_url + "/metrics").text
        line = next(m for m in metrics.splitlines() if m.startswith('imgrec_errors_total{api="celebrity_recognition",code="AIS.0015"}'))
        assert float(line.split()[-1]) == 12.0  # both workers' counts, whichever answered /metrics
        assert service.log_text().count("Started server process") == 2
    finally:
        service.stop()
