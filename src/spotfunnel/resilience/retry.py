"""Retry an async operation with capped exponential backoff and jitter."""
from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Literal, TypeVar

__all__ = ["Jitter", "backoff_delay", "retry_async"]

log = logging.getLogger(__name__)

R = TypeVar("R")
Jitter = Literal["full", "equal", "none"]


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random | None = None,
                  jitter: Jitter = "full") -> float:
    """Delay before retry number `attempt` (1 = the wait after the first failure).

    The ceiling grows as base * 2**(attempt-1), capped at `cap`. 'full' jitter draws uniformly
    from [0, ceiling] (AWS's "full jitter", best at spreading out a crowd of retrying clients),
    'equal' from [ceiling/2, ceiling], 'none' returns the ceiling itself.
    """
    if attempt < 1:
        raise ValueError(f"attempt counts from 1, got {attempt}")
    if base < 0 or cap < 0:
        raise ValueError(f"base and cap must be >= 0, got base={base}, cap={cap}")
    ceiling = min(cap, base * 2.0 ** min(attempt - 1, 62))
    draw = (rng or random).random()
    if jitter == "full":
        return ceiling * draw
    if jitter == "equal":
        return ceiling / 2 + ceiling / 2 * draw
    if jitter == "none":
        return ceiling
    raise ValueError(f"jitter must be 'full', 'equal' or 'none', got {jitter!r}")


async def retry_async(
    fn: Callable[[], Awaitable[R]],
    attempts: int = 3,
    base_delay_s: float = 0.2,
    max_delay_s: float = 5.0,
    jitter: Jitter = "full",
    retry_on: tuple[type[BaseException], ...] = (Exception,),
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    rng: random.Random | None = None,
    on_retry: Callable[[int, BaseException, float], None] | None = None,
) -> R:
    """Call `fn()` up to `attempts` times, sleeping a backoff delay between failures.

    Only exceptions in `retry_on` are retried; others propagate at once. When every attempt
    fails the last exception is re-raised, with a note saying how many attempts were made.
    `on_retry(attempt, error, delay)` is called before each sleep (for logs and metrics).
    """
    if attempts < 1:
        raise ValueError(f"attempts must be >= 1, got {attempts}")
    for attempt in range(1, attempts + 1):
        try:
            return await fn()
        except retry_on as exc:
            if attempt == attempts:
                exc.add_note(f"gave up after {attempts} attempt(s)")
                raise
            delay = backoff_delay(attempt, base_delay_s, max_delay_s, rng, jitter)
            if on_retry is not None:
                on_retry(attempt, exc, delay)
            else:
                log.debug("attempt %d/%d failed (%r); retrying in %.3f s", attempt, attempts, exc, delay)
            await sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover
