"""The server on loopback: health, the voice webhook's TwiML, and a Media Stream fed garbage."""
from __future__ import annotations

import asyncio
import json

import httpx
import pytest
import websockets

from spotfunnel.calls.eval_cli import loopback_server

pytestmark = pytest.mark.models


async def test_webhook_health_and_malformed_stream(services) -> None:  # type: ignore[no-untyped-def]
    async with loopback_server(services) as (ws_url, _directory):
        http = ws_url.replace("ws://", "http://")
        async with httpx.AsyncClient(base_url=http) as client:
            health = (await client.get("/healthz")).json()
            assert health["status"] == "ok"
            twiml = (await client.post("/twilio/voice", data={"From": "+14155550111", "To": "+14155550100",
                                                              "CallSid": "CA1"})).text
            assert "<Connect><Stream url=" in twiml and '<Parameter name="stream_token"' in twiml
            assert "+14155550111" not in twiml  # who the caller is stays on the server (the stream's ticket)
            stream_url = twiml.split('<Stream url="', 1)[1].split('"', 1)[0]
            unknown = (await client.post("/twilio/voice", data={"From": "+1", "To": "+19995550000",
                                                               "CallSid": "CA3"})).text
            assert "<Hangup />" in unknown
        async with websockets.connect(stream_url) as ws:
            await ws.send("{not json")
            await ws.send(json.dumps({"event": "media", "media": {"payload": "AAAA"}}))  # before start
            await ws.send(json.dumps({"event": "start", "start": {"streamSid": "MZ1", "callSid": "CA2",
                                      "customParameters": {"tenant": "no-such-tenant"},
                                      "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000,
                                                      "channels": 1}}}))
            # an unknown tenant is refused cleanly: the server closes the stream
            with pytest.raises(websockets.ConnectionClosed):
                for _ in range(50):
                    await asyncio.wait_for(ws.recv(), 5)
        async with httpx.AsyncClient(base_url=http) as client:
            health = (await client.get("/healthz")).json()
            assert health["status"] == "ok" and health["active_calls"] == 0
