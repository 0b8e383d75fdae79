"""Damaged state heals: ledger and table files that something outside imgrec truncated, emptied or garbled.

At the start of every run, before planning, each ledger file (and, for Parquet tables in a folder, each
table file) is opened far enough to read its footer and schema. A file that cannot be read is moved aside
with the rest of its shard, under `_quarantine/<run_id>/` (same relative paths), so that the shard's
images are planned again and redone by this run: the shard's rows and its ledger entries go together, and
the redone rows replace, not duplicate, what was lost. When the shard's ledger entries were compacted into
`compact-*.parquet` already, that file is rewritten without them. Every file moved is logged and counted in
the run's report.

A bucket's table files are not opened every night (each would cost a request; a PUT is atomic, so only
another writer can tear one): its ledger files, which planning downloads anyway, are.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path, PurePosixPath

import pyarrow.compute as pc
import pyarrow.parquet as pq

from imgrec.connectors.output import Output, local_copies
from imgrec.schemas.tables import LEDGER_SCHEMA, TABLES

from .formats.parquet import damaged_table_files, readable
from .writing import LEDGER, ledger_names

log = logging.getLogger("imgrec.tasks.damage")
QUARANTINE = "_quarantine"


def _shard_of(name: str) -> str:
    return PurePosixPath(name).stem  # <run_id>-sNNNNN (or compact-<run_id>)


def _shard_files(output: Output, shard: str) -> list[str]:
    """Every table file and the ledger file of one shard, wherever its run dates are."""
    names = []
    for table in TABLES:
        names += [n for n in output.list(table) if PurePosixPath(n).stem == shard]
    ledger = f"{LEDGER}/{shard}.parquet"
    return names + ([ledger] if output.exists(ledger) else [])


def quarantine(output: Output, run_id: str, work: Path, damaged_tables: list[str] | None = None) -> list[str]:
    """Move damaged ledger files and `damaged_tables` (the table format's unreadable files; default: a
    folder's Parquet table files), each with the rest of its shard, aside; returns what was moved."""
    work.mkdir(parents=True, exist_ok=True)
    if damaged_tables is None:
        damaged_tables = damaged_table_files(output.local_root) if output.local_root is not None else []
    ledgers = ledger_names(output)
    copies = dict(zip(ledgers, local_copies(output, ledgers, work / "ledger-check")))
    bad = [name for name, path in copies.items() if not readable(path, LEDGER_SCHEMA.names)]
    bad += damaged_tables
    if not bad:
        return []
    moved: list[str] = []
    compacted_shards: list[str] = []
    for name in bad:
        shard = _shard_of(name)
        if shard.startswith("compact-") or shard.endswith("-empty") or name in moved:
            files = [name] if name not in moved else []  # a compact ledger, or a table's empty placeholder
        else:
            files = _shard_files(output, shard)
            if f"{LEDGER}/{shard}.parquet" not in files:
                compacted_shards.append(shard)  # its ledger entries are in a compact file
        for file in files:
            if output.move(file, f"{QUARANTINE}/{run_id}/{file}"):
                moved.append(file)
    if compacted_shards:
        _forget_in_compacted(output, compacted_shards, moved, run_id, work, copies)
    for file in moved:
        log.warning("quarantined a damaged or incomplete shard's file: %s -> %s/%s/%s", file, QUARANTINE,
                    run_id, file)
    return moved


def _forget_in_compacted(output: Output, shards: list[str], moved: list[str], run_id: str, work: Path,
                         copies: dict[str, Path]) -> None:
    """Drop the ledger entries of `shards` from the compact ledger files, so their images are redone. A
    shard's keys come from its moved table files that can still be read (its `images` file, usually)."""
    forget: dict[str, set[str]] = {}  # run id -> keys
    quarantined = local_copies(output, [f"{QUARANTINE}/{run_id}/{m}" for m in moved], work / "quarantined")
    for name, path in zip(moved, quarantined):
        shard = _shard_of(name)
        if shard in shards and readable(path, ["key", "run_id"]):
            table = pq.read_table(path, columns=["key", "run_id"])
            for run, key in zip(table.column("run_id").to_pylist(), table.column("key").to_pylist()):
                forget.setdefault(run, set()).add(key)
    if not forget:
        log.warning("damaged shard(s) %s: no readable file names their images; their rows are in %s/%s",
                    ", ".join(shards), QUARANTINE, run_id)
        return
    for name, path in copies.items():
        if not _shard_of(name).startswith("compact-") or name in moved:
            continue
        ledger = pq.read_table(path)
        drop = None
        for run, keys in forget.items():
            term = pc.and_(pc.equal(ledger.column("run_id"), run), pc.is_in(ledger.column("key"),
                                                                            value_set=pc.array(sorted(keys))))
            drop = term if drop is None else pc.or_(drop, term)
        kept = ledger.filter(pc.invert(drop))
        if kept.num_rows == ledger.num_rows:
            continue
        tmp = work / f"{PurePosixPath(name).name}.tmp"
        pq.write_table(kept, tmp, compression="zstd")
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        output.put_file(tmp, name)  # whole, in place: a crash leaves the old file, and this repeats
