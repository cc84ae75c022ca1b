"""TwilioPeer (Twilio's role) against real websockets servers on loopback."""
from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import numpy as np
import pytest
import websockets
from websockets.asyncio.server import ServerConnection

from spotfunnel.audio.g711 import ulaw_encode
from spotfunnel.transports.base import AudioIn, CallStarted, Dtmf, Hangup
from spotfunnel.transports.twilio import TwilioTransport
from spotfunnel.transports.twilio_peer import TwilioPeer

Handler = Callable[[ServerConnection], Awaitable[None]]


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    servers: list[Any] = []

    async def start(handler: Handler) -> str:
        server = await websockets.serve(handler, "127.0.0.1", 0)
        servers.append(server)
        port = server.sockets[0].getsockname()[1]
        return f"ws://127.0.0.1:{port}/stream"

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


def tone16k(n_frames: int, freq: float = 1000.0) -> list[bytes]:
    t = np.arange(320 * n_frames) / 16000
    pcm = (np.sin(2 * np.pi * freq * t) * 10000).astype("<i2").tobytes()
    return [pcm[i : i + 640] for i in range(0, len(pcm), 640)]


def agent_media(n_bytes: int = 160, level: int = 0x80) -> str:
    """A media message from the server: `n_bytes` of mu-law (0x80 is near full-scale positive)."""
    return json.dumps({"event": "media", "streamSid": "MZ", "media": {"payload": base64.b64encode(
        bytes([level]) * n_bytes).decode()}})


def mark(name: str) -> str:
    return json.dumps({"event": "mark", "streamSid": "MZ", "mark": {"name": name}})


async def wait_until(cond: Callable[[], bool], timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.005)


async def test_handshake_and_media_shapes_with_echoing_server(serve: Callable[[Handler], Awaitable[str]]) -> None:
    received: list[dict[str, Any]] = []

    async def echo(ws: ServerConnection) -> None:
        async for raw in ws:
            msg = json.loads(raw)
            received.append(msg)
            if msg["event"] == "media":
                await ws.send(json.dumps({"event": "media", "streamSid": msg["streamSid"],
                                          "media": {"payload": msg["media"]["payload"]}}))

    url = await serve(echo)
    async with TwilioPeer(url, {"tenant": "acme", "caller": "+15551230000"}, lockstep=True) as peer:
        heard = [await peer.exchange(frame) for frame in tone16k(25)]
    assert all(h is not None and len(h) == 640 for h in heard)
    assert max(np.abs(np.frombuffer(heard[-1] or b"", dtype="<i2"))) > 5000  # the echoed tone is heard
    connected, start = received[0], received[1]
    assert connected == {"event": "connected", "protocol": "Call", "version": "1.0.0"}
    assert start["event"] == "start" and start["sequenceNumber"] == "1"
    s = start["start"]
    # exactly the parameters it was given: lockstep is the peer's own mode, never announced to the server
    assert s["customParameters"] == {"tenant": "acme", "caller": "+15551230000"}
    assert s["mediaFormat"] == {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
    assert s["tracks"] == ["inbound"] and s["callSid"].startswith("CA") and s["streamSid"] == start["streamSid"]
    medias = [m for m in received if m["event"] == "media"]
    assert [int(m["sequenceNumber"]) for m in medias] == list(range(2, 27))
    assert [int(m["media"]["chunk"]) for m in medias] == list(range(1, 26))
    assert [int(m["media"]["timestamp"]) for m in medias[:3]] == [0, 20, 40]
    assert all(len(base64.b64decode(m["media"]["payload"])) == 160 for m in medias)
    assert received[-1]["event"] == "stop" and peer.ended_reason == "caller hung up"


async def test_clear_empties_playback_and_returns_pending_marks(serve: Callable[[Handler], Awaitable[str]]) -> None:
    echoes: list[str] = []

    async def agent(ws: ServerConnection) -> None:
        async for raw in ws:
            msg = json.loads(raw)
            if msg["event"] == "start":
                for _ in range(10):
                    await ws.send(agent_media())
                await ws.send(mark("end-of-turn"))
            elif msg["event"] == "dtmf":
                await ws.send(json.dumps({"event": "clear", "streamSid": "MZ"}))
            elif msg["event"] == "mark":
                echoes.append(msg["mark"]["name"])

    async with TwilioPeer(await serve(agent)) as peer:
        await wait_until(lambda: peer.media_received == 10)
        await asyncio.sleep(0.05)  # let the mark arrive too
        assert await peer.exchange(bytes(640)) is not None
        await peer.send_dtmf("1")
        await wait_until(lambda: peer.clears_received == 1)
        assert await peer.exchange(bytes(640)) is None  # nothing left to play
        await wait_until(lambda: echoes == ["end-of-turn"])
    assert peer.marks_echoed == ["end-of-turn"]


async def test_marks_echoed_when_playback_reaches_them(serve: Callable[[Handler], Awaitable[str]]) -> None:
    echoes: list[str] = []

    async def agent(ws: ServerConnection) -> None:
        async for raw in ws:
            msg = json.loads(raw)
            if msg["event"] == "start":
                await ws.send(mark("before-audio"))  # empty buffer: echoed at once
                for item in [agent_media(480), mark("a"), agent_media(), agent_media(), mark("b")]:
                    await ws.send(item)
            elif msg["event"] == "mark":
                echoes.append(msg["mark"]["name"])

    async with TwilioPeer(await serve(agent)) as peer:
        await wait_until(lambda: peer.media_received == 3)
        await asyncio.sleep(0.05)
        assert echoes == ["before-audio"]
        played = [await peer.exchange(bytes(640)) for _ in range(3)]
        assert peer.marks_echoed == ["before-audio", "a"]  # 3 frames of audio precede mark "a"
        played += [await peer.exchange(bytes(640)) for _ in range(2)]
        assert peer.marks_echoed == ["before-audio", "a", "b"]
        assert await peer.exchange(bytes(640)) is None
        await wait_until(lambda: echoes == ["before-audio", "a", "b"])
    assert all(p is not None and len(p) == 640 for p in played)


async def test_lockstep_exchange_waits_for_the_agent_frame(serve: Callable[[Handler], Awaitable[str]]) -> None:
    async def slow_agent(ws: ServerConnection) -> None:
        async for raw in ws:
            if json.loads(raw)["event"] == "media":
                await asyncio.sleep(0.15)  # the agent is thinking
                await ws.send(mark("x"))
                await ws.send(agent_media())

    url = await serve(slow_agent)
    async with TwilioPeer(url, lockstep=True) as peer:
        heard = await peer.exchange(bytes(640))  # the frame the agent sent after thinking: it was waited for
        assert heard is not None and peer.marks_echoed == ["x"]
        assert peer.media_received == 1
    async with TwilioPeer(url) as fast:  # real-time mode: no waiting, so nothing has come back yet
        assert await fast.exchange(bytes(640)) is None


async def test_server_closing_is_the_agent_hanging_up(serve: Callable[[Handler], Awaitable[str]]) -> None:
    async def hang_up_on_first_media(ws: ServerConnection) -> None:
        async for raw in ws:
            if json.loads(raw)["event"] == "media":
                await ws.close()

    peer = TwilioPeer(await serve(hang_up_on_first_media), lockstep=True, lockstep_timeout_s=5)
    await peer.connect()
    assert await asyncio.wait_for(peer.exchange(bytes(640)), 2) is None  # the wait ends on close
    assert await peer.wait_closed(2)
    assert peer.closed and peer.ended_reason == "agent hung up"
    assert await peer.exchange(bytes(640)) is None
    await peer.hangup()  # harmless after close


async def test_lockstep_timeout_is_clear(serve: Callable[[Handler], Awaitable[str]]) -> None:
    async def silent(ws: ServerConnection) -> None:
        async for _ in ws:
            pass

    async with TwilioPeer(await serve(silent), lockstep=True, lockstep_timeout_s=0.1) as peer:
        with pytest.raises(TimeoutError, match="no media within 0.1 s of caller frame 1"):
            await peer.exchange(bytes(640))


async def test_peer_against_twilio_transport_in_lockstep(serve: Callable[[Handler], Awaitable[str]]) -> None:
    """Round trip through the real transport: an echo agent sends one frame back per frame heard."""
    events: list[Any] = []

    class Adapter:
        def __init__(self, ws: ServerConnection) -> None:
            self.ws = ws

        async def receive_text(self) -> str:
            return str(await self.ws.recv())

        async def send_text(self, data: str) -> None:
            await self.ws.send(data)

        async def close(self) -> None:
            await self.ws.close()

    async def agent(ws: ServerConnection) -> None:
        transport = TwilioTransport(Adapter(ws), lockstep=True)  # as eval's harness sets it, in process
        while True:
            event = await transport.receive()
            events.append(event)
            if isinstance(event, AudioIn):
                await transport.send_audio(event.pcm)
            if isinstance(event, Hangup):
                return

    frames = tone16k(50)
    async with TwilioPeer(await serve(agent), {"tenant": "acme", "from": "+15550001"}, lockstep=True) as peer:
        heard = [await peer.exchange(f) for f in frames]
        await peer.send_dtmf("7")
    await wait_until(lambda: bool(events) and isinstance(events[-1], Hangup))
    # the stream's parameters name no one: without a server-side binding the call is anonymous
    assert isinstance(events[0], CallStarted) and events[0].tenant_id is None and events[0].caller_id == ""
    assert sum(isinstance(e, AudioIn) for e in events) >= 50 and Dtmf("7") in events
    assert all(h is not None for h in heard)
    got = np.frombuffer(b"".join(h or b"" for h in heard), dtype="<i2").astype(np.float64)
    onset = int(np.argmax(np.abs(got) > 3000))
    assert 0 < onset < 16 * 120  # under 120 ms of round-trip codec and resampler delay
    assert tone_snr_db(got[onset + 800 :], 16000, 1000.0) > 20  # two mu-law hops, four resamplings


def tone_snr_db(x: np.ndarray, rate: int, freq: float) -> float:
    t = np.arange(len(x)) / rate
    basis = np.stack([np.sin(2 * np.pi * freq * t), np.cos(2 * np.pi * freq * t), np.ones_like(t)], axis=1)
    coef, *_ = np.linalg.lstsq(basis, x, rcond=None)
    fit = basis @ coef
    return float(10 * np.log10(np.sum(fit**2) / np.sum((x - fit) ** 2)))
