"""Exact copies are not paid for twice: an answer already had for the same bytes, API and parameters is
reused instead of calling again.

An object's content digest is the SHA-256 of its bytes (inline mode) or, in url mode, its bucket's
single-part ETag (the MD5 of the bytes; a multipart ETag has a `-` and is not a digest). Within a run, the
first object of a digest calls and its twins in the same process wait for its answer; across runs, every
answer is kept in `_state/answers/` (the wire response as JSON, committed with its shard like the ledger),
so tonight's copy of an image answered last month is not sent either. A reused answer is normalised into
the twin's rows exactly as a call's would be, and a `reused` row names the twin whose answer it was.
Image-out APIs (the v1 enhancements) are not reused: their answer is an image, too large to keep.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import logging
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from imgrec import schemas
from imgrec.connectors.output import Output, local_copies

log = logging.getLogger("imgrec.tasks.reuse")

ANSWERS = "_state/answers"
_MD5 = re.compile(r"[0-9a-f]{32}")


def reusable(api: str) -> bool:
    return not schemas.spec(api).image_out


def digest_of(data: bytes | None, etag: str) -> str | None:
    """The content digest of an object: its bytes' SHA-256, else a single-part ETag's MD5 (None: unknown)."""
    if data is not None:
        return "sha256:" + hashlib.sha256(data).hexdigest()
    etag = (etag or "").lower()
    return "md5:" + etag if _MD5.fullmatch(etag) else None


@dataclass(frozen=True)
class Answer:
    response: Any  # the API's response model, as the call returned it
    twin_key: str
    twin_run_id: str


def _prefix(digest: str) -> int:
    """64 bits of the digest, for the sorted lookup arrays (the full digest is compared on a hit)."""
    return int(digest.split(":", 1)[1][:16], 16) - 2**63


class _Stored:
    """The answers of earlier runs for one (API, parameters): sorted digest prefixes -> (file, row)."""

    def __init__(self, prefixes: np.ndarray, files: np.ndarray, rows: np.ndarray):
        order = np.argsort(prefixes, kind="stable")
        self.prefixes, self.files, self.rows = prefixes[order], files[order], rows[order]

    def find(self, digest: str) -> list[tuple[int, int]]:
        p = np.int64(_prefix(digest))
        lo, hi = np.searchsorted(self.prefixes, p, "left"), np.searchsorted(self.prefixes, p, "right")
        return list(zip(self.files[lo:hi].tolist(), self.rows[lo:hi].tolist()))


class AnswerBook:
    """One run's answers in one process (shards of any thread share it), and earlier runs' from the output.

    `claim` gives an answer to reuse (had, or awaited from another object of this run calling for the same
    bytes), or makes the caller the one to call (then `settle`, also on failure). This run's answers are kept
    for the last KEPT digests settled; a twin further apart is found in `_state/answers` by the next run."""

    KEPT = 20_000

    def __init__(self, output: Output, run_id: str, hashes: dict[str, str], work: Path):
        self.output, self.run_id, self.hashes, self.work = output, run_id, hashes, work
        self._lock = threading.Lock()
        self._flight: dict[tuple[str, str], concurrent.futures.Future] = {}
        self._settled: OrderedDict[tuple[str, str], Answer] = OrderedDict()
        self._stored: dict[str, _Stored] | None = None
        self._files: list[Path] = []
        self._cached: tuple[int, Any] | None = None  # the answers file read last

    async def claim(self, api: str, digest: str) -> tuple[Answer | None, bool]:
        """(an answer to reuse, None) or (None, True): call, then settle(api, digest, answer or None); (None,
        False): the twin's call failed, call without settling."""
        with self._lock:
            had = self._settled.get((api, digest))
            flight = self._flight.get((api, digest))
            if had is None and flight is None:
                self._flight[(api, digest)] = concurrent.futures.Future()
        if had is not None:
            return had, False
        if flight is not None:
            return await asyncio.wrap_future(flight), False
        # the earlier runs' answers read once (off the loop); after that a digest they lack costs no thread hop
        known = self._stored
        stored = None if known is not None and not (api in known and known[api].find(digest)) else \
            await asyncio.to_thread(self._earlier, api, digest)
        if stored is not None:
            self.settle(api, digest, stored)
            return stored, False
        return None, True

    def settle(self, api: str, digest: str, answer: Answer | None) -> None:
        """The claimed call's answer (None: it failed; twins waiting call for themselves, the next claims)."""
        with self._lock:
            flight = self._flight.pop((api, digest), None)
            if answer is not None:
                self._settled[(api, digest)] = answer
                if len(self._settled) > self.KEPT:
                    self._settled.popitem(last=False)
        if flight is not None and not flight.done():
            flight.set_result(answer)

    # ------------------------------------------------------------------------------------- earlier runs
    def _earlier(self, api: str, digest: str) -> Answer | None:
        with self._lock:
            if self._stored is None:
                self._stored = self._load()
            stored = self._stored.get(api)
        for file, row in stored.find(digest) if stored else []:
            try:
                table = self._read(file)
                if table["digest"][row].as_py() == digest:
                    response = schemas.spec(api).response.model_validate_json(table["response"][row].as_py())
                    return Answer(response, table["key"][row].as_py(), table["run_id"][row].as_py())
            except Exception as exc:  # noqa: BLE001 - an unreadable answer only costs a call
                log.warning("a kept answer could not be read (%s): calling instead", type(exc).__name__)
        return None

    def _load(self) -> dict[str, _Stored]:
        names = [n for n in self.output.list(ANSWERS) if n.endswith(".parquet")]
        self._files = local_copies(self.output, names, self.work / "answers", reuse=True)
        parts: dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}
        for number, path in enumerate(self._files):
            try:
                table = pq.read_table(path, columns=["api", "params_hash", "digest"])
            except Exception as exc:  # noqa: BLE001
                log.warning("answers file %s unreadable (%s): its answers are not reused", path.name,
                            type(exc).__name__)
                continue
            for api, params_hash in self.hashes.items():
                mask = pc.and_(pc.equal(table["api"], api), pc.equal(table["params_hash"], params_hash))
                rows = np.flatnonzero(np.asarray(mask.to_numpy(zero_copy_only=False), dtype=bool))
                if len(rows):
                    digests = table["digest"].take(rows).to_pylist()
                    parts.setdefault(api, []).append((np.array([_prefix(d) for d in digests], np.int64),
                                                      np.full(len(rows), number, np.int32), rows.astype(np.int32)))
        return {api: _Stored(*(np.concatenate(c) for c in zip(*p))) for api, p in parts.items()}

    def _read(self, file: int):
        cached = self._cached
        if cached is None or cached[0] != file:
            cached = self._cached = (file, pq.read_table(self._files[file],
                                                         columns=["key", "run_id", "digest", "response"]))
        return cached[1]


def answer_row(api: str, params_hash: str, digest: str, key: str, run_id: str, response: Any) -> dict:
    return {"api": api, "params_hash": params_hash, "digest": digest, "key": key, "run_id": run_id,
            "response": response.model_dump_json(exclude_none=True)}
