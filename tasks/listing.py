"""List the source into Parquet batches in the run's local working folder: streaming, never the whole bucket in memory."""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from imgrec.connectors.source import Source

from . import failpoints
from .job import Job

LISTING_SCHEMA = pa.schema([
    pa.field("key", pa.string()), pa.field("size", pa.int64()), pa.field("etag", pa.string()),
    pa.field("last_modified", pa.timestamp("us", tz="UTC")), pa.field("fingerprint", pa.string()),
    pa.field("problem", pa.string()), pa.field("problem_retryable", pa.bool_()),
])
BATCH = 10_000


def list_objects(storage: Source, job: Job) -> int:
    folder = job.work_dir / "listing"
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.parquet"):
        old.unlink()
    writer: pq.ParquetWriter | None = None
    batch: list[dict] = []
    count = 0

    def flush() -> None:
        nonlocal writer
        if not batch:
            return
        if writer is None:
            writer = pq.ParquetWriter(folder / "listing.parquet", LISTING_SCHEMA, compression="zstd")
        writer.write_table(pa.Table.from_pylist(batch, schema=LISTING_SCHEMA))
        batch.clear()

    try:
        for obj in storage.list(job.prefix):
            if job.modified_since and obj.last_modified < job.modified_since:
                continue
            if job.modified_until and obj.last_modified >= job.modified_until:
                continue
            batch.append({"key": obj.key, "size": obj.size, "etag": obj.etag, "last_modified": obj.last_modified,
                          "fingerprint": obj.fingerprint, "problem": obj.problem or None,
                          "problem_retryable": obj.problem_retryable})
            count += 1
            failpoints.hit("listing")
            if len(batch) >= BATCH:
                flush()
        flush()
    finally:
        if writer is not None:
            writer.close()
    return count


def listing_files(job: Job) -> list[Path]:
    return sorted((job.work_dir / "listing").glob("*.parquet"))
