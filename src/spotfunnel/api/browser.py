"""The browser routes: the talk page, WebRTC offer/answer, the WebSocket PCM fallback, and the live call events."""
from __future__ import annotations

import asyncio
import contextlib
import os
from datetime import timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Protocol
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import structlog
from aiortc import RTCSessionDescription
from fastapi import FastAPI, HTTPException, Request, WebSocket, status
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from spotfunnel.api.security import is_loopback_host
from spotfunnel.calls.call import CallRecord, CallSetupError, run_call
from spotfunnel.conversation.agent import list_tenants
from spotfunnel.store.queries import BookingView, bookings_made_by_call
from spotfunnel.transports.base import CallStarted, Transport
from spotfunnel.transports.browser_guard import BrowserLimits
from spotfunnel.transports.browser_ws import BrowserWsTransport
from spotfunnel.transports.webrtc import WebRtcTransport
from spotfunnel.voice.events import CallEvent

if TYPE_CHECKING:
    from spotfunnel.api.app import ServerState

__all__ = ["TALK_PATH", "WEB_DIR", "mount_browser", "page_event"]

log = structlog.get_logger(__name__)

WEB_DIR = Path(__file__).with_name("web")
TALK_PATH = "/talk"
MAX_CALLS_ENV = "SPOTFUNNEL_MAX_BROWSER_CALLS"
DEFAULT_MAX_CALLS = 4  # each call runs speech recognition and synthesis: a few per core
MAX_SDP_CHARS = 32_000  # a browser's audio offer is a few kB; anything near this is not one
#: outside the call, each wait has a deadline: answering an offer (ICE gathering on host candidates
#: takes milliseconds), looking up the call's bookings for the page, closing the peer or socket
ANSWER_DEADLINE_S = 10.0
LOOKUP_DEADLINE_S = 5.0
SHUTDOWN_DEADLINE_S = 10.0  # WebRTC calls still running at shutdown: each closes its peer connection (5 s at most)
MAX_PAGE_EVENTS = 512  # call events waiting to reach the page; a page that does not read them loses the oldest


class BrowserTransport(Transport, Protocol):
    """A browser transport: a Transport with a side channel to the page and an explicit close."""

    async def send_event(self, event: dict[str, Any]) -> None: ...

    async def close(self) -> None: ...


class WebRtcOffer(BaseModel):
    """The page's offer. It names no caller: a browser call has no caller ID (the agent asks for the number)."""

    sdp: str = Field(min_length=1, max_length=MAX_SDP_CHARS, description="the page's SDP offer")
    type: str = Field("offer", max_length=16)
    tenant: str | None = Field(None, max_length=100, description="one of the server's tenants (checked)")


class BrowserSeats:
    """How many browser calls may run at once; a call beyond that is refused before it costs anything."""

    def __init__(self, limit: int) -> None:
        self.limit, self.taken = limit, 0

    def take(self) -> bool:
        if self.taken >= self.limit:
            log.warning("browser.busy", active=self.taken, limit=self.limit)
            return False
        self.taken += 1
        return True

    def give_back(self) -> None:
        self.taken = max(0, self.taken - 1)

    @property
    def busy_message(self) -> str:
        return (f"the server is busy with {self.taken} browser calls (its limit, {MAX_CALLS_ENV}={self.limit}); "
                "try again in a minute")


def same_origin(headers: Mapping[str, str]) -> bool:
    """A request a page on another site made (cross-site WebSocket or fetch) is refused.

    Browsers always send Origin on WebSocket upgrades and cross-origin POSTs; a client that is not
    a browser sends none, and is judged by the other routes' rules like any HTTP client.
    """
    origin = headers.get("origin")
    if not origin:
        return True
    # Behind a proxy that rewrites Host, the page's own host arrives as X-Forwarded-Host (a page on
    # another site cannot set that header: a browser sends no custom headers on a WebSocket upgrade,
    # and a cross-site POST carrying one needs a CORS preflight this server never grants).
    forwarded = headers.get("x-forwarded-host", "").split(",")[0].strip()
    own = {headers.get("host", "").lower()} | ({forwarded.lower()} if forwarded else set())
    return urlsplit(origin).netloc.lower() in own


def page_event(ev: CallEvent) -> dict[str, Any] | None:
    """What the page's live transcript shows of one call event (None: nothing)."""
    data = ev.data
    if ev.kind == "caller_turn":
        if data.get("kind") == "dtmf":
            return {"type": "caller", "text": f"pressed {data.get('text', '')}", "dtmf": True}
        return {"type": "caller", "text": data.get("text", "")} if data.get("text") else None
    if ev.kind == "agent_speech_queued":
        return {"type": "agent", "id": data.get("id"), "text": data.get("text", "")}
    if ev.kind == "agent_audio_started":
        return {"type": "agent_audio", "id": data.get("id")}
    if ev.kind == "agent_speech_done":
        return {"type": "agent_heard", "id": data.get("id"), "text": data.get("text", "")}
    if ev.kind == "agent_interrupted":
        return {"type": "interrupted", "heard": list(data.get("heard") or [])}
    if ev.kind == "protocol_issue":
        return {"type": "issue", "message": data.get("message", "")}
    return None


class _EventPump:
    """Forwards a call's events to the page in order, from the EventLog's synchronous listener."""

    def __init__(self, transport: BrowserTransport, cap: int = MAX_PAGE_EVENTS) -> None:
        self.transport = transport
        # two places beyond the cap: the outcome and the end mark always fit
        self.queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(cap + 2)
        self.cap, self.dropped = cap, 0
        self.task = asyncio.create_task(self._run())
        self.greeting_frame: int | None = None

    def listen(self, ev: CallEvent) -> None:
        if ev.kind == "agent_audio_started" and self.greeting_frame is None:
            self.greeting_frame = ev.frame
        event = page_event(ev)
        if event is None:
            return
        if self.queue.qsize() >= self.cap:  # the page is not reading (or is gone): its transcript loses the oldest
            self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait(event)

    async def _run(self) -> None:
        while (event := await self.queue.get()) is not None:
            try:
                await self.transport.send_event(event)
            except Exception as exc:  # the page is gone; the call itself goes on to its end
                log.debug("browser.event_not_sent", error=repr(exc))

    async def finish(self, last: dict[str, Any]) -> None:
        self.queue.put_nowait(last)
        self.queue.put_nowait(None)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.task, 5)


def _describe_booking(b: BookingView, state: ServerState) -> dict[str, Any]:
    agent = state.directory.agent_for(CallStarted(call_id="", caller_id="", called="", tenant_id=b.tenant_id))
    start = b.start_utc if b.start_utc.tzinfo else b.start_utc.replace(tzinfo=timezone.utc)
    local = start.astimezone(ZoneInfo(agent.profile.timezone))
    try:
        service = agent.profile.service(b.service_id).name
    except KeyError:
        service = b.service_id
    when = f"{local:%A, %B} {local.day} at {local.hour % 12 or 12}:{local:%M} {'AM' if local.hour < 12 else 'PM'}"
    return {"service": service, "service_id": b.service_id, "when": when, "start": local.isoformat(),
            "name": b.name, "phone": b.phone, "status": b.status}


async def _ended_event(record: CallRecord, pump: _EventPump, state: ServerState) -> dict[str, Any]:
    bookings: list[dict[str, Any]] = []
    if record.tenant_id and record.call_id:
        try:
            async with asyncio.timeout(LOOKUP_DEADLINE_S):
                made = await bookings_made_by_call(state.db, record.tenant_id, record.call_id)
            bookings = [_describe_booking(b, state) for b in made]
        except Exception:  # slow (TimeoutError) or failed: the outcome still reaches the page without the bookings
            log.exception("browser.booking_lookup_failed", call_id=record.call_id)
    return {
        "type": "ended", "call_id": record.call_id, "outcome": record.outcome, "error": record.error,
        "bookings": bookings, "transcript": record.transcript,
        "greeting_after_ms": pump.greeting_frame * 20 if pump.greeting_frame is not None else None,
        "turn_latency_ms": [round(x.total) for x in record.latencies],
    }


async def run_browser_call(transport: BrowserTransport, state: ServerState) -> CallRecord:
    """One browser call to its end: the call's events go to the page live, its outcome at the end."""
    pump = _EventPump(transport)
    own = CallRecord(call_id="")

    def record_for(started: CallStarted) -> CallRecord:
        record = state.directory.record_for(started) or own
        record.events.subscribe(pump.listen)
        return record

    state.active_calls += 1
    try:
        record = await run_call(transport, state.services, state.directory.resolve, record_for)
        await pump.finish(await _ended_event(record, pump, state))
    finally:
        state.active_calls -= 1
        pump.task.cancel()  # finished already, unless the call failed or was cancelled
        await transport.close()  # the peer connection or socket is freed whatever happened
    log.info("browser.call_done", call_id=record.call_id, outcome=record.outcome, error=record.error)
    return record


def mount_browser(app: FastAPI, state: ServerState, max_calls: int | None = None) -> None:
    """Add the talk page (`/talk`), `POST /webrtc/offer` and `WS /browser/ws` to the server app.

    At most `max_calls` browser calls run at once (default: env SPOTFUNNEL_MAX_BROWSER_CALLS, else 4).
    """
    calls: set[asyncio.Task[CallRecord]] = set()
    seats = BrowserSeats(max_calls or int(os.environ.get(MAX_CALLS_ENV, "") or DEFAULT_MAX_CALLS))
    app.state.browser_seats = seats  # /healthz reports the seats taken
    app.state.browser_calls = calls  # the running WebRTC calls (their tasks), forgotten as each ends
    app.state.browser_limits = BrowserLimits()  # deadlines and caps of each call; set in process, never by a page
    _end_calls_at_shutdown(app, calls)
    app.mount(f"{TALK_PATH}/static", StaticFiles(directory=WEB_DIR), name="talk_static")

    @app.get(TALK_PATH, response_class=HTMLResponse)
    async def talk_page() -> str:
        return (WEB_DIR / "talk.html").read_text(encoding="utf-8")

    @app.get(f"{TALK_PATH}/tenants")
    async def talk_tenants() -> dict[str, Any]:
        return {"tenants": list_tenants(), "ready": state.ready}

    @app.post("/webrtc/offer")
    async def webrtc_offer(offer: WebRtcOffer, request: Request) -> dict[str, str]:
        if not same_origin(request.headers):
            log.warning("browser.cross_origin_refused", origin=request.headers.get("origin"))
            raise HTTPException(status.HTTP_403_FORBIDDEN, "calls are taken only from this server's own talk page")
        tenant = _known_tenant(state, offer.tenant)
        if not seats.take():
            raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS, seats.busy_message)
        try:
            transport, answer = await _answered(offer, tenant, request, _limits(app))
        except BaseException:
            seats.give_back()
            raise
        task = asyncio.create_task(run_browser_call(transport, state), name=f"browser-call-{transport.call_id}")
        calls.add(task)
        task.add_done_callback(_forget(calls, seats))
        return {"sdp": answer.sdp, "type": answer.type, "call_id": transport.call_id}

    async def _answered(offer: WebRtcOffer, tenant: str, request: Request,
                        limits: BrowserLimits) -> tuple[WebRtcTransport, RTCSessionDescription]:
        transport = WebRtcTransport(tenant=tenant, limits=limits)
        same_machine = is_loopback_host(request.client.host if request.client else None)
        try:
            async with asyncio.timeout(ANSWER_DEADLINE_S):
                answer = await transport.answer(RTCSessionDescription(sdp=offer.sdp, type=offer.type),
                                                allow_loopback=same_machine)
        except ValueError as exc:
            await transport.close()
            raise HTTPException(400, f"cannot use this SDP offer: {exc}") from exc
        except BaseException as exc:  # no UDP sockets, ICE set-up failed...: the page falls back to its WebSocket
            await transport.close()
            if not isinstance(exc, Exception):
                raise  # cancelled (the client went away): nothing more to say
            log.exception("browser.webrtc_unavailable")
            raise HTTPException(503, f"WebRTC is not available on this server ({type(exc).__name__}: {exc}); "
                                     "use the WebSocket transport") from exc
        return transport, answer

    @app.websocket("/browser/ws")
    async def browser_ws(websocket: WebSocket) -> None:
        if not same_origin(websocket.headers):
            log.warning("browser.cross_origin_refused", origin=websocket.headers.get("origin"))
            await websocket.close(code=1008)  # before accept: the handshake is refused with 403
            return
        await websocket.accept()
        try:  # the page's URL names the tenant (?tenant=), checked against the server's; nothing else picks it
            tenant = _known_tenant(state, websocket.query_params.get("tenant"))
        except HTTPException as exc:
            await websocket.send_json({"type": "refused", "message": exc.detail})
            await websocket.close(code=1008)
            return
        if not seats.take():
            await websocket.send_json({"type": "refused", "message": seats.busy_message})
            await websocket.close(code=1013)  # try again later
            return
        try:
            await run_browser_call(BrowserWsTransport(websocket, tenant=tenant, limits=_limits(app)), state)
        finally:
            seats.give_back()


def _end_calls_at_shutdown(app: FastAPI, calls: set[asyncio.Task[CallRecord]]) -> None:
    """At shutdown the WebRTC calls (tasks of no request, so the server does not wait for them) are ended:
    their peer connections close and their UDP ports are freed, rather than dying with the event loop."""
    inner = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(a: FastAPI) -> Any:
        async with inner(a) as value:
            yield value
            for task in list(calls):
                task.cancel()
            if calls:
                await asyncio.wait(list(calls), timeout=SHUTDOWN_DEADLINE_S)

    app.router.lifespan_context = lifespan


def _limits(app: FastAPI) -> BrowserLimits:
    limits = app.state.browser_limits
    assert isinstance(limits, BrowserLimits)
    return limits


def _known_tenant(state: ServerState, tenant: str | None) -> str:
    """The tenant to call (the only one when not given); 404 with the known ones otherwise."""
    known = list_tenants()
    if not tenant:
        if len(known) != 1:
            raise HTTPException(400, f"say which tenant to call: 'tenant' is one of {known}")
        return known[0]
    try:
        state.directory.agent_for(CallStarted(call_id="", caller_id="", called="", tenant_id=tenant))
    except CallSetupError as exc:
        raise HTTPException(404, str(exc)) from exc
    return tenant


def _forget(tasks: set[asyncio.Task[CallRecord]], seats: BrowserSeats) -> Callable[[asyncio.Task[CallRecord]], None]:
    def done(task: asyncio.Task[CallRecord]) -> None:
        tasks.discard(task)
        seats.give_back()
        if not task.cancelled() and task.exception() is not None:
            log.error("browser.call_failed", error=repr(task.exception()))

    return done


def announce_when_ready(app: FastAPI, say: Callable[[str], None], host: str, port: int) -> FastAPI:
    """Make the app tell the user where the talk page is once its start-up (model loading) is done."""
    inner = app.router.lifespan_context
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    url = f"http://{shown}:{port}{TALK_PATH}"

    @contextlib.asynccontextmanager
    async def lifespan(a: FastAPI) -> Any:
        async with inner(a) as value:
            say(f"Ready. Talk to the agent from your browser: open\n  {url}\nand press Call "
                "(allow the microphone when asked).")
            yield value

    app.router.lifespan_context = lifespan
    return app
