"""List the source into Parquet batches in the run's local working folder: streaming, never the whole bucket
in memory.

Which objects a run takes, in order: those under `prefix` (or those a `manifest` names), modified within
`modified_since`/`modified_until`, whose key matches an `include` glob (when any is given) and no `exclude`
glob, and which are images: by the name's extension (IMAGE_SUFFIXES), or with `sniff` by their first bytes
when the name has no image extension. A manifest's entries are taken whatever their names (the user named
them; a non-image ends as an error row). What was passed over is counted, never silently dropped.
"""
from __future__ import annotations

import csv
import fnmatch
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from imgrec.connectors.source import SNIFF_BYTES, ObjectInfo, Source, is_image_key, looks_like_image
from imgrec.schemas.run import is_bucket

from . import failpoints
from .job import Job

LISTING_SCHEMA = pa.schema([
    pa.field("key", pa.string()), pa.field("size", pa.int64()), pa.field("etag", pa.string()),
    pa.field("last_modified", pa.timestamp("us", tz="UTC")), pa.field("fingerprint", pa.string()),
    pa.field("problem", pa.string()), pa.field("problem_retryable", pa.bool_()),
])
BATCH = 10_000
MANIFEST_FIELDS = ("key", "source-ref", "url", "path")  # a manifest row's key, by the first column present


@dataclass
class Listing:
    listed: int = 0  # objects the run takes
    not_images: int = 0  # passed over: not an image by name (or, with sniff, by their first bytes)
    excluded: int = 0  # passed over by the include/exclude globs
    out_of_range: int = 0  # passed over by modified_since / modified_until


def list_objects(source: Source, job: Job) -> Listing:
    folder = job.work_dir / "listing"
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.parquet"):
        old.unlink()
    counts = Listing()
    batch: list[dict] = []
    with pq.ParquetWriter(folder / "listing.parquet", LISTING_SCHEMA, compression="zstd") as writer:
        for obj in _taken(source, job, counts):
            batch.append({"key": obj.key, "size": obj.size, "etag": obj.etag, "last_modified": obj.last_modified,
                          "fingerprint": obj.fingerprint, "problem": obj.problem or None,
                          "problem_retryable": obj.problem_retryable})
            counts.listed += 1
            failpoints.hit("listing")
            if len(batch) >= BATCH:
                writer.write_table(pa.Table.from_pylist(batch, schema=LISTING_SCHEMA))
                batch.clear()
        if batch:
            writer.write_table(pa.Table.from_pylist(batch, schema=LISTING_SCHEMA))
    return counts


def _taken(source: Source, job: Job, counts: Listing) -> Iterator[ObjectInfo]:
    named = job.manifest is not None

    def by_key(key: str) -> bool:  # decided from the key alone, before the source examines the object
        if not wanted_key(key, job.include, job.exclude):
            counts.excluded += 1
            return False
        if named or job.sniff or is_image_key(key):
            return True
        counts.not_images += 1
        return False

    objects = (source.stat(key) for key in manifest_keys(job.manifest, source) if by_key(key)) if named \
        else source.list(job.prefix, by_key)
    for obj in objects:
        if not obj.problem and ((job.modified_since and obj.last_modified < job.modified_since) or
                                (job.modified_until and obj.last_modified >= job.modified_until)):
            counts.out_of_range += 1
        elif named or obj.problem or is_image_key(obj.key) or _sniffed(source, obj):
            yield obj
        else:
            counts.not_images += 1  # sniffed: not an image's first bytes


def wanted_key(key: str, include: list[str], exclude: list[str]) -> bool:
    """Shell-style globs on the whole key (`*` also matches `/`): `shop/*.jpg`, `*/thumbs/*`."""
    if include and not any(fnmatch.fnmatchcase(key, pattern) for pattern in include):
        return False
    return not any(fnmatch.fnmatchcase(key, pattern) for pattern in exclude)


def _sniffed(source: Source, obj: ObjectInfo) -> bool:
    """An object whose name has no image extension, taken when its first bytes are an image's (one read)."""
    if obj.size == 0:
        return False
    try:
        return looks_like_image(source.read(obj.key, SNIFF_BYTES - 1))  # at most SNIFF_BYTES
    except Exception:  # noqa: BLE001 - unreadable now: taken, so that its read fails as the run's error row
        return True


def manifest_keys(manifest: str, source: Source) -> Iterator[str]:
    """The keys a manifest names: JSON Lines (`{"key": ...}`, `{"source-ref": "s3://bucket/key"}`, or a string
    per line), CSV (a `key`, `source-ref`, `url` or `path` column, else the first column) or plain text (one
    key per line). An `s3://`/`obs://` URI must name the source's bucket; it gives the object's key."""
    text = _read_manifest(manifest)
    name = manifest.lower()
    if name.endswith((".jsonl", ".ndjson", ".json")):
        rows = (json.loads(line) for line in text.splitlines() if line.strip())
        values = (row if isinstance(row, str) else next((row[f] for f in MANIFEST_FIELDS if f in row), None)
                  for row in rows)
    elif name.endswith(".csv"):
        rows = [row for row in csv.reader(io.StringIO(text)) if row]
        header = rows[0] if rows else []
        column = next((header.index(f) for f in MANIFEST_FIELDS if f in header), None)
        values = (row[column or 0] for row in (rows[1:] if column is not None else rows))
    else:
        values = (line.strip() for line in text.splitlines())
    seen: set[str] = set()
    for value in values:
        if not isinstance(value, str) or not value.strip():
            continue
        key = _key_in(value.strip(), source)
        if key not in seen:  # a key named twice is one image
            seen.add(key)
            yield key


def _key_in(value: str, source: Source) -> str:
    if "://" not in value:
        return value.lstrip("/") if is_bucket(source.uri) else value
    bucket = getattr(source, "bucket", None)
    scheme, _, rest = value.partition("://")
    named, _, key = rest.partition("/")
    if scheme not in ("s3", "obs") or bucket is None or named != bucket:
        raise ValueError(f"manifest entry {value!r} is not an object of the source {source.uri} (give keys, or "
                         "s3:// / obs:// URIs of the source's bucket)")
    return key


def _read_manifest(manifest: str) -> str:
    if is_bucket(manifest):
        from imgrec.connectors.buckets import bucket_client

        client, bucket, key = bucket_client(manifest)
        return client.get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8-sig")
    return Path(manifest).read_text(encoding="utf-8-sig")


def listing_files(job: Job) -> list[Path]:
    return sorted((job.work_dir / "listing").glob("*.parquet"))
