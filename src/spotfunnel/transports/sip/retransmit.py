"""SIP timers and the one retransmission loop of UDP transactions (RFC 3261 17): resend at T1 doubling to T2."""
from __future__ import annotations

import asyncio
from typing import Awaitable, Callable, TypeVar

__all__ = ["T1", "T2", "TIMER_B", "retransmit"]

T = TypeVar("T")
T1, T2, TIMER_B = 0.5, 4.0, 32.0  # RFC 3261 timers: retransmit from T1 doubling to T2, give up at 64*T1


def _never() -> bool:
    return False


async def retransmit(send: Callable[[], None], outcome: Awaitable[T], timeout_s: float, *, sent: bool = False,
                     pause: Callable[[], bool] = _never, stop: Callable[[], bool] = _never) -> T | None:
    """Send, then resend at T1, 2*T1, ... (at most T2 apart) until `outcome` is ready; its result, or None.

    None when `timeout_s` passes or `stop()` turns true (checked at each interval). `sent`: the first
    copy already went out. `pause()` true skips a resend (a provisional response came) but keeps waiting.
    """
    loop = asyncio.get_running_loop()
    waiter = asyncio.ensure_future(outcome)
    deadline, interval = loop.time() + timeout_s, T1
    try:
        if not sent:
            send()
        while not stop():
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            done, _ = await asyncio.wait({waiter}, timeout=min(interval, remaining))
            if done:
                return waiter.result()
            if loop.time() < deadline and not stop() and not pause():
                send()
            interval = min(interval * 2, T2)
        return None
    finally:
        if not waiter.done():
            waiter.cancel()
