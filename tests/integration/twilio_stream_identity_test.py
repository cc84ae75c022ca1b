"""Who a Twilio stream is, on a real server over real sockets: only a call our webhook answered, once, as we recorded it."""
from __future__ import annotations

import asyncio
import base64
import json
import re
import uuid
from typing import Any

import httpx
import pytest
import websockets
from structlog.testing import capture_logs
from twilio.request_validator import RequestValidator

from spotfunnel.ops.capacity import MAX_CALLS_ENV
from spotfunnel.transports.twilio_peer import TwilioPeer, answer_like_twilio

from twilio_support import edge_app, running_app

TOKEN = "test-auth-token"
SIGN = RequestValidator(TOKEN).compute_signature
MULAW_SILENCE = base64.b64encode(b"\xff" * 160).decode()


def _form(call_sid: str, caller: str = "+14155550111") -> dict[str, str]:
    return {"CallSid": call_sid, "From": caller, "To": "+14155550100", "Direction": "inbound"}


async def _answer(base: str, form: dict[str, str]) -> httpx.Response:
    url = f"{base}/twilio/voice"
    async with httpx.AsyncClient() as http:
        return await http.post(url, data=form, headers={"X-Twilio-Signature": SIGN(url, form)})


def _stream(twiml: str) -> tuple[str, dict[str, str]]:
    url = re.search(r'<Stream url="([^"]+)"', twiml)
    assert url, twiml
    return url.group(1), dict(re.findall(r'<Parameter name="([^"]+)" value="([^"]*)" />', twiml))


def _start(call_sid: str, params: dict[str, str]) -> str:
    return json.dumps({"event": "start", "sequenceNumber": "1", "streamSid": "MZ" + uuid.uuid4().hex, "start": {
        "streamSid": "MZ1", "callSid": call_sid, "customParameters": params, "tracks": ["inbound"],
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}})


async def _closed(ws: Any) -> tuple[int, str]:
    """Read until the server closes; its close code and reason."""
    with pytest.raises(websockets.ConnectionClosed) as closed:
        for _ in range(1000):
            await asyncio.wait_for(ws.recv(), 10)
    frame = closed.value.rcvd
    assert frame is not None
    return frame.code, frame.reason


async def test_each_answered_call_gets_its_own_signed_single_use_stream() -> None:
    async with running_app(edge_app(TOKEN)) as base:
        first, second = [_stream((await _answer(base, _form(f"CA{i}"))).text) for i in (1, 2)]
        assert first[0] != second[0]  # the token is in the URL Twilio signs: a new signature per call
        url, params = first
        assert url.startswith("ws://127.0.0.1") and params == {"stream_token": url.rsplit("/", 1)[1]}
        header = {"X-Twilio-Signature": SIGN(url, {})}
        async with websockets.connect(url, additional_headers=header):  # Twilio's stream: its ticket is claimed
            async with websockets.connect(url, additional_headers=header) as replay:  # the captured URL + header
                code, reason = await _closed(replay)
        assert code == 1008 and "unknown, used or expired stream token" in reason


@pytest.mark.parametrize("call_sid, params, why", [
    ("CA1", {"stream_token": "forged"}, "stream_token parameter does not match"),
    ("CA-other", None, "is not the call this stream was answered for"),
])
async def test_a_start_that_does_not_match_its_ticket_is_refused(call_sid: str, params: dict[str, str] | None,
                                                                 why: str) -> None:
    app = edge_app("")
    async with running_app(app) as base:
        url, issued = _stream((await _answer(base, _form("CA1"))).text)
        with capture_logs() as logs:
            async with websockets.connect(url) as ws:
                await ws.send(_start(call_sid, params if params is not None else issued))
                await ws.send(json.dumps({"event": "media", "media": {"payload": MULAW_SILENCE}}))
                await _closed(ws)
    [ended] = [e for e in logs if e["event"] == "twilio.stream.ended"]
    assert why in ended["reason"] and ended["outcome"] is None and ended["frames_in"] == 0
    assert app.state.spotfunnel.active_calls == 0


async def test_streams_without_a_token_or_an_unknown_one_are_refused() -> None:
    async with running_app(edge_app("")) as base:
        ws_base = base.replace("http", "ws")
        async with websockets.connect(f"{ws_base}/twilio/media") as ws:
            assert (await _closed(ws))[1].startswith("a media stream needs the stream URL")
        async with websockets.connect(f"{ws_base}/twilio/media/{'x' * 32}") as ws:
            assert (await _closed(ws))[0] == 1008


async def test_an_unclaimed_ticket_expires() -> None:
    app = edge_app("")
    app.state.spotfunnel.directory.tickets.ttl_s = 0.0  # Twilio opens its stream within a second or two
    async with running_app(app) as base:
        url, params = _stream((await _answer(base, _form("CA1"))).text)
        async with websockets.connect(url) as ws:
            assert (await _closed(ws))[0] == 1008


async def test_outbound_direction_needs_a_call_we_placed() -> None:
    async with running_app(edge_app("")) as base:
        form = {**_form("CA9"), "Direction": "outbound-api"}
        async with httpx.AsyncClient() as http:
            forged = await http.post(f"{base}/twilio/voice", data=form)
            unknown = await http.post(f"{base}/twilio/voice?outbound=guess", data=form)
    for response in (forged, unknown):
        assert "<Stream" not in response.text and "<Hangup />" in response.text


async def test_at_capacity_the_webhook_says_so_and_a_late_stream_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MAX_CALLS_ENV, "2")
    app = edge_app("")
    state = app.state.spotfunnel
    async with running_app(app) as base:
        url, _params = _stream((await _answer(base, _form("CA1"))).text)  # one seat reserved by its ticket
        state.active_calls = 1  # a call on another edge (SIP, browser): the limit is process-wide
        busy = (await _answer(base, _form("CA2"))).text
        assert "<Stream" not in busy and "lines are busy" in busy and "<Hangup />" in busy
        state.active_calls = 2  # both seats taken before the first stream opened
        async with websockets.connect(url) as ws:
            code, reason = await _closed(ws)
        state.active_calls = 0
    assert code == 1013 and "at capacity (2 active of 2 calls" in reason


async def test_a_socket_that_never_starts_is_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    from spotfunnel.api import twilio_media

    monkeypatch.setattr(twilio_media, "STREAM_LIMITS", twilio_media.StreamLimits(start_timeout_s=0.2))
    app = edge_app("")
    async with running_app(app) as base:
        url, _params = _stream((await _answer(base, _form("CA1"))).text)
        with capture_logs() as logs:
            async with websockets.connect(url) as ws:
                await ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
                await _closed(ws)
    [ended] = [e for e in logs if e["event"] == "twilio.stream.ended"]
    assert ended["reason"] == "rejected: no valid start message within 0.2 s"
    assert app.state.spotfunnel.active_calls == 0


@pytest.mark.models
async def test_a_junk_flood_is_counted_and_the_socket_closed(services) -> None:  # type: ignore[no-untyped-def]
    from spotfunnel.calls.eval_cli import loopback_server

    async with loopback_server(services) as (ws_url, _directory):
        url, params = _stream((await _answer(ws_url.replace("ws", "http"), _form("CA1"))).text)
        with capture_logs() as logs:
            async with websockets.connect(url) as ws:
                await ws.send(_start("CA1", params))
                junk = ["{not json", json.dumps({"event": "party"}),
                        json.dumps({"event": "media", "media": {"payload": "***"}})]
                with pytest.raises(websockets.ConnectionClosed):
                    for i in range(10_000):  # the server gives up long before: this never runs to the end
                        await ws.send(junk[i % 3])
                        if i % 50 == 0:
                            await asyncio.sleep(0)
                    await asyncio.wait_for(ws.recv(), 10)
    [ended] = [e for e in logs if e["event"] == "twilio.stream.ended"]
    assert ended["reason"].endswith("malformed messages; the stream was closed") and ended["junk"] == 50
    issues = [e for e in logs if e["event"] == "transport.protocol_issue"]
    assert len(issues) <= 5  # rate-limited: the log does not grow with the flood


@pytest.mark.models
async def test_the_caller_is_who_the_webhook_answered_not_who_the_stream_claims(services) -> None:  # type: ignore[no-untyped-def]
    from spotfunnel.calls.eval_cli import loopback_server

    async with loopback_server(services) as (ws_url, _directory):
        peer = await answer_like_twilio(ws_url.replace("ws", "http"), caller="+14155550111", called="+14155550100")
        peer.custom_parameters.update(caller="+19995550000", tenant="someone-else", lockstep="1", setup="x",
                                      direction="outbound")
        with capture_logs() as logs:
            async with peer:
                await _talk(peer, frames=20)
            await _ended(logs)
    [ended] = [e for e in logs if e["event"] == "twilio.stream.ended"]
    assert (ended["tenant"], ended["caller_last4"], ended["lockstep"]) == ("maple-street-salon", "0111", False)


@pytest.mark.models
async def test_media_faster_than_real_time_is_paced_and_the_excess_dropped(services) -> None:  # type: ignore[no-untyped-def]
    from spotfunnel.calls.eval_cli import loopback_server

    async with loopback_server(services) as (ws_url, _directory):
        peer = await answer_like_twilio(ws_url.replace("ws", "http"), caller="+14155550111", called="+14155550100")
        with capture_logs() as logs:
            async with peer:
                await _talk(peer, frames=1500)  # 30 s of audio sent as fast as the socket takes it
            await _ended(logs)
    [ended] = [e for e in logs if e["event"] == "twilio.stream.ended"]
    # every media message read is either played into the call at real-time pace or dropped and counted
    # (what was still in flight when the caller closed the socket is never read; the resampler's
    # flushed tail adds up to two frames at the end)
    accounted = ended["frames_in"] + ended["dropped_in"]
    assert ended["media_in"] <= accounted <= ended["media_in"] + 2 and ended["media_in"] > 1000, str(ended)
    assert ended["dropped_in"] > 1000  # the call did not run 30 s of audio in the second the burst took
    assert peer.media_received <= ended["frames_in"]  # the agent's audio kept the caller's (paced) time


async def _talk(peer: TwilioPeer, frames: int) -> None:
    for _ in range(frames):
        await peer.exchange(bytes(640))


async def _ended(logs: list[dict[str, Any]]) -> None:
    for _ in range(500):
        if any(e["event"] == "twilio.stream.ended" for e in logs):
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the call did not end")
