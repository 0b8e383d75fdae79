"""Crash-safe table writing on a folder or a bucket: a shard's rows become visible all together or not at all
(up to the moment between two moves of one shard), and a retried or re-run shard never adds rows twice.

Layout under the output (a folder, or a bucket prefix; connectors/output.py):
  <table>/run_date=YYYY-MM-DD/<run_id>-s<NNNNN>.parquet   the tables (Hive partitioned; Parquet format)
  _state/ledger/<run_id>-s<NNNNN>.parquet                  what succeeded, for incremental runs
  _state/ledger/compact-<run_id>.parquet                   many of those folded into one (compact_ledger)
  _staging/<run_id>-s<NNNNN>/                              objects being written, and their COMMIT marker

A shard writes every object into its staging prefix, then a COMMIT marker naming each object's destination,
then moves them into place, the ledger entry last. A folder moves by rename; a bucket has no rename, so a
move is a server-side copy then a delete of the staged object, which an interrupted attempt simply repeats
(a destination is written whole or not at all, and only a staged object that still exists is moved).
With Iceberg tables a table's "move" is one Iceberg append carrying the shard's id in its snapshot summary;
an append whose id is already in the table's history is not made again (tasks/iceberg.py).
`recover()` at the start of every run finishes committed shards and discards uncommitted ones, so a process
killed at any point leaves neither half a shard nor temporary objects among the table data. Names are fixed
per run and shard, so a retried shard replaces its objects instead of adding rows.
"""
from __future__ import annotations

import io
import json
import os
from pathlib import Path, PurePosixPath
from typing import Any, Callable

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from imgrec.connectors.output import FolderOutput, Output, local_copies
from imgrec.schemas.tables import TABLES

from . import failpoints

LEDGER = "_state/ledger"
STAGING = "_staging"
ICEBERG = "iceberg:"  # a COMMIT marker's destination for an Iceberg append: iceberg:<table>:<run_date>

LEDGER_SCHEMA = pa.schema([
    pa.field("api", pa.string()), pa.field("params_hash", pa.string()), pa.field("key", pa.string()),
    pa.field("fingerprint", pa.string()), pa.field("outcome", pa.string()), pa.field("run_id", pa.string()),
])


def shard_name(run_id: str, shard: int) -> str:
    return f"{run_id}-s{shard:05d}"


def table_name(table: str, run_date: str, name: str) -> str:
    return f"{table}/run_date={run_date}/{name}.parquet"


def table_file(out: Path, table: str, run_date: str, name: str) -> Path:
    return out / table_name(table, run_date, name)


def ledger_dir(out: Path) -> Path:
    return out / LEDGER


def as_output(out: Output | Path | str) -> Output:
    return FolderOutput(out) if isinstance(out, (str, Path)) else out


LEDGER_COMPACT_AT = 64  # ledger files; planning reads each of them once per partition


def ledger_names(output: Output) -> list[str]:
    return [name for name in output.list(LEDGER) if name.endswith(".parquet")]


def compact_ledger(out: Output | Path, run_id: str, work: Path | None = None) -> int:
    """Fold the ledger's per-shard files into one once there are many; returns how many were folded.

    Streams record batches, so memory stays flat however long the history. The new file is put in place
    whole (rename or PUT) before the old ones go: a crash in between leaves some rows twice, which planning
    reads as one (DISTINCT) and the next compaction folds again.
    """
    output = as_output(out)
    names = ledger_names(output)
    if len(names) < LEDGER_COMPACT_AT:
        return 0
    work = work or output.local_root / "_runs" / run_id
    work.mkdir(parents=True, exist_ok=True)
    target = f"{LEDGER}/compact-{run_id}.parquet"
    tmp = work / f"compact-{run_id}.parquet.tmp"
    with pq.ParquetWriter(tmp, LEDGER_SCHEMA, compression="zstd") as writer:
        for path in local_copies(output, names, work / "ledger"):
            for batch in pq.ParquetFile(path).iter_batches(batch_size=65_536):
                writer.write_batch(batch)
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    output.put_file(tmp, target)
    output.delete(name for name in names if name != target)
    return len(names)


def write_table(path: Path | io.BytesIO, table: str, rows: list[dict[str, Any]]) -> None:
    schema = TABLES[table] if table in TABLES else LEDGER_SCHEMA
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path, compression="zstd")


def parquet_bytes(table: str, rows: list[dict[str, Any]]) -> bytes:
    buffer = io.BytesIO()
    write_table(buffer, table, rows)
    return buffer.getvalue()


def ensure_tables(out: Output | Path, run_date: str, run_id: str) -> list[str]:
    """Give every table at least one file (empty, with the schema), so that a query over a table no run has
    filled yet (`read_parquet('warehouse/faces/**/*.parquet')` on a night without faces) finds it. Returns
    the tables that got one."""
    output = as_output(out)
    created = []
    for table in TABLES:
        if any(name.endswith(".parquet") for name in output.list(table)):
            continue
        output.put(table_name(table, run_date, f"{run_id}-empty"), parquet_bytes(table, []))
        created.append(table)
    return created


# Appends one staged shard file to an Iceberg table: (table, run_date, shard name, Parquet bytes); a no-op
# when that shard's append is already in the table.
IcebergAppend = Callable[[str, str, str, bytes], None]


def commit_shard(out: Output | Path, run_date: str, name: str, tables: dict[str, list[dict[str, Any]]],
                 ledger: list[dict[str, Any]], iceberg: IcebergAppend | None = None) -> dict[str, int]:
    """Write one shard's rows for every table (empty tables write nothing) and its ledger, atomically.
    With `iceberg`, the tables are appended to Iceberg tables instead of landing as Parquet files."""
    output = as_output(out)
    staging = f"{STAGING}/{name}"
    output.delete_tree(staging)
    moves: list[tuple[str, str]] = []
    counts = {}
    for table, rows in tables.items():
        counts[table] = len(rows)
        if not rows:
            continue
        staged = f"{staging}/{table}.parquet"
        output.put(staged, parquet_bytes(table, rows))
        failpoints.hit("staging")
        moves.append((staged, f"{ICEBERG}{table}:{run_date}" if iceberg else table_name(table, run_date, name)))
    if ledger:
        staged = f"{staging}/ledger.parquet"
        output.put(staged, parquet_bytes("_ledger", ledger))
        moves.append((staged, f"{LEDGER}/{name}.parquet"))  # last
    output.put(f"{staging}/COMMIT", json.dumps(moves).encode())
    _apply(output, staging, moves, iceberg)
    return counts


def _apply(output: Output, staging: str, moves: list[tuple[str, str]], iceberg: IcebergAppend | None) -> None:
    name = PurePosixPath(staging).name
    for staged, destination in moves:
        if "/" not in staged:  # a marker written before staged names were full paths
            staged = f"{staging}/{staged}"
        if destination.startswith(ICEBERG):
            if iceberg is None:
                raise RuntimeError(f"shard {name} commits to Iceberg tables: run with table_format iceberg")
            if output.exists(staged):  # gone: appended and removed by an earlier, interrupted attempt
                table, _, run_date = destination[len(ICEBERG):].partition(":")
                iceberg(table, run_date, name, output.get(staged))
                output.delete([staged])
                failpoints.hit("commit")
        elif output.move(staged, destination):  # False: already moved by an earlier, interrupted attempt
            failpoints.hit("commit")  # between two moves of one shard: the worst moment to die
    output.delete_tree(staging)


def recover(out: Output | Path, iceberg: IcebergAppend | None = None) -> dict[str, int]:
    """Finish shards that committed before a crash; drop those that did not."""
    output = as_output(out)
    finished = dropped = 0
    shards: dict[str, list[str]] = {}
    for name in output.list(STAGING):
        shards.setdefault(name.split("/")[1], []).append(name)
    if output.local_root is not None:  # a folder's staging folder left empty by a crash
        for folder in (output.local_root / STAGING).glob("*"):
            shards.setdefault(folder.name, [])
    for shard, names in sorted(shards.items()):
        staging = f"{STAGING}/{shard}"
        marker = f"{staging}/COMMIT"
        try:
            moves = json.loads(output.get(marker)) if marker in names else None
        except ValueError:
            moves = None  # a marker torn by the crash (a folder's): the shard never committed
        if moves is None:
            output.delete_tree(staging)
            dropped += 1
        else:
            _apply(output, staging, [tuple(m) for m in moves], iceberg)
            finished += 1
    return {"finished": finished, "dropped": dropped}


RUN_TABLE = "run_table"  # what query_run's SQL reads: this run's rows of one table


def query_run(job, table: str, sql: str, **params: Any) -> list[tuple]:
    """`sql` reads this run's rows of `table` as `run_table`; the run id and `params` are bound."""
    con = duckdb.connect()
    try:
        if job.table_format == "iceberg":
            from .iceberg import IcebergTables

            rows = IcebergTables.of(job).scan(table, run_id=job.run_id, run_date=job.run_date)
            if rows.num_rows == 0:
                return []
            con.register(RUN_TABLE, rows)
        else:
            names = [n for n in job.output.list(f"{table}/run_date={job.run_date}")
                     if PurePosixPath(n).name.startswith((f"{job.run_id}-", f"{job.run_id}."))]
            if not names:
                return []
            # The report asks several questions of one table: its files (final by now) are fetched once.
            files = local_copies(job.output, names, job.work_dir / "tables", reuse=True)
            con.read_parquet([str(f) for f in files], hive_partitioning=True).create_view(RUN_TABLE)
        return con.execute(sql, {"run_id": job.run_id, **params}).fetchall()
    finally:
        con.close()
