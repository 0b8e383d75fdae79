"""End to end: Prefect flow runs over a bucket in moto's S3 server (and a folder), through the in-process
engines and through the self-hosted service over HTTP, with tables read back by DuckDB."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from imgrec.schemas.run import RunParameters
from imgrec.flows.catalog import backfill, catalog_tagging
from tests.helpers import AK, PROJECT, SK, ServiceProcess, catalog_files, encode, photo, read_table, upload, write_config

EXPECTED = {
    # The header passes pre-validation; the engine refuses the pixels: an input refusal from the backend is
    # `invalid` and not retried next run (the second run below skips it), like one found before the call.
    "broken/truncated.jpg": ("invalid", "AIS.0503"),
    "broken/not-an-image.png": ("invalid", "AIS.0021"),
    "broken/empty.jpg": ("invalid", "AIS.0503"),
    "broken/animated.gif": ("invalid", "AIS.0502"),
    "broken/too-wide.png": ("invalid", "AIS.0504"),
    "broken/bomb.png": ("invalid", "AIS.0205"),
}
ASTRONAUTS = {"photos/astronaut.jpg", "photos/png/astronaut.png", "photos/webp/astronaut.webp",
              "photos/mirrored-astronaut.jpg"}


@pytest.fixture(scope="module")
def config(tmp_path_factory, gallery):
    return write_config(tmp_path_factory.mktemp("pipeline"), gallery)


@pytest.fixture(scope="module")
def bucket(s3_server):
    upload("catalog", catalog_files())
    return "catalog"


def check_first_run(out: Path, summary: dict, run_keys: set[str], apis=("celebrity_recognition",)) -> None:
    images = {r["key"]: r for r in read_table(out, "images")}
    assert set(images) == run_keys  # every listed image has exactly one row
    for key, row in images.items():
        status, code = EXPECTED.get(key, ("ok", None))
        assert row["status"] == status, (key, row["status"])
        if key.startswith("photos/"):
            assert (row["width"], row["height"]) != (None, None)
    error_rows = read_table(out, "errors")
    assert {(e["key"], e["api"]): e["error_code"] for e in error_rows} == {
        (k, api): c for k, (s, c) in EXPECTED.items() for api in apis}
    assert all(e["attempts"] == (1 if e["key"] == "broken/truncated.jpg" else 0) for e in error_rows)
    errors = {e["key"] for e in error_rows}
    faces = read_table(out, "faces")
    assert {f["key"] for f in faces} == ASTRONAUTS
    assert {f["label"] for f in faces} == {"Eileen Collins"}
    assert all(90 <= f["confidence"] <= 100 and 0 < f["width_norm"] < 1 for f in faces)
    # every image is in a result table or in errors (an ok image may legitimately have no face)
    ok = {k for k, r in images.items() if r["status"] == "ok"}
    assert ok | set(errors) == run_keys
    assert summary["status"] == {"ok": len(ok), "failed": 0, "invalid": 6, "skipped": 0}
    runs = read_table(out, "runs")
    assert len(runs) == 1 and runs[0]["images_ok"] == len(ok) and runs[0]["listed"] == len(run_keys)
    for kind in ("json", "md", "html"):
        assert Path(summary["report_paths"][kind]).stat().st_size > 200


def catalog_keys() -> set[str]:
    return {k for k in catalog_files() if not k.endswith(".txt")}


async def test_bucket_run_in_process_is_incremental(prefect_api, bucket, config, tmp_path):
    out = tmp_path / "warehouse"
    source = f"s3://{bucket}/"
    apis = ["celebrity_recognition", "image_tagging", "main_object_detection"]
    params = {"image_tagging": {"threshold": 30.0}}
    first = await catalog_tagging(RunParameters(source=source, out=str(out), config=str(config), shard_size=7, apis=apis,
                                  params=params))
    check_first_run(out, first, catalog_keys(), apis)
    tags = read_table(out, "tags", "WHERE key = 'photos/chelsea.jpg'")
    assert "cat" in {t["tag_en"] for t in tags} and {t["language"] for t in tags} == {"zh"}
    people = read_table(out, "detections", "WHERE key = 'photos/astronaut.jpg' AND label_en = 'person'")
    assert people and 0.5 < people[0]["height_norm"] <= 1.0
    mains = read_table(out, "main_objects", "WHERE label = 'main_object_box'")
    assert {m["key"] for m in mains} >= {"photos/astronaut.jpg", "photos/chelsea.jpg"}

    second = await catalog_tagging(RunParameters(source=source, out=str(out), config=str(config), shard_size=7, apis=apis,
                                   params=params))
    assert second["status"] == {"ok": 0, "failed": 0, "invalid": 0, "skipped": len(catalog_keys())}
    assert second["calls"] == 0

    upload(bucket, {"photos/new/chelsea-again.jpg": encode(photo("chelsea")[::2, ::2].copy())})
    third = await catalog_tagging(RunParameters(source=source, out=str(out), config=str(config), shard_size=7, apis=apis,
                                  params=params))
    assert third["status"]["ok"] == 1 and third["calls"] == 3

    images = read_table(out, "images")
    assert len(images) == 3 * len(catalog_keys()) + 1
    dupes = read_table(out, "images", "QUALIFY count(*) OVER (PARTITION BY run_id, key) > 1")
    assert dupes == []
    processed = read_table(out, "images", "WHERE status <> 'skipped'")
    assert len({r["key"] for r in processed}) == len(processed)  # no object was processed twice

    # A forced backfill of one prefix redoes exactly that prefix.
    forced = await backfill(RunParameters(source=source, prefix="photos/png/", force=True, out=str(out), config=str(config),
                            apis=apis, params=params))
    assert forced["status"]["ok"] == 5 and forced["status"]["skipped"] == 0


@pytest.fixture(scope="module")
def url_service(tmp_path_factory, gallery, s3_server):
    folder = tmp_path_factory.mktemp("url-service")
    extra = f'\n[url_fetch]\nallow = ["{s3_server["host"]}:{s3_server["port"]}"]\n'
    proc = ServiceProcess(write_config(folder, gallery, extra), folder / "service.log")
    yield proc
    proc.stop()


@pytest.mark.parametrize("mode", ["inline", "url"])
async def test_bucket_run_through_the_service_matches_in_process(prefect_api, bucket, url_service, tmp_path,
                                                                 monkeypatch, mode, caplog):
    monkeypatch.setenv("HUAWEICLOUD_SDK_AK", AK)
    monkeypatch.setenv("HUAWEICLOUD_SDK_SK", SK)
    monkeypatch.setenv("HUAWEICLOUD_SDK_PROJECT_ID", PROJECT)
    out = tmp_path / "warehouse"
    keys = {k for k in catalog_keys()}
    summary = await catalog_tagging(RunParameters(source=f"s3://{bucket}/", out=str(out), backend="http",
                                    endpoint=url_service.base_url, mode=mode, apis=["celebrity_recognition"],
                                    shard_size=10))
    listed = {r["key"] for r in read_table(out, "images")}
    assert keys <= listed  # the bucket may hold the object another test added
    check_first_run(out, summary, listed)
    import re

    for log in (url_service.log_text(), caplog.text):  # the service's log and every record in this process
        assert AK not in log and SK not in log
        assert not re.search(r"X-Amz-(Signature|Credential)=[0-9A-Za-z%]", log)  # a name may stay, no value


async def test_image_out_apis_land_in_enhanced(prefect_api, config, tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "dark.png").write_bytes(encode((photo("coffee") * 0.2).astype(np.uint8), "PNG"))
    (src / "hazy.jpg").write_bytes(encode((photo("chelsea") * 0.5 + 110).astype(np.uint8)))
    out = tmp_path / "out"
    summary = await catalog_tagging(RunParameters(source=str(src), out=str(out), config=str(config),
                                    apis=["dark_enhance", "defog"], params={"dark_enhance": {"brightness": 0.5}}))
    assert summary["status"]["ok"] == 2
    rows = read_table(out, "enhanced")
    assert len(rows) == 4 and {r["output_format"] for r in rows} == {"PNG", "JPEG"}
    for row in rows:
        assert Path(row["output_uri"].removeprefix("file://")).stat().st_size == row["output_size"]


def _folder_of(n: int, folder: Path) -> None:
    base = photo("astronaut")
    for i in range(n):
        crop = base[i % 40: 400 + i % 40, (i * 3) % 90: 400 + (i * 3) % 90]
        (folder / f"img-{i:03d}.jpg").write_bytes(encode(np.ascontiguousarray(crop)))


def _cli(args: list[str], prefect_api: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PREFECT_API_URL": prefect_api, "DO_NOT_TRACK": "1"}
    return subprocess.Popen([str(Path(sys.executable).parent / "imgrec"), "run", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kwargs)


def test_cli_run_and_kill_mid_run(prefect_api, config, tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    _folder_of(60, src)
    args = [str(src), "--out", str(out), "--config", str(config), "--shard-size", "4", "--concurrency", "1",
            "--apis", "celebrity_recognition"]
    victim = _cli(args, prefect_api)
    ledger = out / "_state" / "ledger"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(ledger.glob("*.parquet"))) < 3:
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    committed = {r["key"] for r in read_table(out, "images")}
    assert 0 < len(committed) < 60, "the kill should land mid-run"

    rerun = _cli(args, prefect_api)
    output = rerun.communicate(timeout=300)[0].decode()
    assert rerun.returncode == 0, output
    assert "report (html)" in output
    images = read_table(out, "images", "WHERE status <> 'skipped'")
    assert sorted(r["key"] for r in images) == sorted(f"img-{i:03d}.jpg" for i in range(60))  # none lost, none twice
    assert not list((out / "_staging").glob("*")) if (out / "_staging").exists() else True
    stray = [p for p in out.rglob("*")
             if p.is_file() and p.suffix not in (".parquet", ".json", ".md", ".html", ".lock", ".duckdb", ".usearch")]
    assert stray == []
    assert len(read_table(out, "faces")) >= 50


def test_cli_rejects_bad_input_clearly(prefect_api, tmp_path):
    proc = _cli([str(tmp_path / "missing")], prefect_api)
    output = proc.communicate(timeout=120)[0].decode()
    assert proc.returncode != 0 and "missing" in output
    proc = _cli([str(tmp_path), "--param", "celebrity_recognition.threshold=7"], prefect_api)
    output = proc.communicate(timeout=120)[0].decode()
    assert proc.returncode != 0 and "AIS.0501" in output


async def test_shards_on_a_dask_cluster(prefect_api, config, tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    _folder_of(12, src)
    summary = await catalog_tagging(RunParameters(source=str(src), out=str(out), config=str(config), apis=["celebrity_recognition"],
                                    shard_size=3, task_runner="dask"))
    assert summary["status"]["ok"] == 12 and summary["shards"] == 4
    faces = read_table(out, "faces")
    assert len({f["key"] for f in faces}) >= 10 and {f["label"] for f in faces} == {"Eileen Collins"}


async def test_reader_batches_local_reads_in_order_and_keeps_errors_per_object(tmp_path):
    import asyncio

    from imgrec.connectors.source import FolderSource
    from imgrec.tasks.shard_worker import _Reader

    keys = [f"k{i:02d}.jpg" for i in range(20)]
    for i, key in enumerate(keys):
        if i != 5:  # k05 vanished between listing and reading
            (tmp_path / key).write_bytes(b"image %d" % i)
    storage = FolderSource(tmp_path)
    reader = _Reader(storage, keys, head_only=False)
    slots, held = asyncio.Semaphore(3), []

    async def one(key):
        async with slots:
            held.append(len(reader._futures))
            try:
                return await reader.read(key)
            except FileNotFoundError as exc:
                return exc

    results = await asyncio.gather(*(one(k) for k in keys))
    assert isinstance(results[5], FileNotFoundError)
    assert [r for i, r in enumerate(results) if i != 5] == [b"image %d" % i for i in range(20) if i != 5]
    assert max(held) <= storage.read_batch + 3 and not reader._futures  # bounded, and nothing left behind


@pytest.mark.parametrize("partition_rows", [7, 10_000])
def test_planning_in_partitions_and_after_ledger_compaction(tmp_path, monkeypatch, partition_rows):
    import pyarrow.parquet as pq

    from imgrec.connectors.source import FolderSource
    from imgrec.tasks import planning, writing
    from imgrec.tasks.job import Job
    from imgrec.tasks.listing import list_objects

    monkeypatch.setattr(planning, "PARTITION_ROWS", partition_rows)
    source = tmp_path / "src"
    for i in range(45):
        (source / f"d{i % 3}").mkdir(parents=True, exist_ok=True)
        (source / f"d{i % 3}" / f"img-{i:02d}.jpg").write_bytes(b"x" * (i + 1))
    out = tmp_path / "out"
    job = Job(run_id="r1", flow="test", source=str(source), out=str(out), apis=["image_tagging", "recapture_detect"],
              shard_size=4, similar=False)  # API work only (fingerprints: tests/test_similar.py)
    assert list_objects(FolderSource(source), job).listed == 45
    listed = pq.read_table(job.work_dir / "listing" / "listing.parquet").to_pylist()
    done = [o for o in listed if int(o["key"][-6:-4]) % 3 == 0]  # 15 objects fully done, each in its own file
    for n, obj in enumerate(done):
        for api in job.apis:
            writing.commit_shard(out, job.run_date, f"old{n:02d}-{api}", {}, [
                {"api": api, "params_hash": job.params_hash(api), "key": obj["key"],
                 "fingerprint": obj["fingerprint"], "outcome": "ok", "run_id": "old"}])
    image_tagging_only = next(o for o in listed if o not in done)  # done for one API of the two
    writing.commit_shard(out, job.run_date, "old-partial", {}, [
        {"api": "image_tagging", "params_hash": job.params_hash("image_tagging"), "key": image_tagging_only["key"],
         "fingerprint": image_tagging_only["fingerprint"], "outcome": "ok", "run_id": "old"}])

    def plan() -> dict[str, list[str]]:
        shards = planning.plan_shards(job)
        assert [s.index for s in shards] == list(range(len(shards)))
        rows: dict[str, list[str]] = {}
        total = 0
        seen_skipped = False
        for shard in shards:
            manifest = pq.read_table(out / shard.path).to_pylist()
            assert shard.objects == len(manifest) and shard.pending_calls == sum(len(m["pending"]) for m in manifest)
            skipped = not any(m["pending"] for m in manifest)
            assert not (seen_skipped and not skipped), "shards with work come first"
            seen_skipped |= skipped
            assert skipped or len(manifest) <= 4
            rows.update({m["key"]: m["pending"] for m in manifest})
            total += len(manifest)
        assert total == len(rows), "an object planned twice"
        return rows

    before = plan()
    assert len(before) == 45  # every listed object in exactly one shard
    assert sum(1 for p in before.values() if not p) == 15
    assert before[image_tagging_only["key"]] == ["recapture_detect"]
    assert writing.compact_ledger(out, "r1") == 0  # 31 files: below the default threshold
    monkeypatch.setattr(writing, "LEDGER_COMPACT_AT", 8)
    assert writing.compact_ledger(out, "r1") == 31
    assert [p.name for p in writing.ledger_dir(out).iterdir()] == ["compact-r1.parquet"]
    assert plan() == before
