"""Plan shards: which listed objects still need which APIs (DuckDB anti-join against the ledger).

Objects with work go into shards of `shard_size`; unchanged ones into large "skipped" shards that only
record their status. The plan is made in hash partitions of at most `PARTITION_ROWS` listed objects, one
DuckDB query each, so peak memory stays flat however large the bucket (bench/scale.py: 10,000 and
100,000 objects plan in the same memory). Inside a partition, shards hold consecutive keys.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from imgrec.connectors.output import local_copies
from imgrec.schemas import similar
from imgrec.schemas.run import is_bucket

from .formats.parquet import arrow_table
from .job import Job
from .listing import listing_files
from .writing import ledger_names

SKIPPED_SHARD_SIZE = 10_000
# Rows one planning query holds. DuckDB's memory grows with the rows of a query (~0.5 KB each here,
# whatever its memory_limit says), so large listings are planned a partition at a time.
PARTITION_ROWS = 10_000
SKIPPED = 1_000_000  # local shard numbers from here on hold objects with nothing to do


@dataclass(frozen=True)
class Shard:
    index: int
    path: str  # manifest Parquet in the run's output: key, size, etag, last_modified, fingerprint, problem(_retryable), pending
    objects: int
    pending_calls: int  # to the backend; fingerprints are made here, not called for
    calls_by_api: dict[str, int] = field(default_factory=dict)
    fingerprints: int = 0


def plan_shards(job: Job, publish: bool = True) -> list[Shard]:
    """The run's shards, their manifests put in the output (`publish`; a dry run keeps them in its working
    folder and writes nothing to the output)."""
    if publish:
        job.output.delete_tree(job.shards_prefix)  # a retried flow run's earlier plan
    folder = job.work_dir / "shards"
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.parquet"):
        old.unlink()
    files = [str(f) for f in listing_files(job)]
    listed = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    if not listed:
        return []
    no_history = job.force or (not publish and not is_bucket(job.out) and not Path(job.out).is_dir())
    ledgers = [] if no_history else [
        str(f) for f in local_copies(job.output, ledger_names(job.output), job.work_dir / "ledger")]
    con = duckdb.connect(config={"memory_limit": "128MB", "threads": 1, "preserve_insertion_order": False})
    con.execute("CREATE TEMP TABLE wanted(api VARCHAR, params_hash VARCHAR)")
    con.executemany("INSERT INTO wanted VALUES (?, ?)", [(api, job.params_hash(api)) for api in job.work])
    done = ("SELECT DISTINCT api, params_hash, key, fingerprint FROM read_parquet($ledgers) "
            "WHERE hash(key) % $partitions = $partition" if ledgers else
            "SELECT NULL::VARCHAR AS api, NULL::VARCHAR AS params_hash, NULL::VARCHAR AS key, "
            "NULL::VARCHAR AS fingerprint WHERE false")
    query = f"""
        WITH listing AS (SELECT * FROM read_parquet($listing) WHERE hash(key) % $partitions = $partition),
             done AS ({done}),
             plan AS (
                SELECT l.key, any_value(l.size) AS size, any_value(l.etag) AS etag,
                       any_value(l.last_modified) AS last_modified, l.fingerprint,
                       any_value(l.problem) AS problem, any_value(l.problem_retryable) AS problem_retryable,
                       coalesce(list(w.api ORDER BY w.api) FILTER (WHERE d.key IS NULL), []) AS pending
                FROM listing l CROSS JOIN wanted w
                LEFT JOIN done d ON d.api = w.api AND d.params_hash = w.params_hash AND d.key = l.key
                                AND d.fingerprint = l.fingerprint
                GROUP BY l.key, l.fingerprint)
        SELECT *, CASE WHEN len(pending) > 0
            THEN (row_number() OVER (PARTITION BY len(pending) > 0 ORDER BY key) - 1) // $shard_size
            ELSE $skipped + (row_number() OVER (PARTITION BY len(pending) > 0 ORDER BY key) - 1) // $skipped_size
            END AS shard
        FROM plan ORDER BY shard, key"""
    partitions = max(1, math.ceil(listed / PARTITION_ROWS))
    # (skipped, partition, local shard, file, objects, calls per API, fingerprints)
    pieces: list[tuple[bool, int, int, Path, int, Counter, int]] = []
    for partition in range(partitions):
        params = {"listing": files, "partitions": partitions, "partition": partition,
                  "shard_size": int(job.shard_size), "skipped": SKIPPED, "skipped_size": SKIPPED_SHARD_SIZE}
        if ledgers:
            params["ledgers"] = ledgers
        # At most PARTITION_ROWS rows of keys: small enough to hold, then one manifest file per shard.
        relation = con.sql(query, params=params)
        plan = arrow_table(relation)
        shard_column = plan.column("shard").to_numpy()
        manifest = plan.drop_columns(["shard"])
        starts = [0] + [i for i in range(1, len(shard_column)) if shard_column[i] != shard_column[i - 1]]
        for start, end in zip(starts, starts[1:] + [len(shard_column)]):
            local = int(shard_column[start])
            rows = manifest.slice(start, end - start)
            path = folder / f"p{partition:05d}-{local:07d}.parquet"
            pq.write_table(rows, path)
            calls = Counter(api for pending in rows.column("pending").to_pylist() for api in pending)
            fingerprints = calls.pop(similar.WORK, 0)
            pieces.append((local >= SKIPPED, partition, local, path, rows.num_rows, calls, fingerprints))
    con.close()
    shards = []
    ordered = sorted(pieces, key=lambda p: p[:3])  # work first, then skipped shards
    for index, (_, _, _, piece, objects, calls, fingerprints) in enumerate(ordered):
        name = f"{job.shards_prefix}/s{index:05d}.parquet"  # in the output: every worker reads it there
        if publish:
            job.output.put_file(piece, name)
        shards.append(Shard(index, name if publish else str(piece), objects, sum(calls.values()), dict(calls),
                            fingerprints))
    return shards
