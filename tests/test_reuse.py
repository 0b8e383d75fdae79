"""Exact copies are not paid for twice (issue 30, item 4): a catalog with 30% byte-identical copies makes 30%
fewer calls over HTTP, counted by the service's metrics, with the same rows; a copy arriving a night later
is not sent either; --no-reuse calls for every image."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from tests.helpers import AK, PROJECT, SK, ServiceProcess, encode, photo, read_table, write_config

IMGREC = str(Path(sys.executable).parent / "imgrec")
APIS = "image_tagging,recapture_detect"


def _answered(service: ServiceProcess) -> int:
    import httpx

    metrics = httpx.get(service.base_url + "/metrics", timeout=5).text
    return int(sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                   if line.startswith("imgrec_requests_total{") and 'status="200"' in line))


def _run(source: Path, out: Path, service: ServiceProcess, prefect_api: str, *extra: str) -> dict:
    env = {**os.environ, "PREFECT_API_URL": prefect_api, "HUAWEICLOUD_SDK_AK": AK, "HUAWEICLOUD_SDK_SK": SK,
           "HUAWEICLOUD_SDK_PROJECT_ID": PROJECT}
    done = subprocess.run([IMGREC, "run", str(source), "--out", str(out), "--backend", "http", "--endpoint",
                           service.base_url, "--apis", APIS, "--no-similar", "--concurrency", "4", *extra],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return json.loads(max((out / "reports").glob("*.json"), key=lambda p: p.stat().st_mtime).read_text())


def _rows(out: Path, table: str, columns: str) -> list[tuple]:
    return sorted(tuple(r[c] for c in columns.split(",")) for r in read_table(out, table))


def test_copies_are_answered_once_with_the_same_rows(prefect_api, tmp_path):
    source = tmp_path / "src"
    (source / "copies").mkdir(parents=True)
    base = photo("coffee")[::2, ::2]
    originals = {f"img-{i}.jpg": encode(np.ascontiguousarray(np.roll(base, 37 * i, axis=1))) for i in range(7)}
    for name, data in originals.items():
        (source / name).write_bytes(data)
    for i in range(3):  # 3 of 10 images: byte-identical copies under other keys
        (source / "copies" / f"same-as-{i}.jpg").write_bytes(originals[f"img-{i}.jpg"])
    service = ServiceProcess(write_config(tmp_path), tmp_path / "service.log")
    try:
        report = _run(source, tmp_path / "out", service, prefect_api)
        reused_calls = _answered(service)
        plain = _run(source, tmp_path / "plain", service, prefect_api, "--no-reuse")
        plain_calls = _answered(service) - reused_calls

        assert plain_calls == 20 and plain["calls_saved"] == 0
        assert reused_calls == 14, "7 distinct images x 2 APIs"
        assert report["calls_saved"] == 6 and report["calls_saved_by_api"] == {"image_tagging": 3,
                                                                                "recapture_detect": 3}
        assert "calls saved 6" in max((tmp_path / "out" / "reports").glob("*.md")).read_text()
        for table, columns in (("tags", "key,api,tag,confidence,rank"), ("recapture", "key,api,suggestion,score")):
            assert _rows(tmp_path / "out", table, columns) == _rows(tmp_path / "plain", table, columns)
        reused = read_table(tmp_path / "out", "reused")
        assert len(reused) == 6
        data = {k: (source / k).read_bytes() for k in [*originals, *(f"copies/same-as-{i}.jpg" for i in range(3))]}
        assert all(data[r["key"]] == data[r["twin_key"]] and r["key"] != r["twin_key"] for r in reused)

        # a night later: a new copy of an image answered last night is not sent; its rows come from that answer
        (source / "copies" / "late-copy-of-5.jpg").write_bytes(originals["img-5.jpg"])
        before = _answered(service)
        second = _run(source, tmp_path / "out", service, prefect_api)
        assert _answered(service) == before and second["calls"] == 0 and second["calls_saved"] == 2
        late = [r for r in read_table(tmp_path / "out", "reused") if r["key"] == "copies/late-copy-of-5.jpg"]
        assert {(r["twin_key"], r["twin_run_id"]) for r in late} == {("img-5.jpg", report["run_id"])}
        tags = _rows(tmp_path / "out", "tags", "key,tag,confidence")
        assert [t[1:] for t in tags if t[0] == "copies/late-copy-of-5.jpg"] == \
            [t[1:] for t in tags if t[0] == "img-5.jpg"]
    finally:
        service.stop()
