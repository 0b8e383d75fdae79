"""A night that breaks halfway (issue 27): the run's breaker stops a run whose endpoint died, at any point of
the run, within seconds; a short outage costs only time; the re-run does the rest, nothing twice."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from tests.helpers import AK, PROJECT, SK, ServiceProcess, encode, free_port, photo, read_table, write_config

IMGREC = str(Path(sys.executable).parent / "imgrec")
APIS = "image_tagging,media_tagging"
SLOW = "\n[simulate]\nenabled = true\nlatency_ms = 250\n"  # answers as the cloud would, without model work


def _catalog(folder: Path, n: int) -> None:
    folder.mkdir(parents=True)
    base = photo("coffee")[::16, ::16]
    for i in range(n):
        (folder / f"img-{i:03d}.jpg").write_bytes(encode(np.roll(base, i, axis=1).copy()))


def _start_run(source: Path, out: Path, endpoint: str, prefect_api: str, log: Path) -> subprocess.Popen:
    env = {**os.environ, "PREFECT_API_URL": prefect_api, "HUAWEICLOUD_SDK_AK": AK, "HUAWEICLOUD_SDK_SK": SK,
           "HUAWEICLOUD_SDK_PROJECT_ID": PROJECT}
    return subprocess.Popen([IMGREC, "run", str(source), "--out", str(out), "--backend", "http", "--endpoint",
                             endpoint, "--apis", APIS, "--concurrency", "4", "--shard-size", "50"],
                            stdout=open(log, "w"), stderr=subprocess.STDOUT, env=env)


def _answered(service: ServiceProcess) -> int:
    import httpx

    metrics = httpx.get(service.base_url + "/metrics", timeout=5).text
    return int(sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                   if line.startswith("imgrec_requests_total{") and 'status="200"' in line))


def _wait_for_answers(service: ServiceProcess, count: int, run: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while _answered(service) < count:
        assert run.poll() is None and time.monotonic() < deadline, "the run ended before the service answered"
        time.sleep(0.1)


def _ledger_ok(out: Path, work: str = "apis") -> list[tuple[str, str]]:
    """(API, key) of the ledger's successes; `work="fingerprint"`: the fingerprints made instead."""
    files = sorted((out / "_state" / "ledger").glob("*.parquet"))
    rows = [r for f in files for r in pq.read_table(f).to_pylist() if r["outcome"] == "ok"]
    return [(r["api"], r["key"]) for r in rows if (r["api"] == "fingerprint") == (work == "fingerprint")]


def _run_against_a_service(prefect_api: str, tmp_path: Path, images: int):
    """A catalog of `images`, a service on a port of its own, and a run against it, started."""
    source, out = tmp_path / "src", tmp_path / "out"
    _catalog(source, images)
    port = free_port()
    config = write_config(tmp_path, extra=SLOW)
    service = ServiceProcess(config, tmp_path / "service.log", port=port)
    return source, out, config, port, service, _start_run(source, out, service.base_url, prefect_api,
                                                          tmp_path / "run.log")


def test_a_service_killed_mid_run_stops_the_run_within_seconds_and_the_rerun_finishes(prefect_api, tmp_path):
    source, out, config, port, service, run = _run_against_a_service(prefect_api, tmp_path, 200)
    try:
        _wait_for_answers(service, 20, run)
        service.proc.kill()  # -9
        killed = time.monotonic()
        code = run.wait(timeout=120)
        took = time.monotonic() - killed
    finally:
        run.kill()
        service.stop()
    log = (tmp_path / "run.log").read_text()
    assert code == 1, log[-3000:]
    assert took < 30, f"the run went on {took:.0f} s after the kill"
    assert max(len(line) for line in log.splitlines()) <= 2000
    failure = [line for line in log.splitlines() if line.startswith("imgrec run failed:")]
    assert len(failure) == 1 and "NET.CONNECTION" in failure[0] and "report:" in failure[0], log[-3000:]
    images = read_table(out, "images")
    assert sorted(r["key"] for r in images) == sorted(p.name for p in source.iterdir())  # each once
    not_sent = [e for e in read_table(out, "errors") if e["error_msg"].startswith("not sent")]
    assert not_sent, "images after the breaker opened are recorded as not sent"
    done_first = set(_ledger_ok(out))
    assert done_first
    service = ServiceProcess(config, tmp_path / "service2.log", port=port)
    try:
        rerun = _start_run(source, out, service.base_url, prefect_api, tmp_path / "rerun.log")
        assert rerun.wait(timeout=300) == 0, (tmp_path / "rerun.log").read_text()[-3000:]
    finally:
        service.stop()
    done = _ledger_ok(out)
    assert len(done) == len(set(done)) == 2 * 200  # the rest done, nothing twice
    fingerprints = _ledger_ok(out, "fingerprint")  # made in this process, service or not
    assert len(fingerprints) == len(set(fingerprints)) == 200


def test_a_restart_of_a_few_seconds_costs_only_time(prefect_api, tmp_path):
    source, out, config, port, service, run = _run_against_a_service(prefect_api, tmp_path, 60)
    try:
        _wait_for_answers(service, 20, run)
        service.proc.kill()
        time.sleep(1.0)
        service = ServiceProcess(config, tmp_path / "service2.log", port=port)
        code = run.wait(timeout=300)
    finally:
        run.kill()
        service.stop()
    assert code == 0, (tmp_path / "run.log").read_text()[-3000:]
    assert {r["status"] for r in read_table(out, "images")} == {"ok"}
    assert len(_ledger_ok(out)) == 2 * 60


def test_mistakes_before_the_run_are_one_line_and_exit_2(tmp_path):
    (tmp_path / "src").mkdir()
    cases = [([str(tmp_path / "missing")], {}, "is not a folder"),
             ([str(tmp_path / "src"), "--backend", "http", "--endpoint", "127.0.0.1:8080"], {}, "with its scheme"),
             ([str(tmp_path / "src"), "--backend", "http", "--endpoint", "http://127.0.0.1:9"], {},
              "the http backend needs"),
             ([str(tmp_path / "src"), "--since", "2999-01-01"], {}, "is in the future"),
             ([str(tmp_path / "src"), "--since", "2026-02-01", "--until", "2026-01-01"], {}, "must come after"),
             ([str(tmp_path / "src"), "--manifest", str(tmp_path / "nope.csv")], {}, "is not a file")]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HUAWEICLOUD_SDK_", "IMGREC_CLIENT__"))}
    for args, extra, says in cases:
        started = time.monotonic()
        run = subprocess.run([IMGREC, "run", *args, "--out", str(tmp_path / "out")], capture_output=True, text=True,
                             timeout=60, env={**env, **extra})
        assert run.returncode == 2 and says in run.stderr, (args, run.stderr)
        assert len(run.stderr.strip().splitlines()) == 1 and time.monotonic() - started < 10
    typo = subprocess.run([IMGREC, "run", str(tmp_path / "src"), "--out", str(tmp_path / "wherehouse" / "x")],
                          capture_output=True, text=True, timeout=60)  # a mistyped parent: refused, not created
    assert typo.returncode == 2 and "does not exist" in typo.stderr and not (tmp_path / "wherehouse").exists()
    config = tmp_path / "broken.toml"
    config.write_text("[auth\nenabled = false\n")
    serve = subprocess.run([IMGREC, "serve", "--config", str(config)], capture_output=True, text=True, timeout=60)
    assert serve.returncode == 2 and len(serve.stderr.strip().splitlines()) == 1 and "line 1" in serve.stderr


def test_the_locks_refusal_names_its_holder(tmp_path):
    import pytest

    from imgrec.connectors.output import FolderOutput

    out = FolderOutput(tmp_path / "out")
    with out.lock("20261206T000000Z-first"):
        with pytest.raises(RuntimeError, match=r"run 20261206T000000Z-first \(pid \d+ on .+, since 20"):
            with FolderOutput(tmp_path / "out").lock("second"):
                pass


def test_the_image_status_says_whether_the_image_is_bad():
    from imgrec.tasks.shard_worker import image_status

    assert image_status(["ok"] * 6 + ["limit"]) == "ok"  # a WEBP photo recapture does not take: a good photo
    assert image_status(["limit", "limit"]) == "invalid"  # no API takes it
    assert image_status(["ok", "invalid"]) == "invalid"  # damaged, not an image...
    assert image_status(["ok", "failed", "limit"]) == "failed"


def test_objects_that_are_not_images_by_name_are_counted(tmp_path):
    from datetime import datetime, timezone

    from imgrec.connectors.source import FolderSource
    from imgrec.tasks.job import Job
    from imgrec.tasks.listing import list_objects

    (tmp_path / "src").mkdir()
    for name in ("a.jpg", "B.JPEG", "notes.txt", "no-extension", "photo.jpg.bak"):
        (tmp_path / "src" / name).write_bytes(encode(photo("coffee")[::8, ::8]))
    source = FolderSource(tmp_path / "src")
    job = Job(run_id="r", flow="catalog-tagging", source=str(tmp_path / "src"), out=str(tmp_path / "out"),
              apis=["image_tagging"], started_at=datetime.now(timezone.utc))
    listed = list_objects(source, job)
    assert (listed.listed, listed.not_images) == (2, 3)
    sniffing = job.model_copy(update={"sniff": True})  # every one of them is a JPEG: taken by its bytes
    assert list_objects(source, sniffing).listed == 5


def _job(tmp_path, **given):
    from datetime import datetime, timezone

    from imgrec.tasks.job import Job

    return Job(run_id="r", flow="catalog-tagging", source=str(tmp_path / "src"), out=str(tmp_path / "out"),
               apis=["image_tagging"], started_at=datetime.now(timezone.utc), **given)


def _keys(job) -> list[str]:
    import pyarrow.parquet as pq

    from imgrec.connectors.source import open_source
    from imgrec.tasks.listing import list_objects, listing_files

    list_objects(open_source(job.source), job)
    return sorted(k for f in listing_files(job) for k in pq.read_table(f).column("key").to_pylist())


def test_include_and_exclude_globs_pick_the_keys(tmp_path):
    for key in ("shop/a.jpg", "shop/thumbs/a.jpg", "shop/b.png", "press/c.jpg"):
        path = tmp_path / "src" / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(encode(photo("coffee")[::8, ::8]))
    assert _keys(_job(tmp_path, include=["shop/*"], exclude=["*/thumbs/*"])) == ["shop/a.jpg", "shop/b.png"]
    assert _keys(_job(tmp_path, include=["*.jpg"])) == ["press/c.jpg", "shop/a.jpg", "shop/thumbs/a.jpg"]
    from imgrec.connectors.source import open_source
    from imgrec.tasks.listing import list_objects

    assert list_objects(open_source(str(tmp_path / "src")), _job(tmp_path, exclude=["shop/*"])).excluded == 3


def test_a_manifest_names_the_objects_in_any_of_its_formats(tmp_path, s3_server):
    import json

    import boto3

    (tmp_path / "src").mkdir()
    for name in ("a.jpg", "b.jpg", "c"):
        (tmp_path / "src" / name).write_bytes(encode(photo("coffee")[::8, ::8]))
    (tmp_path / "m.jsonl").write_text('{"key": "a.jpg"}\n"c"\n{"key": "gone.jpg"}\n{"key": "a.jpg"}\n')
    (tmp_path / "m.csv").write_text("key,sku\nb.jpg,1\nc,2\n")
    (tmp_path / "m.txt").write_text("a.jpg\n\nb.jpg\n")
    assert _keys(_job(tmp_path, manifest=str(tmp_path / "m.jsonl"))) == ["a.jpg", "c", "gone.jpg"]
    assert _keys(_job(tmp_path, manifest=str(tmp_path / "m.csv"))) == ["b.jpg", "c"]
    assert _keys(_job(tmp_path, manifest=str(tmp_path / "m.txt"))) == ["a.jpg", "b.jpg"]
    import pyarrow.parquet as pq

    from imgrec.tasks.listing import listing_files

    job = _job(tmp_path, manifest=str(tmp_path / "m.jsonl"))
    _keys(job)
    rows = {r["key"]: r for f in listing_files(job) for r in pq.read_table(f).to_pylist()}
    assert rows["gone.jpg"]["problem"] and rows["gone.jpg"]["problem_retryable"]  # an error row, not lost
    # a bucket: s3:// URIs of the source's bucket (Rekognition / SageMaker manifests' source-ref)
    s3 = boto3.client("s3", endpoint_url=s3_server["url"])
    s3.create_bucket(Bucket="lake")
    s3.put_object(Bucket="lake", Key="shop/x.jpg", Body=encode(photo("coffee")[::8, ::8]))
    (tmp_path / "s3.jsonl").write_text(json.dumps({"source-ref": "s3://lake/shop/x.jpg"}) + "\n")
    bucket = _job(tmp_path, manifest=str(tmp_path / "s3.jsonl")).model_copy(update={"source": "s3://lake/shop"})
    assert _keys(bucket) == ["shop/x.jpg"]
    (tmp_path / "other.jsonl").write_text(json.dumps({"source-ref": "s3://elsewhere/x.jpg"}) + "\n")
    import pytest

    with pytest.raises(ValueError, match="not an object of the source"):
        _keys(bucket.model_copy(update={"manifest": str(tmp_path / "other.jsonl")}))


def test_a_dry_run_plans_and_prices_without_calling_or_writing(tmp_path):
    (tmp_path / "src").mkdir()
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        (tmp_path / "src" / name).write_bytes(encode(photo("coffee")[::8, ::8]))
    out = tmp_path / "out"
    run = subprocess.run([IMGREC, "run", str(tmp_path / "src"), "--out", str(out), "--dry-run", "--apis",
                          "image_tagging,recapture_detect", "--unit-price", "0.5"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "image_tagging: 3 calls x 0.5 = 1.5" in run.stdout and "recapture_detect: 3 calls" in run.stdout
    assert "estimated cost: 3" in run.stdout
    assert not out.exists()  # nothing written: not even the folder
