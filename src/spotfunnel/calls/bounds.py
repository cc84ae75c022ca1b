"""The deadlines of a call's waits outside audio time, and the one helper that enforces them.

Inside the call timers count 20 ms frames (voice/); these bound what audio time cannot: the
provider's answers, the store, a line that never starts.
"""
from __future__ import annotations

import asyncio
from typing import Awaitable, TypeVar

import structlog

__all__ = ["CONTROL_DEADLINE_S", "ENDING_GRACE_S", "SETTLE_DEADLINE_S", "SPEECH_DEADLINE_S", "START_DEADLINE_S",
           "VAD_LOAD_DEADLINE_S", "within"]

log = structlog.get_logger(__name__)
T = TypeVar("T")

START_DEADLINE_S = 15.0  # a line that never says who is calling is dropped
VAD_LOAD_DEADLINE_S = 30.0  # loading the VAD model takes ~75 ms
CONTROL_DEADLINE_S = 10.0  # the provider's answer to a hang-up or transfer request
ENDING_GRACE_S = 10.0  # how long a closing call waits for the provider to confirm the hang-up or transfer
SPEECH_DEADLINE_S = 60.0  # backstop for the last words to play; they settle in audio time, or unheard at hang-up
SETTLE_DEADLINE_S = 5.0  # after the line is gone: the conversation's tasks wind down


async def within(what: str, awaitable: Awaitable[T], deadline_s: float, default: T) -> T:
    """`awaitable`'s result, or `default` (logged) when it takes longer than `deadline_s` or fails."""
    try:
        return await asyncio.wait_for(awaitable, deadline_s)
    except TimeoutError:
        log.warning("call.deadline_passed", waiting_for=what, deadline_s=deadline_s)
    except Exception as exc:
        log.warning("call.step_failed", step=what, error=repr(exc))
    return default
