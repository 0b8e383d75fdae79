"""Crash-safe table writing: a shard's files become visible all together or not at all.

Layout under the output folder:
  <table>/run_date=YYYY-MM-DD/<run_id>-s<NNNNN>.parquet   the tables DuckDB reads (Hive partitioned)
  _state/ledger/<run_id>-s<NNNNN>.parquet                  what succeeded, for incremental runs
  _state/ledger/compact-<run_id>.parquet                   many of those folded into one (compact_ledger)
  _staging/<run_id>-s<NNNNN>/                              files being written, and their COMMIT marker

A shard writes every file into its staging folder, then a COMMIT marker naming each file's destination,
then moves them into place (os.replace, atomic on one filesystem). `recover()` at the start of every run
finishes committed shards and discards uncommitted ones, so a process killed at any point leaves neither
half a shard nor temporary files among the table data. File names are fixed per run and shard, so a retried
shard replaces its files instead of adding rows.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from imgrec.schemas.tables import TABLES

from . import failpoints

LEDGER_SCHEMA = pa.schema([
    pa.field("api", pa.string()), pa.field("params_hash", pa.string()), pa.field("key", pa.string()),
    pa.field("fingerprint", pa.string()), pa.field("outcome", pa.string()), pa.field("run_id", pa.string()),
])


def shard_name(run_id: str, shard: int) -> str:
    return f"{run_id}-s{shard:05d}"


def table_file(out: Path, table: str, run_date: str, name: str) -> Path:
    return out / table / f"run_date={run_date}" / f"{name}.parquet"


def ledger_dir(out: Path) -> Path:
    return out / "_state" / "ledger"


LEDGER_COMPACT_AT = 64  # ledger files; planning reads each of them once per partition


def compact_ledger(out: Path, run_id: str) -> int:
    """Fold the ledger's per-shard files into one once there are many; returns how many were folded.

    Streams record batches, so memory stays flat however long the history. A crash before the new file is in
    place leaves only a `.tmp` (removed next time); a crash after it leaves some rows twice, which planning
    reads as one (DISTINCT) and the next compaction folds again.
    """
    folder = ledger_dir(out)
    for stale in folder.glob("*.parquet.tmp"):
        stale.unlink()
    files = sorted(folder.glob("*.parquet"))
    if len(files) < LEDGER_COMPACT_AT:
        return 0
    target = folder / f"compact-{run_id}.parquet"
    tmp = target.with_name(target.name + ".tmp")
    with pq.ParquetWriter(tmp, LEDGER_SCHEMA, compression="zstd") as writer:
        for path in files:
            for batch in pq.ParquetFile(path).iter_batches(batch_size=65_536):
                writer.write_batch(batch)
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, target)
    for path in files:
        if path != target:
            path.unlink()
    return len(files)


def _fsync_write(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def write_table(path: Path, table: str, rows: list[dict[str, Any]]) -> None:
    schema = TABLES[table] if table in TABLES else LEDGER_SCHEMA
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path, compression="zstd")


def ensure_tables(out: Path, run_date: str, run_id: str) -> list[str]:
    """Give every table at least one file (empty, with the schema), so that a query over a table no run has
    filled yet (`read_parquet('warehouse/faces/**/*.parquet')` on a night without faces) finds it. Returns
    the tables that got one."""
    created = []
    for table in TABLES:
        if any((out / table).glob("run_date=*/*.parquet")):
            continue
        path = table_file(out, table, run_date, f"{run_id}-empty")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f".{path.name}.tmp"
        write_table(tmp, table, [])
        os.replace(tmp, path)
        created.append(table)
    return created


def commit_shard(out: Path, run_date: str, name: str, tables: dict[str, list[dict[str, Any]]],
                 ledger: list[dict[str, Any]]) -> dict[str, int]:
    """Write one shard's rows for every table (empty tables write no file) and its ledger, atomically."""
    staging = out / "_staging" / name
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    moves: list[tuple[str, str]] = []
    counts = {}
    for table, rows in tables.items():
        counts[table] = len(rows)
        if not rows:
            continue
        staged = staging / f"{table}.parquet"
        write_table(staged, table, rows)
        failpoints.hit("staging")
        moves.append((staged.name, str(table_file(out, table, run_date, name).relative_to(out))))
    if ledger:
        staged = staging / "ledger.parquet"
        write_table(staged, "_ledger", ledger)
        moves.append((staged.name, str((ledger_dir(out) / f"{name}.parquet").relative_to(out))))  # last
    _fsync_write(staging / "COMMIT", json.dumps(moves).encode())
    _apply(out, staging, moves)
    return counts


def _apply(out: Path, staging: Path, moves: list[tuple[str, str]]) -> None:
    for staged, destination in moves:
        src, dst = staging / staged, out / destination
        if src.exists():  # already moved by an earlier, interrupted attempt
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dst)
            failpoints.hit("commit")  # between two moves of one shard: the worst moment to die
    shutil.rmtree(staging, ignore_errors=True)


def recover(out: Path) -> dict[str, int]:
    """Finish shards that committed before a crash; drop those that did not."""
    finished = dropped = 0
    root = out / "_staging"
    if not root.is_dir():
        return {"finished": 0, "dropped": 0}
    for staging in sorted(p for p in root.iterdir() if p.is_dir()):
        marker = staging / "COMMIT"
        try:
            moves = json.loads(marker.read_text()) if marker.exists() else None
        except ValueError:
            moves = None  # a marker torn by the crash: the shard never committed
        if moves is None:
            shutil.rmtree(staging, ignore_errors=True)
            dropped += 1
        else:
            _apply(out, staging, [tuple(m) for m in moves])
            finished += 1
    return {"finished": finished, "dropped": dropped}


RUN_TABLE = "read_parquet($files, hive_partitioning = true)"  # what query_run's SQL reads


def query_run(out: Path, table: str, sql: str, run_id: str, **params: Any) -> list[tuple]:
    """`sql` reads the table as `read_parquet($files, ...)`; the files, the run id and `params` are bound."""
    if not any((out / table).glob("run_date=*/*.parquet")):
        return []
    con = duckdb.connect()
    try:
        bound = {"files": str(out / table / "**" / "*.parquet"), "run_id": run_id, **params}
        return con.execute(sql, bound).fetchall()
    finally:
        con.close()
