"""Opens the caller's end of a call over a chosen transport: in process, or Twilio Media Streams."""
from __future__ import annotations

import asyncio
import uuid
from typing import Any

from spotfunnel.calls.call import CallRecord, CallSetup, run_call
from spotfunnel.calls.caller import CallerLine
from spotfunnel.calls.services import CallServices
from spotfunnel.transports.base import CallStarted
from spotfunnel.transports.local import LocalCallerLine, LocalTransport

TRANSPORTS = ("local", "twilio")


async def open_line(kind: str, services: CallServices, setup: CallSetup, record: CallRecord, caller_id: str,
                    *, lockstep: bool, server_url: str | None = None,
                    directory: Any = None) -> tuple[CallerLine, asyncio.Future[Any]]:
    """The caller's line and a future that completes when the agent side of the call has finished."""
    if kind == "local":
        transport = LocalTransport(lockstep=lockstep)
        line = LocalCallerLine(transport)
        agent = asyncio.ensure_future(run_call(transport, services, lambda _s: setup, lambda _s: record))
        await line.start(CallStarted(call_id=record.call_id, caller_id=caller_id, called=setup.agent.profile.phone,
                                     tenant_id=setup.agent.profile.id))
        return line, agent
    if kind == "twilio":
        from spotfunnel.transports.twilio_peer import TwilioPeer

        if server_url is None or directory is None:
            raise ValueError("the twilio transport needs a running server and its call directory")
        key = uuid.uuid4().hex
        directory.prepare(key, setup, record)
        peer = TwilioPeer(f"{server_url.rstrip('/')}/twilio/media",
                          {"setup": key, "tenant": setup.agent.profile.id, "caller": caller_id},
                          lockstep=lockstep, caller=caller_id, called=setup.agent.profile.phone)
        await peer.connect()
        return peer, asyncio.ensure_future(record.finished.wait())
    raise ValueError(f"unknown transport {kind!r}; use one of {', '.join(TRANSPORTS)}")
