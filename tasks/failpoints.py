"""Named crash points for the crash-recovery tests: IMGREC_FAILPOINT=name[:after] kills the process with
SIGKILL the `after`-th time (default 1st) execution passes `hit(name)`. Unset, `hit` costs one dict lookup."""
from __future__ import annotations

import os
import signal
import threading

_counts: dict[str, int] = {}
_lock = threading.Lock()


def hit(name: str) -> None:
    spec = os.environ.get("IMGREC_FAILPOINT")
    if not spec:
        return
    target, _, after = spec.partition(":")
    if target != name:
        return
    with _lock:
        _counts[name] = _counts.get(name, 0) + 1
        if _counts[name] >= int(after or 1):
            os.kill(os.getpid(), signal.SIGKILL)
