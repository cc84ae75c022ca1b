"""Twilio's side of the server: voice webhook, Media Streams, status and AMD callbacks, and placing outbound calls."""
from __future__ import annotations

import contextlib
import hmac
import os
from typing import TYPE_CHECKING, Any, Mapping
from urllib.parse import urlencode, urlsplit

import structlog
from fastapi import APIRouter, Depends, HTTPException, Request, WebSocket, status
from fastapi.responses import Response
from prometheus_client import Counter
from pydantic import BaseModel
from twilio.twiml.voice_response import VoiceResponse

from spotfunnel.api.security import TwilioSignatureVerifier, public_url
from spotfunnel.calls.call import CallSetup, CallSetupError, run_call
from spotfunnel.transports.base import AnsweredBy, CallStarted
from spotfunnel.transports.twilio import TwilioTransport
from spotfunnel.transports.twilio_control import (
    MISSING_CREDENTIALS,
    OutboundCall,
    TwilioControlError,
    validate_e164,
)

if TYPE_CHECKING:
    from spotfunnel.api.app import ServerState

__all__ = ["API_TOKEN_ENV", "PUBLIC_URL_ENV", "answered_by", "twilio_router"]

log = structlog.get_logger(__name__)

PUBLIC_URL_ENV = "SPOTFUNNEL_PUBLIC_URL"
API_TOKEN_ENV = "SPOTFUNNEL_API_TOKEN"
#: a call in one of these statuses is over (https://www.twilio.com/docs/voice/api/call-resource#call-status-values)
FINAL_STATUSES = frozenset({"completed", "failed", "busy", "no-answer", "canceled"})
OUTBOUND_ENDED = Counter("spotfunnel_outbound_calls_total",
                         "Outbound calls that ended, by tenant and Twilio's final call status", ["tenant", "status"])
_LOOPBACK = {"127.0.0.1", "::1", "localhost"}


class OutboundRequest(BaseModel):
    tenant: str
    to: str


def answered_by(label: str) -> AnsweredBy:
    """Twilio's AnsweredBy label as the transport event: human, machine (any machine_*), fax or unknown."""
    label = label.strip()
    if label == "human" or label == "fax":
        return AnsweredBy(label, label)
    if label.startswith("machine"):
        return AnsweredBy("machine", label)
    return AnsweredBy("unknown", label)


def _voice_parties(form: Mapping[str, Any]) -> tuple[str, str, str]:
    """(direction, caller, called) from the agent's point of view.

    Inbound: the caller is From and dialled To (the tenant's number). Outbound (Direction
    outbound-api): Twilio's From is the tenant's number and To the person we call, who is the
    agent's "caller" (the number the booking's confirmation goes to).
    """
    frm, to = str(form.get("From", "")), str(form.get("To", ""))
    if str(form.get("Direction", "")).startswith("outbound"):
        return "outbound", to, frm
    return "inbound", frm, to


def callback_base(request: Request) -> str:
    """Where Twilio reaches this server: SPOTFUNNEL_PUBLIC_URL, else the URL this request came to."""
    configured = os.environ.get(PUBLIC_URL_ENV, "").strip()
    if configured:
        return configured.rstrip("/")
    base = public_url(request.url.replace(path="", query="", fragment=""), request.headers).rstrip("/")
    if (urlsplit(base).hostname or "") in _LOOPBACK:
        log.warning("twilio.callbacks.unreachable", base=base,
                    detail=f"Twilio cannot reach {base}; set {PUBLIC_URL_ENV} to this server's public https URL")
    return base


def require_api_token(request: Request) -> None:
    """Placing calls costs money: it needs SPOTFUNNEL_API_TOKEN set on the server and sent as a Bearer token.

    Without a token nobody may place calls, not even from this machine: a local reverse proxy or
    tunnel makes every request look local, and guessing wrong would let anyone ring numbers.
    """
    token = os.environ.get(API_TOKEN_ENV, "")
    if not token:
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            f"placing calls needs an API token: set {API_TOKEN_ENV} on the server and send it as "
                            "a Bearer token (spotfunnel dial reads it from the same variable)")
    sent = request.headers.get("authorization", "")
    if not hmac.compare_digest(sent.encode(), f"Bearer {token}".encode()):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED,
                            f"missing or wrong API token: send 'Authorization: Bearer <{API_TOKEN_ENV}>'")


def twilio_router(state: ServerState, verifier: TwilioSignatureVerifier) -> APIRouter:
    """The Twilio routes over the server's state; webhooks are checked with `verifier`."""
    router = APIRouter()
    signed = [Depends(verifier.require_http)]

    @router.post("/twilio/voice", name="twilio_voice", dependencies=signed)
    async def voice_webhook(request: Request) -> Response:
        form = await request.form()
        direction, caller, called = _voice_parties(form)
        call_sid = str(form.get("CallSid", ""))
        hint = request.query_params.get("tenant") or None  # set on our outbound calls' webhook URL (signed)
        try:
            agent = state.directory.agent_for(CallStarted(call_id=call_sid, caller_id=caller, called=called,
                                                          tenant_id=hint))
        except CallSetupError as exc:
            log.warning("twilio.voice.unknown_number", called=called, direction=direction, reason=str(exc))
            refusal = VoiceResponse()
            refusal.say("Sorry, this number is not in service.")
            refusal.hangup()
            return _twiml(refusal)
        ws_url = public_url(request.url_for("twilio_media"), request.headers, websocket=True)
        params = {"tenant": agent.profile.id, "call_sid": call_sid, "direction": direction, "caller": caller,
                  "called": called}
        response = VoiceResponse()
        stream = response.connect().stream(url=ws_url)
        for name, value in params.items():
            stream.parameter(name=name, value=value)
        return _twiml(response)

    @router.websocket("/twilio/media", name="twilio_media", dependencies=[Depends(verifier.require_websocket)])
    async def twilio_media(websocket: WebSocket) -> None:
        await websocket.accept()
        transport = TwilioTransport(websocket, control=state.twilio_control)

        def resolve(started: CallStarted) -> CallSetup:
            state.twilio_calls.add(started.call_id, transport)  # webhooks (AMD) can reach the call from now on
            return state.directory.resolve(started)

        state.active_calls += 1
        try:
            await run_call(transport, state.services, resolve, state.directory.record_for)
        finally:
            state.active_calls -= 1
            state.twilio_calls.remove(transport.call_sid, transport)
            with contextlib.suppress(Exception):
                await websocket.close()

    @router.post("/twilio/status", dependencies=signed, status_code=204)
    async def call_status(request: Request) -> Response:
        form = await request.form()
        sid, call_status = str(form.get("CallSid", "")), str(form.get("CallStatus", ""))
        direction, tenant = str(form.get("Direction", "")), request.query_params.get("tenant", "")
        log.info("twilio.call.status", call_sid=sid, status=call_status, direction=direction, tenant=tenant,
                 sequence=form.get("SequenceNumber"), duration_s=form.get("CallDuration"),
                 answered_by=form.get("AnsweredBy"))
        if direction.startswith("outbound") and call_status in FINAL_STATUSES:
            # Label values come from the request: only known tenants and statuses, so cardinality stays bounded.
            OUTBOUND_ENDED.labels(tenant if state.directory.knows(tenant) else "unknown", call_status).inc()
            log.info("twilio.outbound.ended", call_sid=sid, status=call_status, tenant=tenant, to=form.get("To"),
                     duration_s=form.get("CallDuration"), error_code=form.get("ErrorCode"))
        return Response(status_code=204)

    @router.post("/twilio/amd", dependencies=signed, status_code=204)
    async def amd_result(request: Request) -> Response:
        form = await request.form()
        sid, label = str(form.get("CallSid", "")), str(form.get("AnsweredBy", ""))
        if not sid or not label:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, "an AMD callback needs CallSid and AnsweredBy")
        event = answered_by(label)
        live = state.twilio_calls.deliver(sid, event)
        log.info("twilio.amd", call_sid=sid, answered_by=label, kind=event.kind, live=live,
                 detection_ms=form.get("MachineDetectionDuration"))
        return Response(status_code=204)

    @router.post("/v1/calls", status_code=201, dependencies=[Depends(require_api_token)])
    async def place_call(body: OutboundRequest, request: Request) -> dict[str, str]:
        try:
            to = validate_e164(body.to, "number to call")
        except ValueError as exc:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
        try:
            agent = state.directory.agent_for(CallStarted(call_id="", caller_id="", called="", tenant_id=body.tenant))
        except CallSetupError as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
        if state.twilio_control is None:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, MISSING_CREDENTIALS)
        base, query = callback_base(request), urlencode({"tenant": agent.profile.id})
        call = OutboundCall(to=to, from_=agent.profile.phone, url=f"{base}/twilio/voice?{query}",
                            status_callback=f"{base}/twilio/status?{query}", amd_callback=f"{base}/twilio/amd")
        try:
            info = await state.twilio_control.place_call(call)
        except TwilioControlError as exc:
            raise HTTPException(status.HTTP_502_BAD_GATEWAY, str(exc)) from None
        log.info("twilio.outbound.placed", call_sid=info.sid, tenant=agent.profile.id, to=to, status=info.status)
        return {"call_sid": info.sid, "status": info.status, "tenant": agent.profile.id, "to": to,
                "from": agent.profile.phone}

    return router


def _twiml(response: VoiceResponse) -> Response:
    return Response(str(response), media_type="application/xml")
