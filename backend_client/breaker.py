"""A circuit breaker for the backend: at the morning peak, a dead backend must cost each caller
nothing more than the `error.service_unavailable` prompt, not a request timeout each.

closed: requests go through; `failures` failures in a row open it.
open: requests fail at once for `reset_s` seconds.
half-open: then one request (the probe) goes through while the others still fail at once; its
success closes the breaker, its failure opens it for another `reset_s`.

Only failures to get an answer count, and only those of a backend that is down, not busy:
- `failed`: unreachable (connection refused or reset, nothing listening): always a failure;
- `timed_out`: no connection or no answer in time. A failure only if no other request was
  answered since this one was sent: a busy backend (a burst of calls queued in it) still
  answers the others, only slowly, and opening then would turn congestion into refusals; a
  hung one, or a host that drops packets, answers none.
A backend that answers, even with an error, is up: an error answer comes back fast, so there
is no wait to save.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import Enum


class BreakerState(Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    def __init__(
        self,
        failures: int = 5,
        reset_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.failures_to_open = failures
        self.reset_s = reset_s
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False
        self._answered_at = float("-inf")

    def now(self) -> float:
        """The breaker's clock: a request's send time, for `timed_out`."""
        return self._clock()

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return BreakerState.CLOSED
        if self._probing or self.retry_in() == 0:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    def retry_in(self) -> float:
        """Seconds until a request may go through (0: now, unless a probe is out)."""
        if self._opened_at is None:
            return 0.0
        return max(0.0, self._opened_at + self.reset_s - self._clock())

    def allow(self) -> bool:
        """May a request go through now? In half-open state only the first asker (the probe)
        gets True; it must then report `succeeded`, `failed` or `abandoned`."""
        if self._opened_at is None:
            return True
        if self._probing or self.retry_in() > 0:
            return False
        self._probing = True
        return True

    def succeeded(self) -> None:
        self._answered_at = self._clock()
        self._failures = 0
        self._opened_at = None
        self._probing = False

    def failed(self) -> None:
        self._failures += 1
        if self._probing or self._failures >= self.failures_to_open:
            self._opened_at = self._clock()
        self._probing = False

    def timed_out(self, sent_at: float) -> None:
        """A request sent at `sent_at` (`now()`) got no answer in time: a failure only if no
        request was answered since (a busy backend still answers; a hung one does not)."""
        if self._answered_at >= sent_at:
            self.abandoned()
        else:
            self.failed()

    def abandoned(self) -> None:
        """A request ended without a verdict (its caller went away): let another probe go."""
        self._probing = False
