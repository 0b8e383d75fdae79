"""A process-wide progress counter: the CLI's progress bar reads it, and the flow logs it every
`LOG_EVERY_S` seconds (one line, also without a terminal)."""
from __future__ import annotations

import threading
import time

LOG_EVERY_S = 10.0
_lock = threading.Lock()
state = {"total": 0, "done": 0, "failed": 0, "started": 0.0}


def start(total: int) -> None:
    with _lock:
        state.update(total=total, done=0, failed=0, started=time.monotonic())


def advance(n: int = 1, failed: bool = False) -> None:
    with _lock:
        state["done"] += n
        state["failed"] += n if failed else 0


def line() -> str:
    """`120 of 200 images (3 failed), 8.4/s, about 10 s left`."""
    with _lock:
        total, done, failed, started = state["total"], state["done"], state["failed"], state["started"]
    rate = done / max(time.monotonic() - started, 1e-9)
    left = f", about {(total - done) / rate:.0f} s left" if rate > 0 and done < total else ""
    return f"{done} of {total} images ({failed} failed), {rate:.1f}/s{left}"
