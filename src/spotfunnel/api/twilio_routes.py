"""Twilio's side of the server: voice webhook, Media Streams, status and AMD callbacks, and placing outbound calls."""
from __future__ import annotations

import hmac
import os
from typing import TYPE_CHECKING, Any, Mapping
from urllib.parse import urlencode, urlsplit

import structlog
from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.responses import Response
from prometheus_client import Counter
from pydantic import BaseModel
from twilio.twiml.voice_response import VoiceResponse

from spotfunnel.api.security import TwilioSignatureVerifier, public_url
from spotfunnel.api.twilio_media import STREAM_TOKEN_PARAM, mount_media_stream
from spotfunnel.calls.call import CallSetupError
from spotfunnel.calls.tickets import OutboundDials
from spotfunnel.ops.capacity import CallCapacity
from spotfunnel.transports.base import AnsweredBy, CallStarted
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
#: our own id of an outbound call, in the webhook URLs we give Twilio (signed with them)
OUTBOUND_PARAM = "outbound"
BUSY_MESSAGE = "Sorry, all our lines are busy right now. Please call again in a few minutes."


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


def _voice_parties(form: Mapping[str, Any], dial_id: str | None,
                   dials: OutboundDials) -> tuple[str, str, str, str | None] | str:
    """(direction, caller, called, tenant) from the agent's point of view, or why the call is refused.

    Inbound: the caller is From and dialled To (the tenant's number, which picks the tenant).
    Outbound: only a call this server placed, named by our id in the webhook URL; its tenant and the
    person called (the agent's "caller", where the confirmation goes) come from our record of it.
    """
    frm, to, sid = str(form.get("From", "")), str(form.get("To", "")), str(form.get("CallSid", ""))
    if dial_id is not None:
        dial = dials.match(dial_id, sid)
        if dial is None:
            return f"outbound call {dial_id[:40]!r} with CallSid {sid[:40]!r} is not one this server placed"
        return "outbound", dial.to, dial.from_, dial.tenant
    if str(form.get("Direction", "")).startswith("outbound"):
        return "an outbound call without our call id in its webhook URL (not placed through /v1/calls)"
    return "inbound", frm, to, None


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


def twilio_router(state: ServerState, verifier: TwilioSignatureVerifier,
                  capacity: CallCapacity | None = None) -> APIRouter:
    """The Twilio routes over the server's state; webhooks are checked with `verifier`.

    New calls are answered while the process has room (`capacity`, default SPOTFUNNEL_MAX_CALLS),
    counting the calls of every edge and the streams answered but not yet open.
    """
    router = APIRouter()
    signed = [Depends(verifier.require_http)]
    capacity = capacity or CallCapacity.from_env()
    dials = OutboundDials()  # the outbound calls this server placed, by our own id

    @router.post("/twilio/voice", name="twilio_voice", dependencies=signed)
    async def voice_webhook(request: Request) -> Response:
        form = await request.form()
        call_sid = str(form.get("CallSid", ""))
        if not call_sid:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, "a voice webhook needs the call's CallSid")
        parties = _voice_parties(form, request.query_params.get(OUTBOUND_PARAM), dials)
        if isinstance(parties, str):
            log.warning("twilio.voice.refused", call_sid=call_sid, reason=parties)
            return _say_and_hang_up("Sorry, this call cannot be connected.")
        direction, caller, called, tenant = parties
        try:
            agent = state.directory.agent_for(CallStarted(call_id=call_sid, caller_id=caller, called=called,
                                                          tenant_id=tenant))
        except CallSetupError as exc:
            log.warning("twilio.voice.unknown_number", called=called, direction=direction, reason=str(exc))
            return _say_and_hang_up("Sorry, this number is not in service.")
        tickets = state.directory.tickets
        if not capacity.has_room(state.active_calls, tickets.pending()):
            log.warning("twilio.voice.at_capacity", call_sid=call_sid, tenant=agent.profile.id,
                        detail=capacity.describe(state.active_calls, tickets.pending()))
            return _say_and_hang_up(BUSY_MESSAGE)
        ticket = tickets.issue(call_sid=call_sid, caller=caller, called=called, tenant=agent.profile.id,
                               direction=direction)
        # the token is in the URL Twilio signs (a new signature per call) and repeated in the start message
        ws_url = public_url(request.url_for("twilio_media", token=ticket.token), request.headers, websocket=True)
        response = VoiceResponse()
        response.connect().stream(url=ws_url).parameter(name=STREAM_TOKEN_PARAM, value=ticket.token)
        return _twiml(response)

    mount_media_stream(router, state, verifier, capacity)

    @router.post("/twilio/status", dependencies=signed, status_code=204)
    async def call_status(request: Request) -> Response:
        form = await request.form()
        sid, call_status = str(form.get("CallSid", "")), str(form.get("CallStatus", ""))
        dial_id = request.query_params.get(OUTBOUND_PARAM, "")
        dial = dials.match(dial_id, sid) if dial_id else None
        tenant = dial.tenant if dial else ""
        log.info("twilio.call.status", call_sid=sid, status=call_status, direction=form.get("Direction"),
                 tenant=tenant, sequence=form.get("SequenceNumber"), duration_s=form.get("CallDuration"),
                 answered_by=form.get("AnsweredBy"))
        if dial is not None and call_status in FINAL_STATUSES:
            # labels from our own record and a fixed set of statuses: cardinality stays bounded
            OUTBOUND_ENDED.labels(dial.tenant, call_status).inc()
            log.info("twilio.outbound.ended", call_sid=sid, status=call_status, tenant=dial.tenant, to=dial.to,
                     duration_s=form.get("CallDuration"), error_code=form.get("ErrorCode"))
            dials.finish(dial.id)
        return Response(status_code=204)

    @router.post("/twilio/amd", dependencies=signed, status_code=204)
    async def amd_result(request: Request) -> Response:
        form = await request.form()
        sid, label = str(form.get("CallSid", "")), str(form.get("AnsweredBy", ""))
        if not sid or not label:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, "an AMD callback needs CallSid and AnsweredBy")
        dial_id = request.query_params.get(OUTBOUND_PARAM, "")
        if not dial_id or dials.match(dial_id, sid) is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"call {sid[:40]!r} is not an outbound call this server "
                                                           "placed; AMD callbacks come only for those")
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
        dial = dials.add(tenant=agent.profile.id, to=to, from_=agent.profile.phone)
        base, query = callback_base(request), urlencode({OUTBOUND_PARAM: dial.id})
        call = OutboundCall(to=to, from_=agent.profile.phone, url=f"{base}/twilio/voice?{query}",
                            status_callback=f"{base}/twilio/status?{query}",
                            amd_callback=f"{base}/twilio/amd?{query}")
        try:
            info = await state.twilio_control.place_call(call)
        except TwilioControlError as exc:
            dials.finish(dial.id)
            raise HTTPException(status.HTTP_502_BAD_GATEWAY, str(exc)) from None
        dials.bind(dial.id, info.sid)
        log.info("twilio.outbound.placed", call_sid=info.sid, tenant=agent.profile.id, to=to, status=info.status)
        return {"call_sid": info.sid, "status": info.status, "tenant": agent.profile.id, "to": to,
                "from": agent.profile.phone}

    return router


def _say_and_hang_up(words: str) -> Response:
    refusal = VoiceResponse()
    refusal.say(words)
    refusal.hangup()
    return _twiml(refusal)


def _twiml(response: VoiceResponse) -> Response:
    return Response(str(response), media_type="application/xml")
