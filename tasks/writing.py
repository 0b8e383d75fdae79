"""Crash-safe table writing on a folder or a bucket: a shard's rows become visible all together or not at all
(up to the moment between two moves of one shard), and a retried or re-run shard never adds rows twice.

Layout under the output (a folder, or a bucket prefix; connectors/output.py):
  <table>/...                                              the tables, as their format lays them out (formats/)
  _state/ledger/<run_id>-s<NNNNN>.parquet                  what succeeded, for incremental runs
  _state/ledger/compact-<run_id>.parquet                   many of those folded into one (compact_ledger)
  _state/answers/<run_id>-s<NNNNN>.parquet                 each call's answer by content digest (reuse.py)
  _staging/<run_id>-s<NNNNN>/                              objects being written, and their COMMIT marker

A shard writes every table's rows as a Parquet file into its staging prefix, then a COMMIT marker naming
each file's destination (as the run's table format names it), then lands them, the ledger entry last.
Parquet tables land by a move: a folder renames; a bucket has no rename, so a move is a server-side copy
then a delete of the staged object, which an interrupted attempt simply repeats (a destination is written
whole or not at all, and only a staged object that still exists is moved). Iceberg tables land as one
append carrying the shard's id, never made twice (tasks/formats/iceberg.py).
`recover()` at the start of every run finishes committed shards and discards uncommitted ones, so a process
killed at any point leaves neither half a shard nor temporary objects among the table data. Names are fixed
per run and shard, so a retried shard replaces its objects instead of adding rows.
"""
from __future__ import annotations

import json
import os
from pathlib import Path, PurePosixPath
from typing import Any

import pyarrow.parquet as pq

from imgrec.connectors.output import FolderOutput, Output, local_copies
from imgrec.schemas.tables import ANSWERS_SCHEMA, LEDGER_SCHEMA

from . import failpoints
from .formats import TableFormat
from .formats.parquet import ParquetFiles, parquet_bytes

LEDGER = "_state/ledger"
ANSWERS = "_state/answers"
STAGING = "_staging"


def shard_name(run_id: str, shard: int) -> str:
    return f"{run_id}-s{shard:05d}"


def ledger_dir(out: Path) -> Path:
    return out / LEDGER


def as_output(out: Output | Path | str) -> Output:
    return FolderOutput(out) if isinstance(out, (str, Path)) else out


LEDGER_COMPACT_AT = 64  # ledger files; planning reads each of them once per partition


def ledger_names(output: Output, folder: str = LEDGER) -> list[str]:
    return [name for name in output.list(folder) if name.endswith(".parquet")]


def compact_ledger(out: Output | Path, run_id: str, work: Path | None = None, folder: str = LEDGER) -> int:
    """Fold the ledger's per-shard files (or the answers', `folder=ANSWERS`) into one once there are many;
    returns how many were folded.

    Streams record batches, so memory stays flat however long the history. The new file is put in place
    whole (rename or PUT) before the old ones go: a crash in between leaves some rows twice, which planning
    reads as one (DISTINCT; a twin's answer found twice is the same answer) and the next compaction folds
    again.
    """
    output = as_output(out)
    names = ledger_names(output, folder)
    if len(names) < LEDGER_COMPACT_AT:
        return 0
    work = work or output.local_root / "_runs" / run_id
    work.mkdir(parents=True, exist_ok=True)
    target = f"{folder}/compact-{run_id}.parquet"
    tmp = work / f"compact-{run_id}.parquet.tmp"
    schema = ANSWERS_SCHEMA if folder == ANSWERS else LEDGER_SCHEMA
    with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
        for path in local_copies(output, names, work / folder):
            for batch in pq.ParquetFile(path).iter_batches(batch_size=65_536):
                writer.write_batch(batch)
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    output.put_file(tmp, target)
    output.delete(name for name in names if name != target)
    return len(names)


def commit_shard(out: Output | Path, run_date: str, name: str, tables: dict[str, list[dict[str, Any]]],
                 ledger: list[dict[str, Any]], table_format: TableFormat | None = None,
                 answers: list[dict[str, Any]] = ()) -> dict[str, int]:
    """Write one shard's rows for every table (empty tables write nothing), its answers and its ledger,
    atomically, into the run's `table_format` (default: Parquet files in `out`)."""
    output = as_output(out)
    table_format = table_format or ParquetFiles(output)
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
        moves.append((staged, table_format.destination(table, run_date, name)))
    if answers:
        staged = f"{staging}/answers.parquet"
        output.put(staged, parquet_bytes("_answers", list(answers)))
        moves.append((staged, f"{ANSWERS}/{name}.parquet"))
    if ledger:
        staged = f"{staging}/ledger.parquet"
        output.put(staged, parquet_bytes("_ledger", ledger))
        moves.append((staged, f"{LEDGER}/{name}.parquet"))  # last
    output.put(f"{staging}/COMMIT", json.dumps(moves).encode())
    _apply(output, staging, moves, table_format)
    return counts


def _apply(output: Output, staging: str, moves: list[tuple[str, str]], table_format: TableFormat) -> None:
    name = PurePosixPath(staging).name
    for staged, destination in moves:
        if "/" not in staged:  # a marker written before staged names were full paths
            staged = f"{staging}/{staged}"
        if destination.startswith((f"{LEDGER}/", f"{ANSWERS}/")):
            landed = output.move(staged, destination)
        elif table_format.owns(destination):
            landed = table_format.land(staged, destination, name)
        else:
            raise RuntimeError(f"shard {name} was committed to another table format ({destination}): run with "
                               f"that table_format, not {table_format.name}")
        if landed:  # False: landed by an earlier, interrupted attempt
            failpoints.hit("commit")  # between two moves of one shard: the worst moment to die
    output.delete_tree(staging)


def recover(out: Output | Path, table_format: TableFormat | None = None) -> dict[str, int]:
    """Finish shards that committed before a crash (into `table_format`, default Parquet files); drop those
    that did not."""
    output = as_output(out)
    table_format = table_format or ParquetFiles(output)
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
            _apply(output, staging, [tuple(m) for m in moves], table_format)
            finished += 1
    return {"finished": finished, "dropped": dropped}
