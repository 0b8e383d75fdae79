"""Plan shards: which listed objects still need which APIs (DuckDB anti-join against the ledger).

Objects with work go into shards of `shard_size`; unchanged ones into large "skipped" shards that only
record their status. Work happens out of core in DuckDB, so 100,000 objects plan in bounded memory.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb

from .job import Job
from .listing import listing_files
from .writing import ledger_dir

SKIPPED_SHARD_SIZE = 10_000


@dataclass(frozen=True)
class Shard:
    index: int
    path: str  # manifest Parquet: key, size, etag, last_modified, fingerprint, pending
    objects: int
    pending_calls: int


def _sql_list(paths: list[Path]) -> str:
    return "[" + ", ".join("'" + str(p).replace("'", "''") + "'" for p in paths) + "]"


def plan_shards(job: Job) -> list[Shard]:
    folder = job.run_dir / "shards"
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.parquet"):
        old.unlink()
    files = listing_files(job)
    if not files:
        return []
    con = duckdb.connect()
    con.execute("SET memory_limit='1GB'; SET threads=2")
    con.execute(f"CREATE TEMP TABLE listing AS SELECT * FROM read_parquet({_sql_list(files)})")
    con.execute("CREATE TEMP TABLE wanted(api VARCHAR, params_hash VARCHAR)")
    con.executemany("INSERT INTO wanted VALUES (?, ?)", [(api, job.params_hash(api)) for api in job.apis])
    ledgers = sorted(ledger_dir(job.out_path).glob("*.parquet"))
    if ledgers and not job.force:
        con.execute(f"CREATE TEMP TABLE done AS SELECT DISTINCT api, params_hash, key, fingerprint "
                    f"FROM read_parquet({_sql_list(ledgers)})")
    else:
        con.execute("CREATE TEMP TABLE done(api VARCHAR, params_hash VARCHAR, key VARCHAR, fingerprint VARCHAR)")
    con.execute("""
        CREATE TEMP TABLE plan AS
        SELECT l.key, any_value(l.size) AS size, any_value(l.etag) AS etag,
               any_value(l.last_modified) AS last_modified, l.fingerprint,
               coalesce(list(w.api ORDER BY w.api) FILTER (WHERE d.key IS NULL), []) AS pending
        FROM listing l CROSS JOIN wanted w
        LEFT JOIN done d ON d.api = w.api AND d.params_hash = w.params_hash AND d.key = l.key
                        AND d.fingerprint = l.fingerprint
        GROUP BY l.key, l.fingerprint
    """)
    con.execute(f"""
        CREATE TEMP TABLE numbered AS
        SELECT *, CASE WHEN len(pending) > 0
                       THEN (row_number() OVER (PARTITION BY len(pending) > 0 ORDER BY key) - 1) // {int(job.shard_size)}
                       ELSE 1000000 + (row_number() OVER (PARTITION BY len(pending) > 0 ORDER BY key) - 1) // {SKIPPED_SHARD_SIZE}
                  END AS shard
        FROM plan
    """)
    shards = []
    groups = con.execute("SELECT shard, count(*), sum(len(pending)) FROM numbered GROUP BY shard ORDER BY shard").fetchall()
    for index, (group, count, calls) in enumerate(groups):
        path = folder / f"s{index:05d}.parquet"
        con.execute(f"COPY (SELECT key, size, etag, last_modified, fingerprint, pending FROM numbered "
                    f"WHERE shard = {int(group)} ORDER BY key) TO '{path}' (FORMAT parquet)")
        shards.append(Shard(index, str(path), int(count), int(calls or 0)))
    con.close()
    return shards
