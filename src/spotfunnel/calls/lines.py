"""Opens the caller's end of a call over a chosen transport: in process, Twilio Media Streams, or SIP."""
from __future__ import annotations

import asyncio
import uuid
from typing import Any

from spotfunnel.calls.call import CallRecord, CallSetup, run_call
from spotfunnel.calls.caller import CallerLine
from spotfunnel.calls.services import CallServices
from spotfunnel.transports.base import CallStarted
from spotfunnel.transports.local import LocalCallerLine, LocalTransport

TRANSPORTS = ("local", "twilio", "sip")


async def open_line(kind: str, services: CallServices, setup: CallSetup, record: CallRecord, caller_id: str,
                    *, lockstep: bool, server_url: str | None = None,
                    directory: Any = None, direction: str = "inbound") -> tuple[CallerLine, asyncio.Future[Any]]:
    """The caller's line and a future that completes when the agent side of the call has finished.

    `direction="outbound"`: the agent placed the call and `caller_id` is the party who answers it."""
    if kind == "local":
        transport = LocalTransport(lockstep=lockstep)
        line = LocalCallerLine(transport)
        agent = asyncio.ensure_future(run_call(transport, services, lambda _s: setup, lambda _s: record))
        await line.start(CallStarted(call_id=record.call_id, caller_id=caller_id, called=setup.agent.profile.phone,
                                     tenant_id=setup.agent.profile.id, params={"direction": direction}))
        return line, agent
    if kind == "twilio":
        from spotfunnel.transports.twilio_peer import TwilioPeer

        if server_url is None or directory is None:
            raise ValueError("the twilio transport needs a running server and its call directory")
        # in process, as eval's harness: a ticket bound to the prepared setup (and lockstep), never a parameter
        call_sid = "CA" + uuid.uuid4().hex
        ticket = directory.prepare_stream(setup, record, call_sid=call_sid, caller=caller_id, direction=direction,
                                          lockstep=lockstep)
        peer = TwilioPeer(f"{server_url.rstrip('/')}/twilio/media/{ticket.token}", {"stream_token": ticket.token},
                          lockstep=lockstep, caller=caller_id, called=setup.agent.profile.phone, call_sid=call_sid)
        await peer.connect()
        return peer, asyncio.ensure_future(record.finished.wait())
    if kind == "sip":
        from spotfunnel.transports.sip.peer import SipPeer

        if server_url is None or directory is None:
            raise ValueError("the sip transport needs a running SIP server and its call directory")
        key = uuid.uuid4().hex
        directory.prepare(key, setup, record)
        sip = SipPeer(server_url, called=setup.agent.profile.phone, caller=caller_id, lockstep=lockstep)
        directory.expect(sip.call_id, setup_key=key, lockstep=lockstep)  # in process (api.sip_edge.SipHarness)
        await sip.connect()
        return sip, asyncio.ensure_future(record.finished.wait())
    raise ValueError(f"unknown transport {kind!r}; use one of {', '.join(TRANSPORTS)}")
