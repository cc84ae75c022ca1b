"""Helpers for the call lifecycle tests on a real server: polling with a bound, ringing the server as Twilio does."""
from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from typing import Any

import httpx
import pytest

from spotfunnel.transports.twilio_peer import TwilioPeer

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


async def ring_like_twilio(http: str, call_sid: str) -> TwilioPeer:
    """POST the voice webhook as Twilio does and open the <Stream> its TwiML names (with its parameters)."""
    async with httpx.AsyncClient(base_url=http) as client:
        twiml = (await client.post("/twilio/voice", data={"CallSid": call_sid, "From": CALLER, "To": SALON_NUMBER,
                                                          "Direction": "inbound"})).text
    stream = ET.fromstring(twiml).find("./Connect/Stream")
    assert stream is not None, twiml
    params = {p.get("name", ""): p.get("value", "") for p in stream.findall("Parameter")}
    peer = TwilioPeer(str(stream.get("url")), params, caller=CALLER, called=SALON_NUMBER)
    peer.call_sid = call_sid  # the stream names the call the webhook answered
    return peer
