"""The shard worker: each object of a shard read, pre-validated per API, called, recorded; then one commit.

Inside a shard, asyncio runs `concurrency` objects at once (bounded memory: at most that many images are
held); the backend's limiter keeps the request rate; the client retries transient failures. Every object
ends as one `images` row, plus result rows or `errors` rows for each API it needed.
"""
from __future__ import annotations

import asyncio
import dataclasses
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
from imgrec.connectors.backend import CallResult, Fingerprinter, RecognitionBackend
from imgrec.connectors.source import Source
from imgrec.schemas import errors, similar
from imgrec.schemas.common import ANY_IMAGE, FORMAT_FILES, ImageInfo, check_image_info, inspect_image
from imgrec.schemas.errors import ApiError

from . import failpoints, run_context
from .formats import format_of
from .job import Job
from .latency import LatencyHistogram
from .normalize import Context, normalize
from .reuse import Answer, answer_row, digest_of, reusable
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
    calls_by_api: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # attempts, for the cost
    saved_by_api: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # answers reused from twins
    call_errors: int = 0
    retries: int = 0
    rate_wait_s: float = 0.0
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)
    error_codes: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    rows: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"shard": self.shard, "objects": self.objects, "status": dict(self.status), "calls": self.calls,
                "calls_by_api": dict(self.calls_by_api), "saved_by_api": dict(self.saved_by_api),
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

    suffix = FORMAT_FILES[fmt][1] if fmt in FORMAT_FILES else ".bin"
    path = PurePosixPath(key)
    if ".." in path.parts or path.is_absolute():
        raise PermissionError(f"key {key!r} escapes the output folder")
    stem = path.name.encode()[:OUTPUT_STEM_BYTES].decode("utf-8", "ignore")
    digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:12]
    return str(PurePosixPath("enhanced_images", api, path.parent, f"{stem}-{digest}{suffix}"))


class _Reader:
    """Reads a shard's objects for its workers, `source.read_batch` objects per thread hop.

    Workers ask in manifest order (the semaphore is first-come first-served), so a batch read ahead is used
    right away: at most one batch more than `concurrency` images is held in memory.
    """

    def __init__(self, source: Source, keys: list[str], head_only: bool, limit: int | None = None):
        self._fetch = (lambda key: _read_head(source, key)) if head_only else (lambda key: source.read(key, limit))
        self._batch = max(1, int(getattr(source, "read_batch", 1)))
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


@dataclass
class _Read:
    """What the read step learnt of one object: its bytes (inline), its header, or why it cannot be sent;
    its content digest where the run reuses answers (reuse.py)."""
    data: bytes | None = None
    info: ImageInfo | None = None
    error: ApiError | None = None
    digest: str | None = None


class ShardWorker:
    """One shard's objects, each through named steps: read -> pre-validate -> call -> record; then one commit.

    Objects run concurrently (`job.concurrency` at once); every pending API of an object ends as a result
    row and a ledger entry, or an error row, and the object as one `images` row whatever happened.
    """

    def __init__(self, shard_index: int, objects: list[dict], job: Job, source: Source,
                 backend: RecognitionBackend, fingerprinter: Fingerprinter | None = None):
        self.job, self.source, self.backend, self.objects = job, source, backend, objects
        self.fingerprinter = fingerprinter
        self.stats = ShardStats(shard=shard_index, objects=len(objects))
        self.tables: dict[str, list[dict]] = defaultdict(list)
        self.ledger: list[dict] = []
        self.params = {api: job.resolved_params(api) for api in job.apis}
        self.hashes = {api: job.params_hash(api) for api in job.work}
        self.context = run_context.of(job)
        self.breaker = self.context.breaker
        self.answers = self.context.answers  # None: --no-reuse
        self.kept: list[dict] = []  # this shard's answers, for twins of later runs
        self._slots = asyncio.Semaphore(max(1, job.concurrency))
        # Inline, an image is read only when some pending API could take its listed size, and never more than
        # the largest such size plus one byte: a 3 GiB file is refused from the listing, not after reading it.
        self.raw_limit = max(schemas.spec(api).image.max_raw_bytes for api in job.apis)
        self._reader = _Reader(source, [o["key"] for o in objects if self._to_read(o)],
                               head_only=job.mode != "inline", limit=self.raw_limit)

    def _to_read(self, obj: dict) -> bool:
        if not obj["pending"] or obj.get("problem"):
            return False
        return obj["size"] <= self.raw_limit if self.job.mode == "inline" else bool(obj["size"])

    async def run(self) -> ShardStats:
        await asyncio.gather(*(self.process(obj) for obj in self.objects))
        started = time.perf_counter()
        self.stats.rows = await asyncio.to_thread(
            commit_shard, self.job.output, self.job.run_date, shard_name(self.job.run_id, self.stats.shard),
            dict(self.tables), self.ledger, format_of(self.job), self.kept)
        log.debug("shard %d committed in %.3fs", self.stats.shard, time.perf_counter() - started)
        return self.stats

    async def process(self, obj: dict) -> None:
        image_row = {"run_id": self.job.run_id, "source": self.source.uri, "key": obj["key"], "etag": obj["etag"],
                     "size": obj["size"], "last_modified": obj["last_modified"], "width": None, "height": None,
                     "format": None, "status": "skipped", "apis": list(obj["pending"]), "processed_at": _now()}
        if not obj["pending"]:
            self._finish(image_row, "skipped")
            return
        async with self._slots:
            read = await self.read(obj)
            if read.info is not None:
                image_row.update(width=read.info.width, height=read.info.height, format=read.info.format)
            outcomes = [await self.recognize(obj, api, read) for api in obj["pending"] if api != similar.WORK]
            if similar.WORK in obj["pending"]:  # last: after a tagging API's analysis, whose embedding it reuses
                made = await self.fingerprint(obj, read, reported=any(o != "ok" for o in outcomes))
                outcomes = outcomes or [made]  # the image's status is its APIs'; the fingerprint's when alone
            self._finish(image_row, image_status(outcomes))
            failpoints.hit("object")

    # ---------------------------------------------------------------------------------------------- steps
    async def read(self, obj: dict) -> _Read:
        """The object's bytes (inline) or its head (url mode: the service fetches the rest), and its header."""
        try:
            if self.breaker.open:
                raise self.breaker.refusal()  # the run cannot succeed: do not even read the image
            if obj.get("problem"):  # listed, but no readable file: recorded, never opened
                raise ApiError(code="AIS.0201", status=0, message=obj["problem"], attempts=0,
                               retryable=bool(obj.get("problem_retryable")))
            inline = self.job.mode == "inline"
            if inline and obj["size"] > self.raw_limit:
                raise ApiError.of("AIS.0020", f"{obj['size']} bytes listed")  # not read at all
            # a ranged GET of an empty object is an error on some servers
            head = b"" if not inline and obj["size"] == 0 else await _within(self._reader.read(obj["key"]))
            digest = digest_of(head if inline else None, obj["etag"]) if self.answers is not None else None
            return _Read(data=head if inline else None, info=inspect_image(head, ANY_IMAGE), digest=digest)
        except ApiError as err:
            return _Read(error=err)
        except Exception as exc:  # storage failures: the object could not be read this time
            log.warning("reading %s failed: %s", obj["key"], type(exc).__name__)
            return _Read(error=ApiError(code="AIS.0201", status=0, message=f"read failed: {type(exc).__name__}",
                                        retryable=True))

    def pre_validate(self, obj: dict, api: str, read: _Read) -> None:
        """Everything the API would refuse, checked before a call is spent on it."""
        spec = schemas.spec(api)
        if read.error is not None:
            raise read.error
        if self.breaker.open:
            raise self.breaker.refusal()
        if read.data is not None:  # inline
            check_image_info(read.info, len(read.data), spec.image)
        elif obj["size"] > spec.max_url_bytes:
            raise ApiError.of("AIS.0023")
        else:  # url mode: the service fetches the bytes; format and sides still checked here
            check_image_info(read.info, 0, spec.image)

    async def call(self, obj: dict, api: str, read: _Read) -> CallResult:
        """One call through the backend, which reports each attempt to the run's breaker."""
        where = {"image": read.data, "image_info": read.info} if read.data is not None else {
            "url": self.source.url_for(obj["key"])}
        try:
            result = await self.backend.call(api, watch=self.breaker, **where, **self.params[api])
        except ApiError as err:
            self.stats.calls += max(1, err.attempts)
            self.stats.calls_by_api[api] += max(1, err.attempts)
            self.stats.retries += max(0, err.attempts - 1)
            self.stats.call_errors += 1
            raise
        self.stats.calls += result.attempts
        self.stats.calls_by_api[api] += result.attempts
        self.stats.retries += result.attempts - 1
        self.stats.rate_wait_s += result.rate_wait_s
        self.stats.latency.add(result.latency_s * 1000)
        return result

    def record(self, obj: dict, api: str, read: _Read, result: CallResult) -> str:
        """The answer's rows in their tables and the ledger's entry; an answer that cannot be stored is this
        image's error, not the shard's."""
        ctx = Context(self.job.run_id, self.source.uri, obj["key"], api, read.info.width if read.info else 0,
                      read.info.height if read.info else 0, self.params[api], self._write_output,
                      self.job.min_confidence.get(api, 0.0))
        try:
            rows = normalize(schemas.spec(api), result.response, ctx)
        except OSError as exc:
            if exc.errno != errno.ENAMETOOLONG:
                return self._not_stored(obj, api, exc)
            # the same key will never fit: an input problem of this image, not retried every night
            return self.refuse(obj, api, ApiError.of("IMGREC.NAME_TOO_LONG"))
        except Exception as exc:  # noqa: BLE001
            return self._not_stored(obj, api, exc)
        for table, table_rows in rows.items():
            self.tables[table].extend(table_rows)
        self.ledger.append(self._ledger_row(api, obj, "ok"))
        return "ok"

    def refuse(self, obj: dict, api: str, err: ApiError) -> str:
        """An error row; a refused input also a ledger entry (not retried until the image changes)."""
        self.stats.error_codes[err.code] += 1
        self.tables["errors"].append({
            "run_id": self.job.run_id, "source": self.source.uri, "key": obj["key"], "api": api,
            "http_status": err.status or None, "error_code": err.code, "error_msg": err.message,
            "attempts": err.attempts, "retryable": bool(err.retryable), "request_id": err.request_id or None,
            "last_attempt_at": _now()})
        if not refuses_input(err):
            return "failed"
        self.ledger.append(self._ledger_row(api, obj, "rejected"))
        return "limit" if err.kind == errors.LIMIT else "invalid"

    async def recognize(self, obj: dict, api: str, read: _Read) -> str:
        """One API of one object through the steps; its outcome: ok, invalid, limit or failed. An answer
        already had for the same bytes (a twin's) is recorded instead of a call."""
        try:
            self.pre_validate(obj, api, read)
        except ApiError as err:
            return self.refuse(obj, api, dataclasses.replace(err, attempts=0))  # refused before any call
        digest = read.digest if read.digest and reusable(api) else None
        answer, mine = await self.answers.claim(api, digest) if digest else (None, False)
        if answer is not None:
            return self.reuse(obj, api, read, answer, digest)
        if not mine:  # nothing to reuse, or the twin's call failed: this object calls for itself
            return (await self.call_and_record(obj, api, read))[0]
        made = None
        try:
            outcome, result = await self.call_and_record(obj, api, read)
            if outcome == "ok":
                made = Answer(result.response, obj["key"], self.job.run_id)
                self.kept.append(answer_row(api, self.answers.hashes[api], digest, obj["key"], self.job.run_id,
                                            result.response))
            return outcome
        finally:  # also when cancelled: twins waiting for this answer call for themselves
            self.answers.settle(api, digest, made)

    async def call_and_record(self, obj: dict, api: str, read: _Read) -> tuple[str, CallResult | None]:
        try:
            result = await self.call(obj, api, read)
        except ApiError as err:
            return self.refuse(obj, api, err), None
        return self.record(obj, api, read, result), result

    def reuse(self, obj: dict, api: str, read: _Read, answer: Answer, digest: str) -> str:
        """The twin's answer recorded as this object's, and a `reused` row naming the twin."""
        outcome = self.record(obj, api, read, CallResult(api, answer.response, attempts=0))
        if outcome == "ok":
            self.stats.saved_by_api[api] += 1
            self.tables["reused"].append({"run_id": self.job.run_id, "source": self.source.uri, "key": obj["key"],
                                          "api": api, "twin_key": answer.twin_key,
                                          "twin_run_id": answer.twin_run_id, "digest": digest})
        return outcome

    async def fingerprint(self, obj: dict, read: _Read, reported: bool) -> str:
        """The image's fingerprint as an `embeddings` row (its near-duplicates are found after the shards,
        tasks/similar.py); its outcome as an API's. Where the image's APIs already have error rows
        (`reported`: it could not be read, or its pixels were refused), the fingerprint adds no other."""
        try:
            if read.error is not None:
                raise read.error
            if self.fingerprinter is None:
                raise ApiError.of("AIS.0007", "no fingerprinter in this process")
            found = await self.fingerprinter.fingerprint(read.data, read.info)
        except ApiError as err:
            if not reported:
                return self.refuse(obj, similar.WORK, dataclasses.replace(err, attempts=0))
            if not refuses_input(err):
                return "failed"
            self.ledger.append(self._ledger_row(similar.WORK, obj, "rejected"))
            return "invalid"
        self.tables["embeddings"].append({
            "run_id": self.job.run_id, "source": self.source.uri, "key": obj["key"], "etag": obj["etag"],
            "digest": found.digest, "vector": found.vector, "phash": found.phash, "model": similar.MODEL,
            "model_version": similar.VERSION, "preprocessing": similar.PREPROCESSING})
        self.ledger.append(self._ledger_row(similar.WORK, obj, "ok"))
        return "ok"

    # ---------------------------------------------------------------------------------------------- helpers
    def _not_stored(self, obj: dict, api: str, exc: Exception) -> str:
        log.warning("normalizing %s of %s failed: %s", api, obj["key"], type(exc).__name__)
        return self.refuse(obj, api, ApiError(code="IMGREC.NORMALIZE", status=0, retryable=False,
                                              message=f"the result could not be stored: {type(exc).__name__}"))

    def _write_output(self, api: str, key: str, data: bytes, fmt: str) -> str:
        return self.job.output.put(output_name(api, key, fmt), data)

    def _ledger_row(self, api: str, obj: dict, outcome: str) -> dict:
        return {"api": api, "params_hash": self.hashes[api], "key": obj["key"], "fingerprint": obj["fingerprint"],
                "outcome": outcome, "run_id": self.job.run_id}

    def _finish(self, image_row: dict, status: str) -> None:
        image_row.update(status=status, processed_at=_now())
        self.stats.status[status] += 1
        self.tables["images"].append(image_row)
        self.context.progress.advance(failed=status == "failed")


async def recognize_shard(shard_index: int, manifest: str, job: Job, source: Source,
                          backend: RecognitionBackend, fingerprinter: Fingerprinter | None = None) -> ShardStats:
    """Process one planned shard (its manifest in the output) and commit its rows."""
    objects = pq.read_table(io.BytesIO(job.output.get(manifest))).to_pylist()
    return await ShardWorker(shard_index, objects, job, source, backend, fingerprinter).run()


def _now() -> datetime:
    return datetime.now(timezone.utc)


READ_TIMEOUT_S = 120.0  # a read that hangs (a stale network mount) fails its object, not the run


async def _within(read) -> bytes:
    try:
        return await asyncio.wait_for(read, READ_TIMEOUT_S)
    except asyncio.TimeoutError:
        raise ApiError(code="AIS.0201", status=0, message=f"reading took over {READ_TIMEOUT_S:.0f} s",
                       retryable=True) from None


def _read_head(source: Source, key: str) -> bytes:
    reader = getattr(source, "read_head", None)
    return reader(key, HEAD_BYTES) if reader else source.read(key, HEAD_BYTES - 1)[:HEAD_BYTES]
