"""The pipeline's tables: typed pyarrow schemas, one Hive partition per run date (`run_date=YYYY-MM-DD`).

Every row carries `run_id`, `key` and (for per-API tables) `api`, so a table joins back to `images`,
`errors` and `runs`. Confidences are floats on a 0-100 scale in every table, whatever scale the API used.
"""
from __future__ import annotations

import pyarrow as pa

from .similar import DIMENSIONS

TS = pa.timestamp("us", tz="UTC")

_KEYS = [
    pa.field("run_id", pa.string(), nullable=False),
    pa.field("source", pa.string(), nullable=False),
    pa.field("key", pa.string(), nullable=False),
    pa.field("api", pa.string(), nullable=False),
]
_BOX = [
    pa.field("x", pa.float64()), pa.field("y", pa.float64()),
    pa.field("width", pa.float64()), pa.field("height", pa.float64()),
    # The same box divided by the image's width/height: comparable across image sizes.
    pa.field("x_norm", pa.float64()), pa.field("y_norm", pa.float64()),
    pa.field("width_norm", pa.float64()), pa.field("height_norm", pa.float64()),
]

TABLES: dict[str, pa.Schema] = {
    "images": pa.schema([
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("key", pa.string(), nullable=False),
        pa.field("etag", pa.string()),
        pa.field("size", pa.int64()),
        pa.field("last_modified", TS),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("format", pa.string()),
        # ok: every API answered; failed: at least one API call (or the read) failed, retried next run;
        # invalid: at least one API refused the input before any call (size/format/dimensions, unreadable)
        # and none failed; skipped: unchanged since a successful earlier run.
        pa.field("status", pa.string(), nullable=False),
        pa.field("apis", pa.list_(pa.string())),
        pa.field("processed_at", TS),
    ]),
    "tags": pa.schema(_KEYS + [
        pa.field("tag", pa.string()),
        pa.field("tag_en", pa.string()),
        pa.field("tag_zh", pa.string()),
        pa.field("type", pa.string()),
        pa.field("type_en", pa.string()),
        pa.field("type_zh", pa.string()),
        pa.field("confidence", pa.float64()),
        pa.field("rank", pa.int32()),
        pa.field("language", pa.string()),
    ]),
    "detections": pa.schema(_KEYS + [
        pa.field("label", pa.string()),
        pa.field("label_en", pa.string()),
        pa.field("label_zh", pa.string()),
        pa.field("confidence", pa.float64()),
    ] + _BOX),
    "faces": pa.schema(_KEYS + [
        pa.field("label", pa.string()),
        pa.field("confidence", pa.float64()),
    ] + _BOX),
    "main_objects": pa.schema(_KEYS + [
        pa.field("label", pa.string()),
        pa.field("confidence", pa.float64()),
    ] + _BOX),
    "recapture": pa.schema(_KEYS + [
        pa.field("suggestion", pa.string()),
        pa.field("category", pa.string()),
        pa.field("score", pa.float64()),
        pa.field("detail_label", pa.string()),
        pa.field("detail_confidence", pa.float64()),
    ]),
    "enhanced": pa.schema(_KEYS + [
        pa.field("output_uri", pa.string()),
        pa.field("output_size", pa.int64()),
        pa.field("output_format", pa.string()),
    ]),
    "errors": pa.schema(_KEYS + [
        pa.field("http_status", pa.int32()),
        pa.field("error_code", pa.string()),
        pa.field("error_msg", pa.string()),
        pa.field("attempts", pa.int32()),
        pa.field("retryable", pa.bool_()),
        pa.field("request_id", pa.string()),
        pa.field("last_attempt_at", TS),
    ]),
    # One row per image fingerprinted (schemas/similar.py): new and changed images of each run.
    "embeddings": pa.schema([
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("key", pa.string(), nullable=False),
        pa.field("etag", pa.string()),
        pa.field("digest", pa.string()),  # SHA-256 of the bytes
        pa.field("vector", pa.list_(pa.float32(), DIMENSIONS)),  # unit length: a dot product is the cosine
        pa.field("phash", pa.int64()),
        pa.field("model", pa.string()),
        pa.field("model_version", pa.string()),
        pa.field("preprocessing", pa.string()),
    ]),
    # One row per unordered pair found (key_a < key_b), by the run that found it; pairs found stay.
    "near_duplicates": pa.schema([
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("key_a", pa.string(), nullable=False),
        pa.field("key_b", pa.string(), nullable=False),
        pa.field("similarity", pa.float64()),  # the fingerprints' cosine, 0..1 (1: the same picture)
        pa.field("kind", pa.string()),  # exact: the same bytes; near: everything else
    ]),
    # One row per answer reused from a byte-identical twin (tasks/reuse.py): the key's rows of that API were
    # made from the answer the twin got, not from a call of its own.
    "reused": pa.schema(_KEYS + [
        pa.field("twin_key", pa.string()),
        pa.field("twin_run_id", pa.string()),
        pa.field("digest", pa.string()),  # sha256:<hex> of the bytes, or md5:<ETag> of a bucket object
    ]),
    "runs": pa.schema([
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("flow", pa.string()),
        pa.field("source", pa.string()),
        pa.field("backend", pa.string()),
        pa.field("parameters", pa.string()),  # JSON, secrets excluded
        pa.field("started_at", TS),
        pa.field("finished_at", TS),
        pa.field("duration_s", pa.float64()),
        pa.field("listed", pa.int64()),
        pa.field("images_ok", pa.int64()),
        pa.field("images_failed", pa.int64()),
        pa.field("images_invalid", pa.int64()),
        pa.field("images_skipped", pa.int64()),
        pa.field("calls", pa.int64()),
        pa.field("call_errors", pa.int64()),
        pa.field("retries", pa.int64()),
        pa.field("rate_limit_wait_s", pa.float64()),
        pa.field("images_per_s", pa.float64()),
        pa.field("latency_p50_ms", pa.float64()),
        pa.field("latency_p95_ms", pa.float64()),
        pa.field("estimated_cost", pa.float64()),
    ]),
}


# `_state/ledger`: what succeeded (one row per key, API and parameters), which incremental runs skip.
LEDGER_SCHEMA = pa.schema([
    pa.field("api", pa.string()), pa.field("params_hash", pa.string()), pa.field("key", pa.string()),
    pa.field("fingerprint", pa.string()), pa.field("outcome", pa.string()), pa.field("run_id", pa.string()),
])


# `_state/answers`: each call's answer by content digest, for twins of later runs (tasks/reuse.py).
ANSWERS_SCHEMA = pa.schema([
    pa.field("api", pa.string()), pa.field("params_hash", pa.string()), pa.field("digest", pa.string()),
    pa.field("key", pa.string()), pa.field("run_id", pa.string()), pa.field("response", pa.string()),
])
STATE_SCHEMAS = {"_ledger": LEDGER_SCHEMA, "_answers": ANSWERS_SCHEMA}


def read_schema(table: str, columns: list[str] | None = None) -> pa.Schema:
    """A table as every reader answers it, whatever the output and format: its schema plus `run_date` (a
    date, from the partition), in that order; only `columns` when given."""
    full = TABLES[table].append(pa.field("run_date", pa.date32()))
    return pa.schema([full.field(name) for name in columns]) if columns else full


def conform(table: str, rows: pa.Table, columns: list[str] | None = None) -> pa.Table:
    """`rows` as `read_schema` has them: the same columns, order and types from every reader (one engine's
    `timestamp[us, tz=Etc/UTC]` or `large_string` is another's `timestamp[us, tz=UTC]` and `string`)."""
    target = read_schema(table, columns or [n for n in read_schema(table).names if n in rows.column_names])
    return rows.select(target.names).cast(pa.schema([f.with_nullable(True) for f in target]))
