"""Helpers for the call lifecycle tests on a real server: polling with a bound, ringing it as Twilio does, waiting for idle."""
from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from spotfunnel.transports.twilio_peer import TwilioPeer, answer_like_twilio

SALON, SALON_NUMBER, CALLER = "maple-street-salon", "+14155550100", "+14155550123"
WAIT_S = 30.0  # a bound on waiting for the server, generous for a busy machine: the call hangs forever without the fix


async def poll(condition: Any, what: str, timeout_s: float = WAIT_S) -> Any:
    """Poll the async `condition` until it returns something truthy; fail naming `what` after `timeout_s`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        value = await condition()
        if value:
            return value
        if loop.time() >= deadline:
            pytest.fail(f"{what} within {timeout_s:g} s (last seen: {value!r})")
        await asyncio.sleep(0.05)


async def ring_like_twilio(http: str) -> TwilioPeer:
    """Ring the server as Twilio does (voice webhook, then the TwiML's <Stream>); the peer is not connected yet."""
    return await answer_like_twilio(http, caller=CALLER, called=SALON_NUMBER)


async def await_idle(http: str) -> None:
    """Until /healthz counts no active call."""
    async with httpx.AsyncClient(base_url=http) as client:
        async def idle() -> bool:
            return (await client.get("/healthz")).json()["active_calls"] == 0

        await poll(idle, "active_calls back to 0 after the caller hung up")
