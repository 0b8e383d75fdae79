"""Where a run's results land: a local folder or a bucket (`s3://` / `obs://`). Same small interface for both.

Names are `/`-separated paths under the output's root (`tags/run_date=2026-11-28/<run>-s00001.parquet`).
`put` is atomic per object on both (a folder writes a temporary file and renames it; a bucket's PUT is
atomic), so a reader never sees half a file. A bucket has no rename: `move` is a server-side copy then a
delete, repeatable after a crash at any point (tasks/writing.py builds its shard commit on that).
"""
from __future__ import annotations

import getpass
import hashlib
import json
import os
import shutil
import socket
import threading
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Protocol

from imgrec.schemas.run import is_bucket

from .buckets import bucket_client

LOCK = "_state/run.lock"


class Output(Protocol):
    uri: str  # the output as the user wrote it, normalised
    local_root: Path | None  # the folder, for an output that is one; None for a bucket

    def put(self, name: str, data: bytes) -> str:
        """Write one object atomically; returns its URI (file:// or s3://)."""

    def put_file(self, path: Path, name: str) -> None:
        """Move a finished local file into place (a folder renames it; a bucket uploads it)."""

    def get(self, name: str) -> bytes: ...

    def exists(self, name: str) -> bool: ...

    def list(self, prefix: str) -> list[str]:
        """Names under the folder `prefix`, sorted."""

    def move(self, source: str, destination: str) -> bool:
        """Move one object; False when `source` is gone (moved by an earlier, interrupted attempt)."""

    def delete(self, names: Iterable[str]) -> None: ...

    def delete_tree(self, prefix: str) -> None:
        """Every object under the folder `prefix`."""

    def uri_of(self, name: str) -> str: ...

    def lock(self, owner: str):
        """A context manager: one run at a time writes here; raises RuntimeError when another one holds it."""


def open_output(out: str) -> Output:
    if is_bucket(out):
        return BucketOutput(out)
    if "://" in out:
        raise ValueError(f"unsupported output {out!r}: use a folder, s3://bucket/prefix or obs://bucket/prefix")
    return FolderOutput(out)


class FolderOutput:
    def __init__(self, root: str | Path):
        self.local_root = Path(root).resolve()
        self.local_root.mkdir(parents=True, exist_ok=True)
        self.uri = str(self.local_root)

    def path(self, name: str) -> Path:
        return self.local_root / name

    def put(self, name: str, data: bytes) -> str:
        path = self.path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        # a short temporary name, whatever the final one's length (a 240-byte name stays within 255)
        digest = hashlib.sha256(path.name.encode("utf-8", "surrogateescape")).hexdigest()[:16]
        tmp = path.with_name(f".{digest}.{os.getpid()}.{threading.get_ident()}.tmp")
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        return path.as_uri()

    def put_file(self, path: Path, name: str) -> None:
        target = self.path(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)

    def get(self, name: str) -> bytes:
        return self.path(name).read_bytes()

    def exists(self, name: str) -> bool:
        return self.path(name).exists()

    def list(self, prefix: str) -> list[str]:
        folder = self.path(prefix.strip("/"))
        if not folder.is_dir():
            return []
        return sorted(p.relative_to(self.local_root).as_posix() for p in folder.rglob("*")
                      if p.is_file() and not p.name.endswith(".tmp"))

    def move(self, source: str, destination: str) -> bool:
        src = self.path(source)
        if not src.exists():
            return False
        dst = self.path(destination)
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dst)
        return True

    def delete(self, names: Iterable[str]) -> None:
        for name in names:
            self.path(name).unlink(missing_ok=True)

    def delete_tree(self, prefix: str) -> None:
        shutil.rmtree(self.path(prefix.strip("/")), ignore_errors=True)

    def uri_of(self, name: str) -> str:
        return self.path(name).as_uri()

    @contextmanager
    def lock(self, owner: str):
        import fcntl

        lock_path = self.path(LOCK)
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(lock_path, "a+") as handle:  # not truncated before the lock is ours: it names the holder
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                raise RuntimeError(f"another imgrec run is writing to {self.uri}: {_holder(handle.read())}") from None
            handle.seek(0)
            handle.truncate()
            handle.write(json.dumps(_me(owner)))
            handle.flush()
            yield


class BucketOutput:
    """S3 or OBS through boto3 (the same credentials and endpoint settings as a bucket source)."""

    local_root = None
    # A run refreshes its lock object this often; a lock not refreshed for LOCK_STALE_S belongs to a run
    # that died (or to a process on this host that is gone, which is checked at once).
    HEARTBEAT_S = 30.0
    LOCK_STALE_S = 300.0

    def __init__(self, uri: str):
        self.uri = uri.rstrip("/")
        self.client, self.bucket, prefix = bucket_client(self.uri)
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""

    def key(self, name: str) -> str:
        return self.prefix + name

    def put(self, name: str, data: bytes) -> str:
        self.client.put_object(Bucket=self.bucket, Key=self.key(name), Body=data)
        return self.uri_of(name)

    def put_file(self, path: Path, name: str) -> None:
        self.client.upload_file(str(path), self.bucket, self.key(name))
        path.unlink()

    def get(self, name: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=self.key(name))["Body"].read()

    def exists(self, name: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self.key(name))
            return True
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise

    def list(self, prefix: str) -> list[str]:
        wanted = self.key(prefix.strip("/") + "/" if prefix.strip("/") else "")
        names = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=wanted):
            names.extend(item["Key"][len(self.prefix):] for item in page.get("Contents", []))
        return sorted(names)

    def move(self, source: str, destination: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.copy_object(Bucket=self.bucket, Key=self.key(destination),
                                    CopySource={"Bucket": self.bucket, "Key": self.key(source)})
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False  # copied and deleted by an earlier attempt
            raise
        self.client.delete_object(Bucket=self.bucket, Key=self.key(source))
        return True

    def delete(self, names: Iterable[str]) -> None:
        keys = [{"Key": self.key(n)} for n in names]
        for start in range(0, len(keys), 1000):
            self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": keys[start:start + 1000],
                                                                   "Quiet": True})

    def delete_tree(self, prefix: str) -> None:
        self.delete(self.list(prefix))

    def uri_of(self, name: str) -> str:
        return f"{self.uri}/{name}"

    @contextmanager
    def lock(self, owner: str):
        """A lock object created only if absent (a conditional PUT), refreshed while the run lives."""
        me = _me(owner)
        self._take_lock(me)
        stop = threading.Event()

        def heartbeat() -> None:
            while not stop.wait(self.HEARTBEAT_S):
                try:
                    self.client.put_object(Bucket=self.bucket, Key=self.key(LOCK), Body=json.dumps(me).encode())
                except Exception:  # noqa: BLE001 - a missed beat is retried; staleness allows several
                    pass

        beat = threading.Thread(target=heartbeat, name="imgrec-lock-heartbeat", daemon=True)
        beat.start()
        try:
            yield
        finally:
            stop.set()
            beat.join(timeout=5)
            self.client.delete_object(Bucket=self.bucket, Key=self.key(LOCK))

    def _take_lock(self, me: dict) -> None:
        from botocore.exceptions import ClientError

        for _ in range(2):
            try:
                self.client.put_object(Bucket=self.bucket, Key=self.key(LOCK), Body=json.dumps(me).encode(),
                                       IfNoneMatch="*")
                return
            except ClientError as err:
                if err.response.get("Error", {}).get("Code") not in ("PreconditionFailed", "412"):
                    raise
            if not self._stale_lock():
                raise RuntimeError(f"another imgrec run is writing to {self.uri}: {self._lock_holder()}")
            self.client.delete_object(Bucket=self.bucket, Key=self.key(LOCK))  # its run died: take it over
        raise RuntimeError(f"another imgrec run is writing to {self.uri}: {self._lock_holder()}")

    def _lock_holder(self) -> str:
        try:
            return _holder(self.client.get_object(Bucket=self.bucket, Key=self.key(LOCK))["Body"].read().decode())
        except Exception:  # noqa: BLE001 - released meanwhile, or unreadable: the refusal still stands
            return "holder unknown"

    def _stale_lock(self) -> bool:
        from botocore.exceptions import ClientError

        try:
            found = self.client.get_object(Bucket=self.bucket, Key=self.key(LOCK))
        except ClientError:
            return True  # released between our attempt and this look
        age = (datetime.now(timezone.utc) - found["LastModified"]).total_seconds()
        try:
            holder = json.loads(found["Body"].read())
        except ValueError:
            return age > self.LOCK_STALE_S
        if holder.get("host") == socket.gethostname() and not _alive(int(holder.get("pid", 0))):
            return True
        return age > self.LOCK_STALE_S


def _me(owner: str) -> dict:
    return {"owner": owner, "host": socket.gethostname(), "pid": os.getpid(), "user": getpass.getuser(),
            "since": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def _holder(text: str) -> str:
    """Who holds a lock, from its record: `run R (pid P on host H, since T)`."""
    try:
        who = json.loads(text)
        return (f"run {who.get('owner', '?')} (pid {who.get('pid', '?')} on {who.get('host', '?')}, "
                f"since {who.get('since', '?')})")
    except (ValueError, AttributeError):
        return "holder unknown"


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def local_copies(output: Output, names: Iterable[str], folder: Path, reuse: bool = False) -> list[Path]:
    """Local files for `names`: a folder output's own files, a bucket's downloaded under `folder` (same
    relative paths, so Hive partition folders stay readable). `reuse`: keep a copy already there (for
    objects that no longer change, such as a finished run's table files)."""
    if output.local_root is not None:
        return [output.local_root / name for name in names]
    paths = []
    for name in names:
        path = folder / name
        if not (reuse and path.exists()):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(output.get(name))
        paths.append(path)
    return paths
