"""Callers who hang up at once, on a real server over a real socket: the call ends, frees its seat and is reported."""
from __future__ import annotations

import contextlib
import uuid
from typing import Any, AsyncIterator

import pytest

from spotfunnel.api.app import create_app
from spotfunnel.api.loopback import serve_on_loopback
from spotfunnel.api.sip_edge import SipEdge
from spotfunnel.store.calls import CallView, call_by_provider_id
from spotfunnel.store.db import Database
from spotfunnel.store.queries import call_report
from spotfunnel.transports.sip.peer import SipPeer

from call_support import CALLER, SALON, SALON_NUMBER, await_idle, poll, ring_like_twilio

pytestmark = pytest.mark.models


@contextlib.asynccontextmanager
async def server(services: Any, tmp_path: Any, sip: bool = False) -> AsyncIterator[tuple[str, Any, str | None]]:
    """The real app with its outbox worker over a file database; optionally its SIP edge. Yields (http, state, sip url)."""
    db = Database(f"sqlite:///{tmp_path / 'server.db'}")
    app = create_app(db, services=services, run_worker=True, twilio_auth_token="", twilio_control=None)
    state = app.state.spotfunnel
    async with serve_on_loopback(app) as port:
        edge = None
        if sip:
            edge = SipEdge(services, state.directory, host="127.0.0.1", port=0, state=state)
            await edge.start()
        try:
            yield f"http://127.0.0.1:{port}", state, edge.url if edge else None
        finally:
            if edge is not None:
                await edge.stop()


async def assert_ended_and_reported(http: str, db: Database, provider_id: str) -> CallView:
    """The seat is free, the call's row is closed with an outcome, and its report is written."""
    await await_idle(http)

    async def closed() -> list[CallView]:
        return [c for c in await call_by_provider_id(db, SALON, provider_id) if c.status != "open"]

    [call] = await poll(closed, "the call's row closed")
    assert call.status == "ended" and call.outcome == "abandoned"
    uuid.UUID(call.call_id)  # our own id, not the provider's
    assert call.provider_call_id == provider_id

    async def reported() -> Any:
        return await call_report(db, call.call_id)

    report = await poll(reported, "the call's report written by the outbox worker")
    assert report.outcome == "abandoned" and report.tenant_id == SALON
    return call


async def test_twilio_start_then_stop_ends_the_call(services, tmp_path) -> None:  # type: ignore[no-untyped-def]
    async with server(services, tmp_path) as (http, state, _sip):
        peer = await ring_like_twilio(http)
        await peer.connect()  # connected + start
        await peer.hangup()  # stop at once, before the greeting could play
        await assert_ended_and_reported(http, state.db, peer.call_sid)


async def test_twilio_start_then_socket_close_ends_the_call(services, tmp_path) -> None:  # type: ignore[no-untyped-def]
    async with server(services, tmp_path) as (http, state, _sip):
        peer = await ring_like_twilio(http)
        await peer.connect()
        await peer._ws.close()  # the socket drops without a stop message
        await assert_ended_and_reported(http, state.db, peer.call_sid)


async def test_sip_bye_right_after_the_answer_ends_the_call(services, tmp_path) -> None:  # type: ignore[no-untyped-def]
    async with server(services, tmp_path, sip=True) as (http, state, sip_url):
        peer = SipPeer(sip_url, called=SALON_NUMBER, caller=CALLER)
        await peer.connect()  # INVITE, 200 OK, ACK
        await peer.hangup()  # BYE straight after the answer
        await assert_ended_and_reported(http, state.db, peer.call_id)


async def test_a_reused_sip_call_id_gets_two_calls_and_two_reports(services, tmp_path) -> None:  # type: ignore[no-untyped-def]
    async with server(services, tmp_path, sip=True) as (http, state, sip_url):
        reused = f"{uuid.uuid4().hex}@198.51.100.7"
        calls = []
        for _ in range(2):
            peer = SipPeer(sip_url, called=SALON_NUMBER, caller=CALLER)
            peer.call_id = reused  # a caller picks its Call-ID, and may pick the same one again
            await peer.connect()
            await peer.hangup()
            await await_idle(http)

        async def both_closed() -> list[CallView]:
            rows = await call_by_provider_id(state.db, SALON, reused)
            return rows if len(rows) == 2 and all(r.status != "open" for r in rows) else []

        calls = await poll(both_closed, "two closed call rows under one SIP Call-ID")
        assert calls[0].call_id != calls[1].call_id

        async def reports() -> list[Any]:
            found = [await call_report(state.db, c.call_id) for c in calls]
            return found if all(found) else []

        assert len(await poll(reports, "a report for each call")) == 2
