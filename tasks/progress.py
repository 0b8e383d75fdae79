"""A run's progress counter: its shards advance it, the flow logs it every `LOG_EVERY_S` seconds (one line,
also without a terminal) and the CLI's progress bar reads it."""
from __future__ import annotations

import threading
import time

LOG_EVERY_S = 10.0


class Progress:
    def __init__(self) -> None:
        self._lock = threading.Lock()  # advanced from the event loop and from reader threads
        self.total = self.done = self.failed = 0
        self.started = time.monotonic()

    def start(self, total: int) -> None:
        with self._lock:
            self.total, self.done, self.failed, self.started = total, 0, 0, time.monotonic()

    def advance(self, n: int = 1, failed: bool = False) -> None:
        with self._lock:
            self.done += n
            self.failed += n if failed else 0

    def line(self) -> str:
        """`120 of 200 images (3 failed), 8.4/s, about 10 s left`."""
        with self._lock:
            total, done, failed, started = self.total, self.done, self.failed, self.started
        rate = done / max(time.monotonic() - started, 1e-9)
        left = f", about {(total - done) / rate:.0f} s left" if rate > 0 and done < total else ""
        return f"{done} of {total} images ({failed} failed), {rate:.1f}/s{left}"
