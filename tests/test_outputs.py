"""Results in a bucket (`--out s3://...`, moto's S3 server) and Apache Iceberg tables (pyiceberg, SQLite
catalog): first run, re-run, kill -9 mid-run then re-run, concurrent writers, read back with pyiceberg and
DuckDB. Real processes, a real S3-protocol server, real Prefect flow runs."""
from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
from pathlib import Path

import boto3
import numpy as np
import pytest

import imgrec.warehouse
from tests.helpers import encode

IMGREC = str(Path(sys.executable).parent / "imgrec")


def _catalog(folder: Path, n: int) -> set[str]:
    rng = np.random.default_rng(n)
    keys = set()
    for i in range(n):
        key = f"part-{i % 3}/img-{i:04d}.jpg"
        (folder / key).parent.mkdir(parents=True, exist_ok=True)
        (folder / key).write_bytes(encode(rng.integers(0, 255, (40, 56, 3), dtype=np.uint8)))
        keys.add(key)
    return keys


def _bucket(name: str) -> str:
    boto3.client("s3").create_bucket(Bucket=name)
    return name


def _keys(bucket: str, prefix: str) -> list[str]:
    pages = boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(item["Key"] for page in pages for item in page.get("Contents", []))


def _run(args: list[str], env: dict, failpoint: str | None = None) -> subprocess.CompletedProcess:
    env = {**env, **({"IMGREC_FAILPOINT": failpoint} if failpoint else {})}
    return subprocess.run([IMGREC, "run", *args], env=env, capture_output=True, timeout=300)


def _counts(warehouse, table: str, by: str = "key") -> dict:
    frame = warehouse.sql(f"SELECT {by}, count(*) AS n FROM {table} GROUP BY 1")
    return dict(zip(frame[by], frame["n"]))


@pytest.mark.parametrize("failpoint", ["staging:4", "commit:5"])
def test_bucket_output_survives_kill_minus_nine_and_reruns_add_nothing(prefect_api, s3_server, tmp_path, failpoint):
    keys = _catalog(tmp_path / "src", 24)
    bucket = _bucket(f"results-{failpoint.split(':')[0]}")
    out = f"s3://{bucket}/nightly"
    env = {**os.environ, "PREFECT_API_URL": prefect_api}
    args = [str(tmp_path / "src"), "--out", out, "--apis", "dark_enhance,recapture_detect", "--shard-size", "4",
            "--concurrency", "2"]
    crashed = _run(args, env, failpoint)
    assert crashed.returncode == -signal.SIGKILL
    assert _keys(bucket, "nightly/_state/run.lock")  # the dead run's lock: the next run must take it over
    rerun = _run(args, env)
    assert rerun.returncode == 0, rerun.stdout.decode()[-3000:] + rerun.stderr.decode()[-3000:]
    warehouse = imgrec.warehouse.open(out)
    processed = warehouse.table("images").query("status != 'skipped'")
    assert sorted(processed["key"]) == sorted(keys)  # none lost, none twice
    assert set(processed["status"]) == {"ok"}
    assert sorted(warehouse.table("enhanced")["key"]) == sorted(keys)
    assert set(_counts(warehouse, "recapture").values()) == {1}
    # every object where it belongs: no staging, no lock, the enhanced images and the reports in the bucket
    objects = _keys(bucket, "nightly/")
    assert not [k for k in objects if "/_staging/" in k or k.endswith(("run.lock", ".tmp"))]
    assert len([k for k in objects if k.startswith("nightly/enhanced_images/dark_enhance/")]) == len(keys)
    assert any(k.startswith("nightly/reports/") and k.endswith(".html") for k in objects)
    uris = warehouse.table("enhanced")["output_uri"]
    assert all(u.startswith(f"{out}/enhanced_images/") for u in uris)

    again = _run(args, env)  # nothing changed: every image skipped, no new result rows
    assert again.returncode == 0
    warehouse = imgrec.warehouse.open(out)
    assert len(warehouse.table("enhanced")) == len(keys)
    runs = warehouse.table("runs").sort_values("started_at")
    assert len(runs) == 2 and runs.iloc[-1]["images_skipped"] == len(keys)
    # filters pushed into pyarrow's scan of the bucket
    part = warehouse.table("images", key_prefix="part-1/", columns=["key", "status"])
    assert set(part.columns) == {"key", "status"} and all(k.startswith("part-1/") for k in part["key"])
    # run_date is a date from a bucket as from a folder, and the README's filter by a date string works
    today = str(runs.iloc[-1]["run_date"])[:10]
    assert str(warehouse.arrow("images").schema.field("run_date").type) == "date32[day]"
    assert len(warehouse.table("images", run_date=today)) == len(warehouse.table("images")) > 0
    assert len(warehouse.table("images", run_date="1999-01-01")) == 0


def test_iceberg_tables_in_a_bucket_with_two_dask_workers(prefect_api, s3_server, tmp_path):
    keys = _catalog(tmp_path / "src", 16)
    bucket = _bucket("lake")
    out = f"s3://{bucket}/imgrec"
    catalog = f"sqlite:///{tmp_path / 'catalog.db'}"
    env = {**os.environ, "PREFECT_API_URL": prefect_api}
    args = [str(tmp_path / "src"), "--out", out, "--apis", "recapture_detect", "--shard-size", "2",
            "--table-format", "iceberg", "--iceberg-catalog", catalog, "--task-runner", "dask"]
    first = _run(args, env)
    assert first.returncode == 0, first.stdout.decode()[-3000:] + first.stderr.decode()[-3000:]
    from pyiceberg.catalog.sql import SqlCatalog

    from imgrec.tasks.formats.iceberg import locations

    uri, location, props = locations(out, catalog)
    tags = SqlCatalog("imgrec", uri=uri, warehouse=location, **props).load_table("imgrec.recapture")
    rows = tags.scan().to_arrow()
    assert sorted(rows.column("key").to_pylist()) == sorted(keys)
    shards = [s.summary.get("imgrec.shard") for s in tags.snapshots()]
    assert len(shards) == 8 and len(set(shards)) == 8  # one append per shard, each once
    assert _keys(bucket, "imgrec/iceberg/imgrec/recapture/data/run_date=")  # data files in the bucket
    again = _run(args, env)
    assert again.returncode == 0
    warehouse = imgrec.warehouse.open(out, iceberg_catalog=catalog)
    assert set(_counts(warehouse, "recapture").values()) == {1}
    statuses = warehouse.sql("SELECT status, count(*) AS n FROM images GROUP BY 1 ORDER BY 1")
    assert dict(zip(statuses["status"], statuses["n"])) == {"ok": 16, "skipped": 16}
    assert len(warehouse.table("runs")) == 2


def test_iceberg_in_a_folder_kill_minus_nine_then_rerun_and_imgrec_sql(prefect_api, tmp_path):
    keys = _catalog(tmp_path / "src", 12)
    out = tmp_path / "out"
    env = {**os.environ, "PREFECT_API_URL": prefect_api}
    args = [str(tmp_path / "src"), "--out", str(out), "--apis", "dark_enhance", "--shard-size", "3",
            "--table-format", "iceberg"]
    assert _run(args, env, "commit:3").returncode == -signal.SIGKILL  # between a shard's two appends
    rerun = _run(args, env)
    assert rerun.returncode == 0, rerun.stdout.decode()[-3000:] + rerun.stderr.decode()[-3000:]
    assert (out / "_state" / "iceberg_catalog.db").is_file() and not list(out.glob("images"))
    warehouse = imgrec.warehouse.open(out)
    assert warehouse.table_format == "iceberg"
    assert sorted(warehouse.table("enhanced")["key"]) == sorted(keys)
    done = warehouse.sql("SELECT key, count(*) AS n FROM images WHERE status <> 'skipped' GROUP BY 1")
    assert sorted(done["key"]) == sorted(keys) and set(done["n"]) == {1}  # none lost, none twice
    # the DuckDB file for BI tools holds the tables; `imgrec sql` answers from it
    done = subprocess.run([IMGREC, "sql", "SELECT count(*) AS n FROM enhanced", "--out", str(out), "--csv"],
                          capture_output=True, timeout=120)
    assert done.returncode == 0 and done.stdout.decode().split() == ["n", str(len(keys))]
    import duckdb

    con = duckdb.connect(str(out / "imgrec.duckdb"), read_only=True)
    assert con.execute("SELECT count(DISTINCT key) FROM images").fetchone()[0] == len(keys)


def _append_shards(out: str, catalog: str | None, worker: int, shards: int, barrier) -> None:
    from datetime import datetime, timezone

    from imgrec.tasks.formats import open_format
    from imgrec.tasks.formats.parquet import parquet_bytes

    tables = open_format("iceberg", out, catalog)
    barrier.wait()
    now = datetime.now(timezone.utc)
    for shard in range(shards):
        name = f"r{worker}-s{shard:05d}" if shard % 4 else "shared-s00000"  # one shard both workers append
        rows = [{"run_id": f"r{worker}", "source": "s", "key": f"{name}/k{i}", "status": "ok", "processed_at": now}
                for i in range(5)]
        tables.append("images", "2026-11-28", name, parquet_bytes("images", rows))


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
def test_two_processes_appending_to_one_iceberg_table_lose_nothing(tmp_path, request, database):
    out = str(tmp_path / "lake")
    catalog = request.getfixturevalue("postgres_url") if database == "postgres" else None
    from imgrec.tasks.formats import open_format

    open_format("iceberg", out, catalog).prepare()
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    workers = [context.Process(target=_append_shards, args=(out, catalog, w, 12, barrier)) for w in (1, 2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=240)
        assert w.exitcode == 0
    rows = open_format("iceberg", out, catalog).scan("images")
    keys = rows.column("key").to_pylist()
    assert len(keys) == len(set(keys))  # the shard both appended is in once
    expected = {f"r{w}-s{s:05d}/k{i}" for w in (1, 2) for s in range(12) if s % 4 for i in range(5)}
    assert set(keys) == expected | {f"shared-s00000/k{i}" for i in range(5)}


def test_a_bucket_output_takes_one_run_at_a_time(s3_server):
    from imgrec.connectors.output import BucketOutput

    _bucket("locked")
    first, second = BucketOutput("s3://locked/x"), BucketOutput("s3://locked/x")
    with first.lock("run-1"):
        with pytest.raises(RuntimeError, match=r"another imgrec run .*: run run-1 \(pid \d+ on "):
            with second.lock("run-2"):
                pass
        holder = json.loads(first.get("_state/run.lock"))
        assert holder["owner"] == "run-1" and holder["pid"] == os.getpid()
    with second.lock("run-2"):  # released at the end of the first
        pass


def test_folder_and_bucket_outputs_behave_alike(s3_server, tmp_path):
    from imgrec.connectors.output import open_output

    _bucket("alike")
    for output in (open_output(str(tmp_path / "o")), open_output("s3://alike/p")):
        assert output.put("a/b/one.txt", b"1").endswith("a/b/one.txt")
        output.put("a/two.txt", b"2")
        assert output.list("a") == ["a/b/one.txt", "a/two.txt"] and output.get("a/two.txt") == b"2"
        assert output.move("a/two.txt", "c/two.txt") and not output.move("a/two.txt", "c/two.txt")
        assert output.exists("c/two.txt") and not output.exists("a/two.txt")
        output.delete_tree("a")
        assert output.list("a") == [] and output.list("c") == ["c/two.txt"]



def test_a_catalog_password_reaches_no_report_and_no_log():
    from imgrec.logs import redact
    from imgrec.tasks.job import Job

    url = "postgresql+psycopg2://imgrec:hunter2-secret@db:5432/lake"
    job = Job(run_id="r", flow="f", source="/tmp", out="/tmp/o", apis=["image_tagging"], table_format="iceberg",
              iceberg_catalog=url)
    assert "hunter2" not in json.dumps(job.public_parameters()) and "hunter2" not in redact(f"catalog {url} failed")
