"""Deadlines: bound how long an awaited operation may take, with a clear error when it does not finish."""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

__all__ = ["DeadlineExceeded", "with_deadline"]

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
