"""The run's circuit breaker: stops a run that cannot succeed, at any point of it, within seconds.

Two ways a run cannot succeed:
- **refused**: `REFUSED_IN_A_ROW` attempts in a row answered with an error that no retry changes (401/403, a
  signature or project refused, an API without an engine, a URL host the service does not allow), or, before
  the run's first success, refused connections (nothing listening from the start);
- **unreachable**: every call has failed on the transport or the server's side (connection refused or reset,
  timeouts, 5xx, 429) for `UNREACHABLE_S` seconds without a success in between, `UNREACHABLE_CALLS` at least.
A success resets both; during an outage calls retry past their usual attempts (`outage`), so a restart or
a blip of a few seconds costs the run only time; a bad image
(an input error) neither opens nor resets it. Once open, the breaker stays open for the run: calls in their
retry loop stop retrying, images not yet sent are not read and are recorded as failed with the error that
opened it ("not sent: ..."), and the run ends Failed.

Attempts are counted, not calls: the client reports each failed attempt (`attempt_failed`), so a dead
endpoint opens the breaker `UNREACHABLE_S` after the last success, not after every call's retries.
"""
from __future__ import annotations

import threading
import time

from imgrec.schemas import errors
from imgrec.schemas.errors import ApiError

REFUSED_IN_A_ROW = 5
UNREACHABLE_S = 15.0  # a service restarting under load takes several seconds to listen again
UNREACHABLE_CALLS = 5


def refusing(err: ApiError, url_mode: bool = False) -> bool:
    """No retry changes it (credentials, the project, an API not enabled). In url mode every URL names the
    source's own host: AIS.0022 then says the service does not allow it."""
    return err.kind == errors.PERMANENT or (url_mode and err.code == "AIS.0022")


def unreachable(err: ApiError) -> bool:
    """The endpoint does not answer, or answers that it cannot now."""
    return err.kind in (errors.TRANSIENT, errors.UNREACHABLE) or err.status == 429 or err.status >= 500


class CircuitBreaker:
    def __init__(self, refused_in_a_row: int = REFUSED_IN_A_ROW, unreachable_s: float = UNREACHABLE_S,
                 unreachable_calls: int = UNREACHABLE_CALLS, url_mode: bool = False):
        self.refused_in_a_row, self.unreachable_s, self.unreachable_calls = (refused_in_a_row, unreachable_s,
                                                                             unreachable_calls)
        self.url_mode = url_mode
        self._lock = threading.Lock()  # attempts are reported from the event loop and from reader threads
        self._refused = 0
        self._failing_since: float | None = None
        self._failures = 0
        self.succeeded = False
        self.opened_by: ApiError | None = None
        self.why = ""

    @property
    def open(self) -> bool:
        return self.opened_by is not None

    @property
    def outage(self) -> bool:
        """Every attempt has failed since a moment the breaker is still giving a chance: calls keep retrying
        past their usual number of attempts until it ends (a success) or the breaker opens, so a restart of
        a few seconds costs the run only time."""
        return self._failing_since is not None and self.opened_by is None

    def success(self) -> None:
        with self._lock:
            self._refused, self._failing_since, self._failures = 0, None, 0
            self.succeeded = True

    def attempt_failed(self, err: ApiError) -> None:
        """One failed attempt (a call's retry included)."""
        with self._lock:
            if self.opened_by is not None:
                return
            now = time.monotonic()
            if refusing(err, self.url_mode) or (not self.succeeded and err.kind == errors.UNREACHABLE):
                self._refused += 1
                if self._refused >= self.refused_in_a_row:
                    hint = (" (the service fetches URLs only from the hosts in its [url_fetch] allow list: add "
                            "the bucket's endpoint host there, or run --mode inline)"
                            if self.url_mode and err.code == "AIS.0022" else "")
                    self._trip(err, f"{self._refused} calls in a row were refused{hint}")
            elif unreachable(err):
                self._failing_since = self._failing_since or now
                self._failures += 1
                if self._failures >= self.unreachable_calls and now - self._failing_since >= self.unreachable_s:
                    self._trip(err, f"every call failed for {now - self._failing_since:.0f} s")
            # anything else is about one input: it says nothing of the endpoint

    def _trip(self, err: ApiError, why: str) -> None:
        self.opened_by, self.why = err, why

    def refusal(self) -> ApiError:
        """What an image that was not sent records: the error that opened the breaker."""
        err = self.opened_by
        assert err is not None
        return ApiError(code=err.code, status=err.status, retryable=err.retryable, attempts=0,
                        message=f"not sent: the run stopped because {self.why} with {err.code} ({err.message})")

