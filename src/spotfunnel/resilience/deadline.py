"""Deadlines: bound how long an awaited operation may take, with a clear error when it does not finish."""
from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

__all__ = ["Budget", "DeadlineExceeded", "with_deadline"]

R = TypeVar("R")


class DeadlineExceeded(TimeoutError):
    """An operation did not finish within its deadline (it has been cancelled)."""

    def __init__(self, seconds: float, what: str = "operation") -> None:
        self.seconds = seconds
        self.what = what
        super().__init__(f"{what} did not finish within its {seconds:g} s deadline and was cancelled")


async def with_deadline(aw: Awaitable[R], seconds: float, what: str = "operation") -> R:
    """Await `aw`, cancelling it and raising DeadlineExceeded after `seconds`.

    A TimeoutError raised by the operation itself (not by this deadline) propagates unchanged.
    """
    if seconds < 0:
        raise ValueError(f"deadline must be >= 0 seconds, got {seconds}")
    try:
        async with asyncio.timeout(seconds) as scope:
            return await aw
    except TimeoutError:
        if scope.expired():
            raise DeadlineExceeded(seconds, what) from None
        raise


class Budget:
    """A time budget shared by the steps of one piece of work (a turn's recognition, a sentence's
    synthesis): each step gets what is left, so retries and fallbacks cannot stretch the whole."""

    def __init__(self, seconds: float, what: str = "operation",
                 clock: Callable[[], float] = time.monotonic) -> None:
        if seconds <= 0:
            raise ValueError(f"a budget for {what} must be > 0 seconds, got {seconds}")
        self.seconds = seconds
        self.what = what
        self._clock = clock
        self._ends = clock() + seconds

    def remaining(self) -> float:
        return max(0.0, self._ends - self._clock())

    @property
    def spent(self) -> bool:
        return self.remaining() <= 0.0

    async def run(self, aw: Awaitable[R], what: str | None = None, share: int = 1) -> R:
        """Await `aw` within 1/`share` of what is left (a fallback chain keeps time for the providers
        after this one); DeadlineExceeded otherwise."""
        left = self.remaining() / max(1, share)
        if left <= 0.0:
            close = getattr(aw, "close", None)
            if close is not None:
                close()  # a coroutine that will never be awaited: close it quietly
            raise DeadlineExceeded(self.seconds, what or self.what)
        return await with_deadline(aw, round(left, 3), what or self.what)
