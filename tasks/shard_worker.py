"""Recognize one shard: read each object, pre-validate it per API, call the backend, normalize, commit.

Inside a shard, asyncio runs `concurrency` objects at once (bounded memory: at most that many images are
held); the backend's limiter keeps the request rate; the client retries transient failures. Every object
ends as one `images` row, plus result rows or `errors` rows for each API it needed.
"""
from __future__ import annotations

import asyncio
import errno
import io
import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import PurePosixPath
from typing import Any

import pyarrow.parquet as pq

from imgrec import schemas
from imgrec.connectors.backend import RecognitionBackend
from imgrec.connectors.source import Source
from imgrec.schemas.common import ANY_IMAGE, ImageInfo, check_image_info, inspect_image
from imgrec.schemas import errors
from imgrec.schemas.errors import ApiError

from . import failpoints, progress
from .breaker import breaker_for
from .job import Job
from .latency import LatencyHistogram
from .normalize import Context, normalize
from .formats import format_of
from .writing import commit_shard, shard_name

log = logging.getLogger("imgrec.tasks.shard_worker")
HEAD_BYTES = 256 * 1024  # enough of a file for its format and dimensions (url mode reads only this)


def image_status(outcomes: list[str]) -> str:
    """The image's status from its APIs' outcomes ("ok", "failed", "invalid": the image is bad, "limit": one
    API does not take it): failed when a call failed (retried next run); invalid when the image is bad or no
    API could take it; else ok."""
    if "failed" in outcomes:
        return "failed"
    if "invalid" in outcomes or "ok" not in outcomes:
        return "invalid"
    return "ok"


def refuses_input(err: ApiError) -> bool:
    """The input was refused (its kind INPUT or LIMIT, schemas/errors.py: ledger `rejected`, not retried by
    the next incremental run until the image changes); anything else is a failure (`failed`, retried next
    run), wherever it happened: before the call, in the backend or on the wire. A refusal marked retryable
    (a source entry that may be readable next time) is a failure."""
    return not err.retryable and err.kind in (errors.INPUT, errors.LIMIT)


@dataclass
class ShardStats:
    shard: int
    objects: int = 0
    status: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    calls: int = 0
    call_errors: int = 0
    retries: int = 0
    rate_wait_s: float = 0.0
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)
    error_codes: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    rows: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"shard": self.shard, "objects": self.objects, "status": dict(self.status), "calls": self.calls,
                "call_errors": self.call_errors, "retries": self.retries, "rate_wait_s": self.rate_wait_s,
                "latency": self.latency.to_dict(), "error_codes": dict(self.error_codes), "rows": self.rows}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ShardStats":
        return cls(**{**data, "latency": LatencyHistogram.from_dict(data["latency"])})


OUTPUT_STEM_BYTES = 120  # of a result file's name: with the digest and suffix well under any file system's 255


def output_name(api: str, key: str, fmt: str) -> str:
    """Where an image-out result of `key` lands: the key's folders, its file name (shortened to
    OUTPUT_STEM_BYTES) with its own extension kept, a digest of the whole key, the result's suffix:
    `enhanced_images/dark_enhance/shop/x.jpeg-3fa2c19b0e7d.jpg`. Unique per key, also on file systems that
    ignore case (keys that differ only in extension or case never share a file); fixed per key, so a re-run
    replaces its own result."""
    import hashlib

    suffix = {"JPEG": ".jpg", "PNG": ".png", "BMP": ".bmp", "WEBP": ".webp"}.get(fmt, ".bin")
    path = PurePosixPath(key)
    if ".." in path.parts or path.is_absolute():
        raise PermissionError(f"key {key!r} escapes the output folder")
    stem = path.name.encode()[:OUTPUT_STEM_BYTES].decode("utf-8", "ignore")
    digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:12]
    return str(PurePosixPath("enhanced_images", api, path.parent, f"{stem}-{digest}{suffix}"))


def _output_writer(job: Job):
    def write(api: str, key: str, data: bytes, fmt: str) -> str:
        return job.output.put(output_name(api, key, fmt), data)

    return write


class _Reader:
    """Reads a shard's objects for its workers, `storage.read_batch` objects per thread hop.

    Workers ask in manifest order (the semaphore is first-come first-served), so a batch read ahead is used
    right away: at most one batch more than `concurrency` images is held in memory.
    """

    def __init__(self, storage: Source, keys: list[str], head_only: bool, limit: int | None = None):
        self._fetch = (lambda key: _read_head(storage, key)) if head_only else (lambda key: storage.read(key, limit))
        self._batch = max(1, int(getattr(storage, "read_batch", 1)))
        self._keys = keys
        self._index = {key: i for i, key in enumerate(keys)}
        self._scheduled = [False] * len(keys)
        self._futures: dict[str, asyncio.Future] = {}
        self._tasks: set[asyncio.Task] = set()  # the loop keeps only weak references to tasks

    async def read(self, key: str) -> bytes:
        start = self._index[key]
        if not self._scheduled[start]:
            end = min(len(self._keys), start + self._batch)
            batch = [i for i in range(start, end) if not self._scheduled[i]]
            loop = asyncio.get_running_loop()
            for i in batch:
                self._scheduled[i] = True
                self._futures[self._keys[i]] = loop.create_future()
            task = asyncio.ensure_future(self._read_batch([self._keys[i] for i in batch]))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        future = self._futures[key]
        try:
            return await future
        finally:
            self._futures.pop(key, None)

    async def _read_batch(self, keys: list[str]) -> None:
        outcomes = await asyncio.to_thread(self._read_all, keys)
        for key, outcome in zip(keys, outcomes):
            future = self._futures.get(key)
            if future is None or future.done():
                continue
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)

    def _read_all(self, keys: list[str]) -> list[bytes | BaseException]:
        outcomes: list[bytes | BaseException] = []
        for key in keys:
            try:
                outcomes.append(self._fetch(key))
            except Exception as exc:  # handed to the object's worker, which records it
                outcomes.append(exc)
        return outcomes


async def recognize_shard(shard_index: int, manifest: str, job: Job, storage: Source,
                          backend: RecognitionBackend) -> ShardStats:
    objects = pq.read_table(io.BytesIO(job.output.get(manifest))).to_pylist()
    stats = ShardStats(shard=shard_index, objects=len(objects))
    tables: dict[str, list[dict]] = defaultdict(list)
    ledger: list[dict] = []
    semaphore = asyncio.Semaphore(max(1, job.concurrency))
    params = {api: job.resolved_params(api) for api in job.apis}
    hashes = {api: job.params_hash(api) for api in job.apis}
    writer = _output_writer(job)
    # Inline, an image is read only when some pending API could take its listed size, and never more than the
    # largest such size plus one byte: a 3 GiB file is refused from the listing, not after reading it.
    raw_limit = max(schemas.spec(api).image.max_raw_bytes for api in job.apis)

    def readable(o: dict) -> bool:
        if not o["pending"] or o.get("problem"):
            return False
        return o["size"] <= raw_limit if job.mode == "inline" else bool(o["size"])

    reader = _Reader(storage, [o["key"] for o in objects if readable(o)], head_only=job.mode != "inline",
                     limit=raw_limit)
    now = lambda: datetime.now(timezone.utc)  # noqa: E731
    breaker = breaker_for(job.run_id, url_mode=job.mode == "url")

    def error_row(obj, api, err: ApiError) -> dict:
        stats.error_codes[err.code] += 1
        return {"run_id": job.run_id, "source": storage.uri, "key": obj["key"], "api": api,
                "http_status": err.status or None, "error_code": err.code, "error_msg": err.message,
                "attempts": err.attempts, "retryable": bool(err.retryable), "request_id": err.request_id or None,
                "last_attempt_at": now()}

    async def process(obj: dict) -> None:
        pending: list[str] = list(obj["pending"])
        image_row = {"run_id": job.run_id, "source": storage.uri, "key": obj["key"], "etag": obj["etag"],
                     "size": obj["size"], "last_modified": obj["last_modified"], "width": None, "height": None,
                     "format": None, "status": "skipped", "apis": pending, "processed_at": now()}
        if not pending:
            tables["images"].append(image_row)
            stats.status["skipped"] += 1
            progress.advance()
            return
        async with semaphore:
            data: bytes | None = None
            info: ImageInfo | None = None
            try:
                if breaker.opened_by is not None:
                    raise breaker.refusal()  # the run cannot succeed: do not even read the image
                if obj.get("problem"):  # listed, but no readable file: recorded, never opened
                    raise ApiError(code="AIS.0201", status=0, message=obj["problem"], attempts=0,
                                   retryable=bool(obj.get("problem_retryable")))
                if job.mode == "inline" and obj["size"] > raw_limit:
                    raise ApiError.of("AIS.0020", f"{obj['size']} bytes listed")  # not read at all
                if job.mode == "inline":
                    data = head = await _within(reader.read(obj["key"]))
                elif obj["size"] == 0:
                    head = b""  # a ranged GET of an empty object is an error on some servers
                else:
                    head = await _within(reader.read(obj["key"]))
                info = inspect_image(head, ANY_IMAGE)
            except ApiError as err:
                info = None
                read_error = err
            except Exception as exc:  # storage failures: the object could not be read this time
                log.warning("reading %s failed: %s", obj["key"], type(exc).__name__)
                read_error = ApiError(code="AIS.0201", status=0, message=f"read failed: {type(exc).__name__}",
                                      retryable=True, attempts=1)
            else:
                read_error = None
            if info is not None:
                image_row.update(width=info.width, height=info.height, format=info.format)
            outcomes = []
            for api in pending:
                spec = schemas.spec(api)

                def refused(err: ApiError) -> None:
                    tables["errors"].append(error_row(obj, api, err))
                    if refuses_input(err):
                        outcomes.append("limit" if err.kind == errors.LIMIT else "invalid")
                        ledger.append(_ledger_row(job, api, hashes[api], obj, "rejected"))
                    else:
                        outcomes.append("failed")

                try:
                    if read_error is not None:
                        raise read_error
                    if breaker.opened_by is not None:
                        raise breaker.refusal()
                    if data is not None:  # inline: check everything before spending a call
                        check_image_info(info, len(data), spec.image)
                    elif obj["size"] > spec.max_url_bytes:
                        raise ApiError.of("AIS.0023")
                    else:  # url mode: the service fetches the bytes; format and sides still checked here
                        check_image_info(info, 0, spec.image)
                except ApiError as err:
                    err.attempts = 0  # refused before any call
                    refused(err)
                    continue
                try:
                    if data is not None:
                        result = await backend.call(api, image=data, image_info=info, watch=breaker,
                                                    **params[api])
                    else:
                        result = await backend.call(api, url=storage.url_for(obj["key"]), watch=breaker,
                                                    **params[api])
                except ApiError as err:
                    stats.calls += max(1, err.attempts)
                    stats.retries += max(0, err.attempts - 1)
                    stats.call_errors += 1
                    refused(err)  # the backend told the breaker about each attempt
                    continue
                stats.calls += result.attempts
                stats.retries += result.attempts - 1
                stats.rate_wait_s += result.rate_wait_s
                stats.latency.add(result.latency_s * 1000)
                ctx = Context(job.run_id, storage.uri, obj["key"], api, info.width if info else 0,
                              info.height if info else 0, params[api], writer)
                try:
                    rows = normalize(spec, result.response, ctx)
                except Exception as exc:  # e.g. storing an image-out result failed: this image, not the shard
                    if isinstance(exc, OSError) and exc.errno == errno.ENAMETOOLONG:
                        # the same key will never fit: an input problem of this image, not retried every night
                        refused(ApiError.of("IMGREC.NAME_TOO_LONG"))
                        continue
                    log.warning("normalizing %s of %s failed: %s", api, obj["key"], type(exc).__name__)
                    refused(ApiError(code="IMGREC.NORMALIZE", status=0, retryable=False,
                                     message=f"the result could not be stored: {type(exc).__name__}"))
                    continue
                for table, table_rows in rows.items():
                    tables[table].extend(table_rows)
                ledger.append(_ledger_row(job, api, hashes[api], obj, "ok"))
                outcomes.append("ok")
            status = image_status(outcomes)
            image_row["status"] = status
            image_row["processed_at"] = now()
            stats.status[status] += 1
            tables["images"].append(image_row)
            progress.advance(failed=status == "failed")
            failpoints.hit("object")

    await asyncio.gather(*(process(obj) for obj in objects))
    started = time.perf_counter()
    stats.rows = await asyncio.to_thread(commit_shard, job.output, job.run_date, shard_name(job.run_id, shard_index),
                                         dict(tables), ledger, format_of(job))
    log.debug("shard %d committed in %.3fs", shard_index, time.perf_counter() - started)
    return stats


READ_TIMEOUT_S = 120.0  # a read that hangs (a stale network mount) fails its object, not the run


async def _within(read) -> bytes:
    try:
        return await asyncio.wait_for(read, READ_TIMEOUT_S)
    except asyncio.TimeoutError:
        raise ApiError(code="AIS.0201", status=0, message=f"reading took over {READ_TIMEOUT_S:.0f} s",
                       retryable=True) from None


def _ledger_row(job: Job, api: str, params_hash: str, obj: dict, outcome: str) -> dict:
    return {"api": api, "params_hash": params_hash, "key": obj["key"], "fingerprint": obj["fingerprint"],
            "outcome": outcome, "run_id": job.run_id}


def _read_head(storage: Source, key: str) -> bytes:
    reader = getattr(storage, "read_head", None)
    return reader(key, HEAD_BYTES) if reader else storage.read(key, HEAD_BYTES - 1)[:HEAD_BYTES]
