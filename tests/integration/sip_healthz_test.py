"""/healthz reports each edge: a dead SIP socket makes the server 'degraded' (503) instead of 'ok'."""
from __future__ import annotations

import asyncio
from typing import Any, cast

import httpx

from spotfunnel.api.app import create_app
from spotfunnel.api.sip_edge import SipEdge
from spotfunnel.store.db import Database


async def test_healthz_reports_the_sip_edge_and_sees_it_die() -> None:
    app = create_app(Database("sqlite://"), services=cast(Any, object()), run_worker=False, twilio_auth_token="",
                     twilio_control=None)
    state = app.state.spotfunnel
    state.ready = True  # the models are not needed to answer /healthz; the lifespan that loads them is not run
    edge = SipEdge(state.services, state.directory, port=0, state=state)
    await edge.start()
    app.state.sip_edge = edge  # what `serve --sip-port` does
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            healthy = await client.get("/healthz")
            assert healthy.status_code == 200 and healthy.json()["status"] == "ok"
            edges = healthy.json()["edges"]
            assert edges["sip"]["listening"] and edges["sip"]["answering"] and edges["sip"]["active_calls"] == 0
            assert edges["twilio_media"]["active_streams"] == 0 and edges["browser"]["active_calls"] == 0

            # what a fatal send error does to a UDP transport: asyncio closes it under the server
            edge.server._socket._transport._fatal_error(OverflowError("port must be 0-65535"))  # type: ignore[union-attr]
            await asyncio.sleep(0)  # asyncio reports the loss on its next turn
            dead = await client.get("/healthz")
        assert dead.status_code == 503
        body = dead.json()
        assert body["status"] == "degraded" and body["down"] == ["sip"]
        assert body["edges"]["sip"]["listening"] is False and "OverflowError" in body["edges"]["sip"]["socket_error"]
    finally:
        await edge.stop()
