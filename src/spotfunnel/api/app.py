"""The FastAPI app: health, the index page, and the Twilio routes (api/twilio_routes.py)."""
from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import AsyncIterator, Literal

import structlog
from fastapi import FastAPI
from fastapi.responses import HTMLResponse, JSONResponse

from spotfunnel.api.browser import mount_browser
from spotfunnel.api.limits import BodyLimit
from spotfunnel.api.live_calls import LiveCalls
from spotfunnel.api.security import TwilioSignatureVerifier
from spotfunnel.api.twilio_routes import twilio_router
from spotfunnel.calls.call import CallSetup
from spotfunnel.calls.directory import CallDirectory
from spotfunnel.calls.journal import close_calls_left_open
from spotfunnel.calls.services import CallServices, embedded_services, fixed_phrases, warm_up
from spotfunnel.clock import SystemClock
from spotfunnel.conversation.agent import list_tenants
from spotfunnel.integrations.sms import SmsSink
from spotfunnel.store.db import Database
from spotfunnel.transports.twilio_control import TwilioCallControl
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
    twilio_control: TwilioCallControl | None = None  # Twilio's REST API (None: no credentials)
    twilio_calls: LiveCalls = field(default_factory=LiveCalls)  # live Twilio calls by CallSid


def create_app(db: Database, services: CallServices | None = None, run_worker: bool = True,
               twilio_auth_token: str | None = None,
               twilio_control: TwilioCallControl | None | Literal["env"] = "env") -> FastAPI:
    """The server app over one database; models load at start-up, before the first call.

    Twilio webhooks are verified with `twilio_auth_token` (None: env TWILIO_AUTH_TOKEN; unset or
    '': not verified, with a warning at start-up). Call control (transfer, hang-up, outbound calls)
    uses `twilio_control` ("env": from TWILIO_ACCOUNT_SID + TWILIO_AUTH_TOKEN; None or no credentials:
    requests are recorded and logged, not carried out).
    """
    svc = services or embedded_services()
    verifier = TwilioSignatureVerifier.configured(twilio_auth_token)
    directory = CallDirectory(default_setup=lambda agent: CallSetup(agent=agent, db=db, clock=SystemClock()))
    state = ServerState(db=db, services=svc, directory=directory,
                        twilio_control=TwilioCallControl.from_env() if twilio_control == "env" else twilio_control)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        verifier.warn_if_disabled()
        await asyncio.to_thread(db.migrate)
        await close_calls_left_open(db)  # calls cut off by a crash: closed as abandoned, reports enqueued
        worker = None
        if run_worker:
            worker = asyncio.create_task(OutboxWorker(db, default_handlers(db, SmsSink(db))).run_forever(
                state.worker_stop))
        phrases = [p for agent in directory.agents() for p in fixed_phrases(agent)]  # broken tenants left out
        await warm_up(svc, phrases)
        state.ready = True
        yield
        state.worker_stop.set()
        if worker is not None:
            await asyncio.wait([worker], timeout=5)

    app = FastAPI(title="SpotFunnel", lifespan=lifespan)
    app.state.spotfunnel = state
    app.add_middleware(BodyLimit)  # every request body is capped per route (api/limits.py): 413 before reading more

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        """Each edge on its own: an enabled edge that is down makes the whole 'degraded' (503)."""
        edges = await _edge_health(app, state)
        down = [name for name, edge in edges.items() if edge["status"] not in ("ok", "disabled")]
        overall = "starting" if not state.ready else ("degraded" if down else "ok")
        return JSONResponse({"status": overall, "active_calls": state.active_calls, "edges": edges,
                             **({"down": down} if down else {})}, status_code=503 if down else 200)

    app.include_router(twilio_router(state, verifier))
    mount_browser(app, state)  # the talk page, WebRTC offer/answer, WebSocket PCM (api/browser.py)

    @app.get("/", response_class=HTMLResponse)
    async def index() -> str:
        tenants = ", ".join(list_tenants())
        return (f"<h1>SpotFunnel</h1><p>Tenants: {tenants}</p>"
                "<p><a href=\"/talk\">Talk to the agent in your browser</a> (microphone).</p>"
                "<p>Point a Twilio number's voice webhook at <code>POST /twilio/voice</code>, a SIP trunk at "
                "<code>spotfunnel serve --sip-port 5060</code>, or run <code>spotfunnel call --server URL</code>.</p>")

    return app


async def _edge_health(app: FastAPI, state: ServerState) -> dict[str, dict[str, object]]:
    """SIP (socket open and answering OPTIONS; `serve --sip-port` sets app.state.sip_edge), Twilio media, browser."""
    sip = getattr(app.state, "sip_edge", None)
    seats = getattr(app.state, "browser_seats", None)
    browser: dict[str, object] = {"status": "ok"}
    if seats is not None:
        browser.update(active_calls=seats.taken, limit=seats.limit)
    return {"sip": await sip.health() if sip is not None else {"status": "disabled"},
            "twilio_media": {"status": "ok", "active_streams": len(state.twilio_calls)},
            "browser": browser}
