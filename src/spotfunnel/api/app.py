"""The FastAPI app: the Twilio voice webhook, the Media Streams WebSocket, health."""
from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import AsyncIterator
from xml.sax.saxutils import quoteattr

import structlog
from fastapi import Depends, FastAPI, Request, WebSocket
from fastapi.responses import HTMLResponse, Response

from spotfunnel.api.security import TwilioSignatureVerifier, public_url
from spotfunnel.calls.call import CallSetup, CallSetupError, run_call
from spotfunnel.calls.directory import CallDirectory
from spotfunnel.calls.services import CallServices, embedded_services, fixed_phrases, warm_up
from spotfunnel.clock import SystemClock
from spotfunnel.conversation.agent import list_tenants, load_agent
from spotfunnel.integrations.sms import SmsSink
from spotfunnel.store.db import Database
from spotfunnel.transports.base import CallStarted
from spotfunnel.transports.twilio import TwilioTransport
from spotfunnel.workflows.jobs import default_handlers
from spotfunnel.workflows.worker import OutboxWorker

log = structlog.get_logger(__name__)


@dataclass
class ServerState:
    db: Database
    services: CallServices
    directory: CallDirectory
    active_calls: int = 0
    ready: bool = False
    worker_stop: asyncio.Event = field(default_factory=asyncio.Event)


def create_app(db: Database, services: CallServices | None = None, run_worker: bool = True,
               twilio_auth_token: str | None = None) -> FastAPI:
    """The server app over one database; models load at start-up, before the first call.

    Twilio webhooks are verified with `twilio_auth_token` (None: env TWILIO_AUTH_TOKEN; unset or
    '': not verified, with a warning at start-up).
    """
    svc = services or embedded_services()
    verifier = TwilioSignatureVerifier.configured(twilio_auth_token)
    directory = CallDirectory(default_setup=lambda agent: CallSetup(agent=agent, db=db, clock=SystemClock()))
    state = ServerState(db=db, services=svc, directory=directory)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        verifier.warn_if_disabled()
        await asyncio.to_thread(db.migrate)
        worker = None
        if run_worker:
            worker = asyncio.create_task(OutboxWorker(db, default_handlers(db, SmsSink(db))).run_forever(
                state.worker_stop))
        phrases = [p for t in list_tenants() for p in fixed_phrases(load_agent(t))]
        await warm_up(svc, phrases)
        state.ready = True
        yield
        state.worker_stop.set()
        if worker is not None:
            await asyncio.wait([worker], timeout=5)

    app = FastAPI(title="SpotFunnel", lifespan=lifespan)
    app.state.spotfunnel = state

    @app.get("/healthz")
    async def healthz() -> dict[str, object]:
        return {"status": "ok" if state.ready else "starting", "active_calls": state.active_calls}

    @app.post("/twilio/voice", dependencies=[Depends(verifier.require_http)])
    async def voice_webhook(request: Request) -> Response:
        form = await request.form()
        caller, called = str(form.get("From", "")), str(form.get("To", ""))
        try:
            agent = directory.agent_for(CallStarted(call_id=str(form.get("CallSid", "")), caller_id=caller,
                                                    called=called))
        except CallSetupError as exc:
            log.warning("twilio.voice.unknown_number", called=called, reason=str(exc))
            return _twiml("<Say>Sorry, this number is not in service.</Say><Hangup/>")
        ws_url = public_url(request.url_for("twilio_media"), request.headers, websocket=True)
        params = "".join(f"<Parameter name={quoteattr(k)} value={quoteattr(v)}/>"
                         for k, v in (("tenant", agent.profile.id), ("caller", caller)))
        return _twiml(f"<Connect><Stream url={quoteattr(ws_url)}>{params}</Stream></Connect>")

    @app.websocket("/twilio/media", name="twilio_media", dependencies=[Depends(verifier.require_websocket)])
    async def twilio_media(websocket: WebSocket) -> None:
        await websocket.accept()
        transport = TwilioTransport(websocket)
        state.active_calls += 1
        try:
            await run_call(transport, svc, directory.resolve, directory.record_for)
        finally:
            state.active_calls -= 1
            with contextlib.suppress(Exception):
                await websocket.close()

    @app.get("/", response_class=HTMLResponse)
    async def index() -> str:
        tenants = ", ".join(list_tenants())
        return (f"<h1>SpotFunnel</h1><p>Tenants: {tenants}</p><p>Point a Twilio number's voice webhook at "
                "<code>POST /twilio/voice</code>, or run <code>spotfunnel call --server URL</code>.</p>")

    return app


def _twiml(body: str) -> Response:
    return Response(f'<?xml version="1.0" encoding="UTF-8"?><Response>{body}</Response>',
                    media_type="application/xml")
