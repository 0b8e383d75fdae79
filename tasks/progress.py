"""A process-wide progress counter that the CLI's progress bar reads (objects planned / done)."""
from __future__ import annotations

import threading

_lock = threading.Lock()
state = {"total": 0, "done": 0}


def start(total: int) -> None:
    with _lock:
        state["total"], state["done"] = total, 0


def advance(n: int = 1) -> None:
    with _lock:
        state["done"] += n
