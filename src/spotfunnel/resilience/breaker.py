"""Circuit breaker: stop calling a failing dependency for a while, then probe it with one call."""
from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

__all__ = ["BreakerState", "CircuitBreaker", "CircuitOpen"]

P = ParamSpec("P")
R = TypeVar("R")


class BreakerState(str, enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitOpen(RuntimeError):
    """The breaker is open (or its one half-open probe is in flight): the call was not made."""

    def __init__(self, name: str, retry_in_s: float) -> None:
        self.name = name
        self.retry_in_s = retry_in_s
        super().__init__(f"circuit '{name}' is open after repeated failures; "
                         f"next probe in {max(retry_in_s, 0.0):.1f} s")


class CircuitBreaker:
    """Closed -> (failure_threshold consecutive failures) -> open -> (reset_timeout_s) -> half-open.

    Half-open admits exactly one probe: success closes the breaker, failure re-opens it for another
    reset_timeout_s. `clock` returns monotonic seconds and is injectable for tests.
    """

    def __init__(self, name: str, failure_threshold: int = 3, reset_timeout_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if failure_threshold < 1:
            raise ValueError(f"failure_threshold must be >= 1, got {failure_threshold}")
        if reset_timeout_s < 0:
            raise ValueError(f"reset_timeout_s must be >= 0, got {reset_timeout_s}")
        self.name = name
        self.failure_threshold = failure_threshold
        self.reset_timeout_s = reset_timeout_s
        self._clock = clock
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probe_in_flight = False

    @property
    def state(self) -> BreakerState:
        """The current state (an open breaker whose timeout has passed reads as half-open)."""
        if self._state is BreakerState.OPEN and self._clock() - self._opened_at >= self.reset_timeout_s:
            self._state = BreakerState.HALF_OPEN
            self._probe_in_flight = False
        return self._state

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    def allow(self) -> bool:
        """Whether a call may go through now; in half-open this claims the single probe slot."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.HALF_OPEN and not self._probe_in_flight:
            self._probe_in_flight = True
            return True
        return False

    def retry_in_s(self) -> float:
        """Seconds until an open breaker lets a probe through (0 when not open)."""
        if self.state is not BreakerState.OPEN:
            return 0.0
        return self.reset_timeout_s - (self._clock() - self._opened_at)

    def release(self) -> None:
        """A call admitted by `allow` ended with no verdict (cancelled): free the probe slot."""
        self._probe_in_flight = False

    def record_success(self) -> None:
        self._failures = 0
        self._probe_in_flight = False
        self._state = BreakerState.CLOSED

    def record_failure(self) -> None:
        self._failures += 1
        self._probe_in_flight = False
        if self._state is BreakerState.HALF_OPEN or self._failures >= self.failure_threshold:
            self._state = BreakerState.OPEN
            self._opened_at = self._clock()

    async def call(self, fn: Callable[P, Awaitable[R]], *args: P.args, **kwargs: P.kwargs) -> R:
        """Run `fn(*args)` through the breaker; raises CircuitOpen without calling when not admitted.

        Cancellation is neither a success nor a failure (the half-open probe slot is released).
        """
        if not self.allow():
            raise CircuitOpen(self.name, self.retry_in_s())
        try:
            result = await fn(*args, **kwargs)
        except asyncio.CancelledError:
            self.release()
            raise
        except Exception:
            self.record_failure()
            raise
        self.record_success()
        return result

    def __repr__(self) -> str:
        return f"CircuitBreaker({self.name!r}, state={self.state.value}, failures={self._failures})"
