"""What one run's shards share inside a process: the run's circuit breaker, its progress counter, the
answers it had (for byte-identical twins) and the backend the flow lends them. One object per run, found by the run's id (`of(job)`), instead of a registry
each: the flow makes it, a Dask worker process makes its own on its first shard of the run."""
from __future__ import annotations

import threading
from dataclasses import dataclass, field

from imgrec.connectors.backend import RecognitionBackend

from .breaker import CircuitBreaker
from .progress import Progress
from .reuse import AnswerBook, reusable


@dataclass
class RunContext:
    run_id: str
    breaker: CircuitBreaker
    progress: Progress = field(default_factory=Progress)
    answers: AnswerBook | None = None  # None: the run reuses nothing (--no-reuse)
    # the flow's backend, lent to the shards that run on its event loop (an HTTP client is bound to its loop)
    lent: dict[int, RecognitionBackend] = field(default_factory=dict)


_runs: dict[str, RunContext] = {}
_latest: list[RunContext] = []  # the run this process started last: what the CLI's progress bar shows
_lock = threading.Lock()


def of(job) -> RunContext:
    with _lock:
        context = _runs.get(job.run_id)
        if context is None:
            hashes = {api: job.answer_hash(api) for api in job.apis if reusable(api)}
            answers = AnswerBook(job.output, job.run_id, hashes, job.work_dir) if job.reuse and hashes else None
            context = _runs[job.run_id] = RunContext(job.run_id, CircuitBreaker(url_mode=job.mode == "url"),
                                                     answers=answers)
            _latest[:] = [context]
        return context


def latest() -> RunContext | None:
    with _lock:
        return _latest[0] if _latest else None


def end(run_id: str) -> None:
    """The run is over in this process: its breaker and lent backend go (its progress stays readable)."""
    with _lock:
        _runs.pop(run_id, None)
