"""Where the catalog lives: a local folder, or an S3/OBS bucket. Same small interface for both.

`list` streams (pages of 1,000 from S3, a directory walk for folders) and never holds the listing in memory.
S3 endpoints and keys come from boto3's standard configuration (AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL,
AWS_ACCESS_KEY_ID, profiles); `obs://` defaults to the OBS endpoint of the configured region.
"""
from __future__ import annotations

import os
import stat as stat_module
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Callable, Iterator, Protocol

from .buckets import bucket_client

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff", ".jfif"})


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str
    last_modified: datetime
    # A listed entry that cannot be read as an image file (a dangling or looping link, a FIFO, a name that is
    # not UTF-8...): recorded as the run's error for it instead of being opened. `problem_retryable`: it may
    # heal by itself (permissions), so the next run tries again.
    problem: str = ""
    problem_retryable: bool = False

    @property
    def fingerprint(self) -> str:
        """What "changed" means for incremental runs: key + ETag + size + mtime."""
        return f"{self.etag}|{self.size}|{int(self.last_modified.timestamp())}"


class Source(Protocol):
    uri: str  # the source as the user wrote it, normalised
    # How many objects one reader thread fetches in a row. Local files: many (a thread hop costs more CPU
    # than reading a small file); bucket objects: one, since each GET waits on the network.
    read_batch: int

    def list(self, prefix: str = "", take: Callable[[str], bool] | None = None) -> Iterator[ObjectInfo]:
        """Every object under `prefix` in key order, or those whose keys `take` accepts (asked before an
        entry is examined: the run's listing decides by name without a stat per file it passes over)."""

    def stat(self, key: str) -> ObjectInfo:
        """One named object (a manifest's entry); one the source does not have comes back with a problem."""

    def read(self, key: str, limit: int | None = None) -> bytes:
        """The object's bytes; with `limit`, at most limit + 1 of them (enough to know it is too large)."""

    def url_for(self, key: str, expires_s: int = 3600) -> str: ...


def is_image_key(key: str) -> bool:
    return PurePosixPath(key).suffix.lower() in IMAGE_SUFFIXES


SNIFF_BYTES = 16


def looks_like_image(head: bytes) -> bool:
    """The first bytes are an image format's signature (JPEG, PNG, GIF, BMP, WebP, TIFF)."""
    return head.startswith((b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM", b"II*\x00",
                            b"MM\x00*")) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")


MISSING = "the manifest names an object the source does not have"


def join_prefix(base: str, prefix: str) -> str:
    """A source's own prefix is a folder: `s3://b/shop` + `2026/10/` lists `shop/2026/10/`, never
    `shop2026/10/`; leading or doubled slashes on either side make no difference."""
    parts = [p.strip("/") for p in (base, prefix) if p.strip("/")]
    joined = "/".join(parts)
    # A trailing slash the user wrote stays meaningful: `2026/1/` must not match `2026/10/...`.
    return joined + "/" if joined and (prefix.endswith("/") or not prefix.strip("/")) else joined


class FolderSource:
    read_batch = 32

    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise FileNotFoundError(f"source folder {root} does not exist")
        self.uri = str(self.root)

    def _path(self, key: str) -> Path:
        # Lexical check first ("../../etc/passwd", absolute keys); resolve links only where there are any,
        # since realpath costs a syscall per path component on every read.
        joined = os.path.normpath(os.path.join(self.uri, key))
        if not joined.startswith(self.uri + os.sep):
            raise PermissionError(f"key {key!r} escapes the source folder")
        path = Path(joined)
        if path.is_symlink() or any(p.is_symlink() for p in path.parents if len(str(p)) > len(self.uri)):
            if not path.resolve().is_relative_to(self.root):
                raise PermissionError(f"key {key!r} leads out of the source folder")
        return path

    def list(self, prefix: str = "", take: Callable[[str], bool] | None = None) -> Iterator[ObjectInfo]:
        """Every entry under the root (that `take` accepts), in key order. Entries that cannot be read as a
        regular file inside the folder are listed with their `problem`, never skipped silently or opened."""
        wanted = join_prefix("", prefix)
        unreadable: list[str] = []
        walk = os.walk(self.root, onerror=lambda err: unreadable.append(err.filename or ""))
        for dirpath, dirnames, filenames in walk:
            dirnames.sort()
            for folder in unreadable:  # os.walk reports a folder it cannot open through onerror
                key = _key_of(Path(folder), self.root) + "/"
                if key.startswith(wanted) or wanted.startswith(key):
                    yield _problem(key, "the folder cannot be read", retryable=True)
            unreadable.clear()
            for name in sorted(filenames):
                path = Path(dirpath) / name
                key = _key_of(path, self.root)
                if key.startswith(wanted) and (take is None or take(key)):
                    yield self._entry(path, key)
        for folder in unreadable:  # the root's own sub-folders reported after the last step
            yield _problem(_key_of(Path(folder), self.root) + "/", "the folder cannot be read", retryable=True)

    def stat(self, key: str) -> ObjectInfo:
        try:
            path = self._path(key)
        except PermissionError as exc:
            return _problem(key, str(exc))
        if not os.path.lexists(path):
            return _problem(key, MISSING, retryable=True)
        return self._entry(path, key)

    def _entry(self, path: Path, key: str) -> ObjectInfo:
        try:
            link = path.lstat()
        except OSError as exc:
            return _problem(key, f"the entry cannot be examined ({type(exc).__name__})", retryable=True)
        if _surrogates(key):
            return _problem(key, "the file name is not valid UTF-8", stat=link)
        if stat_module.S_ISLNK(link.st_mode):
            try:
                target = path.resolve(strict=True)
            except FileNotFoundError:
                return _problem(key, "the link points at nothing (dangling)", stat=link)
            except (RuntimeError, OSError):
                return _problem(key, "the link loops", stat=link)
            if not target.is_relative_to(self.root):
                return _problem(key, "the link leads out of the source folder", stat=link)
        try:
            stat = path.stat()
        except OSError as exc:
            return _problem(key, f"the entry cannot be examined ({type(exc).__name__})", stat=link, retryable=True)
        if not stat_module.S_ISREG(stat.st_mode):
            return _problem(key, "not a regular file (a FIFO, socket or device)", stat=stat)
        if not os.access(path, os.R_OK):
            return _problem(key, "the file cannot be read (permissions)", stat=stat, retryable=True)
        return ObjectInfo(key, stat.st_size, f"{stat.st_size:x}-{stat.st_mtime_ns:x}",
                          datetime.fromtimestamp(stat.st_mtime, timezone.utc))

    def read(self, key: str, limit: int | None = None) -> bytes:
        """The file's bytes (at most `limit` + 1 of them, so an oversized file is refused without being held).
        Only a regular file is read: opened non-blocking and checked, so a FIFO put in place after the
        listing cannot hang the run."""
        fd = os.open(self._path(key), os.O_RDONLY | os.O_NONBLOCK)
        try:
            if not stat_module.S_ISREG(os.fstat(fd).st_mode):
                raise PermissionError(f"{key!r} is not a regular file")
            with os.fdopen(fd, "rb", closefd=False) as fh:
                return fh.read() if limit is None else fh.read(limit + 1)
        finally:
            os.close(fd)

    def url_for(self, key: str, expires_s: int = 3600) -> str:
        raise ValueError("url mode needs a bucket source: a local folder has no URL a service can fetch")


def _key_of(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _surrogates(text: str) -> bool:
    try:
        text.encode("utf-8")
        return False
    except UnicodeEncodeError:
        return True


def _problem(key: str, why: str, stat: os.stat_result | None = None, retryable: bool = False) -> ObjectInfo:
    """An entry that is listed but will not be opened. A name that is not UTF-8 is kept readable (escaped),
    so its rows can be written; the entry's own size and time still make its fingerprint."""
    if _surrogates(key):
        key = os.fsencode(key).decode("utf-8", "backslashreplace")
    size = stat.st_size if stat is not None else 0
    mtime = stat.st_mtime if stat is not None else 0.0
    return ObjectInfo(key, size, f"{size:x}-{int(mtime * 1e9):x}", datetime.fromtimestamp(mtime, timezone.utc),
                      problem=why, problem_retryable=retryable)


class BucketSource:
    """S3 or Huawei OBS (S3-compatible) through boto3."""

    read_batch = 1

    def __init__(self, uri: str, region: str | None = None):
        self.uri = uri
        self.client, self.bucket, self.prefix = bucket_client(uri, region)

    def list(self, prefix: str = "", take: Callable[[str], bool] | None = None) -> Iterator[ObjectInfo]:
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=join_prefix(self.prefix, prefix),
                                       PaginationConfig={"PageSize": 1000}):
            for item in page.get("Contents", []):
                key = item["Key"]
                if not key.endswith("/") and (take is None or take(key)):  # not a folder marker
                    yield ObjectInfo(key, int(item["Size"]), item.get("ETag", "").strip('"'), item["LastModified"])

    def stat(self, key: str) -> ObjectInfo:
        from botocore.exceptions import ClientError

        try:
            head = self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return _problem(key, MISSING, retryable=True)
            raise
        return ObjectInfo(key, int(head["ContentLength"]), head.get("ETag", "").strip('"'), head["LastModified"])

    def read(self, key: str, limit: int | None = None) -> bytes:
        if limit is None:
            return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        from botocore.exceptions import ClientError

        try:
            return self.client.get_object(Bucket=self.bucket, Key=key, Range=f"bytes=0-{limit}")["Body"].read()
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") == "InvalidRange":  # an empty object has no byte 0
                return b""
            raise

    def read_head(self, key: str, size: int) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=key, Range=f"bytes=0-{size - 1}")["Body"].read()

    def url_for(self, key: str, expires_s: int = 3600) -> str:
        """A presigned GET: OBS's "temporary authorization" URL (reference 7.3)."""
        return self.client.generate_presigned_url("get_object", Params={"Bucket": self.bucket, "Key": key},
                                                  ExpiresIn=expires_s)


def open_source(source: str) -> Source:
    if source.startswith(("s3://", "obs://")):
        return BucketSource(source)
    if "://" in source:
        raise ValueError(f"unsupported source {source!r}: use a folder, s3://bucket/prefix or obs://bucket/prefix")
    return FolderSource(source)
