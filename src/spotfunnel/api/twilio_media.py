"""The Media Streams socket: opened only with a stream ticket our voice webhook issued, inside the call capacity."""
from __future__ import annotations

import contextlib
import hmac
from typing import TYPE_CHECKING

import structlog
from fastapi import APIRouter, Depends, WebSocket, status

from spotfunnel.api.security import TwilioSignatureVerifier
from spotfunnel.calls.call import CallSetup, run_call
from spotfunnel.calls.tickets import StreamTicket
from spotfunnel.ops.capacity import CallCapacity
from spotfunnel.transports.base import CallStarted
from spotfunnel.transports.twilio import StartBinding, StreamLimits, TwilioTransport

if TYPE_CHECKING:
    from spotfunnel.api.app import ServerState

__all__ = ["STREAM_TOKEN_PARAM", "bind_to_ticket", "mount_media_stream"]

log = structlog.get_logger(__name__)

#: the <Parameter> that repeats the stream URL's token in the start message
STREAM_TOKEN_PARAM = "stream_token"
WS_TRY_AGAIN_LATER = 1013  # RFC 6455 7.4.1 (IANA registry): the server is overloaded
#: the bounds of every stream this server accepts (timeouts, caps, junk budget, pacing)
STREAM_LIMITS = StreamLimits()


def bind_to_ticket(ticket: StreamTicket) -> StartBinding:
    """The start message must repeat the ticket's token and name its call; the identity is the ticket's."""

    def bind(call_sid: str, params: dict[str, str]) -> CallStarted | str:
        if not hmac.compare_digest(params.get(STREAM_TOKEN_PARAM, "").encode(), ticket.token.encode()):
            return f"the start message's {STREAM_TOKEN_PARAM} parameter does not match the stream URL"
        if call_sid != ticket.call_sid:
            return f"callSid {call_sid[:40]!r} is not the call this stream was answered for"
        return CallStarted(call_id=ticket.call_sid, caller_id=ticket.caller, called=ticket.called,
                           tenant_id=ticket.tenant, params=ticket.call_params())

    return bind


async def _refuse(websocket: WebSocket, code: int, reason: str) -> None:
    """Accept only to say why, then close: a refused handshake would tell the far end nothing."""
    client = websocket.client
    log.warning("twilio.media.refused", code=code, reason=reason,
                remote=f"{client.host}:{client.port}" if client else "unknown")
    await websocket.accept()
    await websocket.close(code=code, reason=reason[:120])  # a close reason is at most 123 bytes


def mount_media_stream(router: APIRouter, state: ServerState, verifier: TwilioSignatureVerifier,
                       capacity: CallCapacity) -> None:
    """`/twilio/media/{token}` (and a refusal at the bare `/twilio/media`) on `router`."""
    signed = [Depends(verifier.require_websocket)]

    @router.websocket("/twilio/media", dependencies=signed)
    async def untokened_media(websocket: WebSocket) -> None:
        await _refuse(websocket, status.WS_1008_POLICY_VIOLATION,
                      "a media stream needs the stream URL our /twilio/voice webhook returns")

    @router.websocket("/twilio/media/{token}", name="twilio_media", dependencies=signed)
    async def twilio_media(websocket: WebSocket, token: str) -> None:
        ticket = state.directory.tickets.claim(token)
        if ticket is None:
            await _refuse(websocket, status.WS_1008_POLICY_VIOLATION,
                          "unknown, used or expired stream token: open streams only from our /twilio/voice TwiML")
            return
        # eval's harness (in process) sets its own concurrency; every call from the network counts
        if ticket.prepared is None and not capacity.has_room(state.active_calls):
            await _refuse(websocket, WS_TRY_AGAIN_LATER, f"{capacity.describe(state.active_calls)}; try again later")
            return
        await websocket.accept()
        await _serve_stream(websocket, ticket, state)


async def _serve_stream(websocket: WebSocket, ticket: StreamTicket, state: ServerState) -> None:
    transport = TwilioTransport(websocket, lockstep=ticket.lockstep, control=state.twilio_control,
                                bind_start=bind_to_ticket(ticket), limits=STREAM_LIMITS)

    def resolve(started: CallStarted) -> CallSetup:
        state.twilio_calls.add(started.call_id, transport)  # webhooks (AMD) can reach the call from now on
        return state.directory.resolve(started)

    state.active_calls += 1
    try:
        record = await run_call(transport, state.services, resolve, state.directory.record_for)
    finally:
        state.active_calls -= 1
        state.twilio_calls.remove(transport.call_sid, transport)
        with contextlib.suppress(Exception):
            await websocket.close()
    log.info("twilio.stream.ended", call_sid=ticket.call_sid, tenant=record.tenant_id or ticket.tenant,
             caller_last4=record.caller_id[-4:], lockstep=transport.lockstep, reason=transport.ended_reason,
             outcome=record.outcome, **transport.stats)
