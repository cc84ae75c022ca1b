"""The transports measured by transport_overhead.py: each one's codec path and its loopback edge hop."""
from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from dataclasses import dataclass
from typing import Any, AsyncIterator, Awaitable, Callable, Coroutine

import uvicorn
import websockets
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

from spotfunnel.audio.g711 import ulaw_encode
from spotfunnel.audio.resample import SteadyResampler
from spotfunnel.transports.base import AudioIn, Hangup, InboundEvent, Transport
from spotfunnel.transports.browser_ws import BrowserWsTransport
from spotfunnel.transports.local import LocalTransport
from spotfunnel.transports.sip.media import SipMediaCodec
from spotfunnel.transports.sip.peer import SipPeer
from spotfunnel.transports.sip.sdp import AgreedMedia
from spotfunnel.transports.sip.server import SipServer
from spotfunnel.transports.twilio import TwilioTransport
from spotfunnel.transports.webrtc_audio import OpusRoundTrip

FrameFn = Callable[[int], object]


@dataclass(frozen=True)
class CodecPath:
    name: str
    wire: str
    build: Callable[[list[bytes]], tuple[FrameFn, FrameFn]]  # frames -> (inbound(i), outbound(i))


@dataclass(frozen=True)
class EdgeHop:
    name: str
    measure: Callable[[list[bytes]], Awaitable[tuple[list[float], list[float]]]]  # -> (inbound ms, outbound ms)


def run_sync(coro: Coroutine[Any, Any, Any]) -> Any:
    """Drive a coroutine that never really suspends (a send into an in-memory sink) without a loop."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    coro.close()
    raise RuntimeError("coroutine suspended; it needs an event loop")


class _MemorySocket:
    """Collects what a transport sends; gives it nothing to receive."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    async def receive_text(self) -> str:
        raise ConnectionError("memory socket: nothing to receive")

    async def send_text(self, data: str) -> None:
        self.sent.append(data)


def twilio_start(stream_sid: str = "MZbench") -> str:
    return json.dumps({"event": "start", "sequenceNumber": "1", "start": {
        "streamSid": stream_sid, "callSid": "CAbench", "customParameters": {},
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}})


def twilio_media_messages(frames: list[bytes], stream_sid: str = "MZbench") -> list[str]:
    """The Media Streams messages Twilio would send for these 16 kHz frames (mu-law 8 kHz)."""
    down = SteadyResampler(16_000, 8000)
    out = []
    for i, frame in enumerate(frames):
        payload = base64.b64encode(ulaw_encode(down.process(frame))).decode("ascii")
        out.append(json.dumps({"event": "media", "sequenceNumber": str(i + 2), "streamSid": stream_sid,
                               "media": {"track": "inbound", "chunk": str(i + 1), "timestamp": str(20 * i),
                                         "payload": payload}}))
    return out


def _socket_codec(transport: Any, sock: _MemorySocket, feed: Callable[[int], None],
                  frames: list[bytes]) -> tuple[FrameFn, FrameFn]:
    """Inbound: `feed(i)` hands the transport one wire message, whose parsed items are then taken
    off its queue directly (no socket); outbound: one `send_audio` into the memory socket."""
    pending = transport._pending
    pending.clear()

    def inbound(i: int) -> object:
        feed(i)
        while pending:
            pending.popleft()
        return None

    def outbound(i: int) -> object:
        run_sync(transport.send_audio(frames[i % len(frames)]))
        sock.sent.clear()
        return None

    return inbound, outbound


def _twilio_codec(frames: list[bytes]) -> tuple[FrameFn, FrameFn]:
    sock = _MemorySocket()
    transport = TwilioTransport(sock)
    transport.handle_text(twilio_start())
    messages = twilio_media_messages(frames)
    return _socket_codec(transport, sock, lambda i: transport.handle_text(messages[i % len(messages)]), frames)


def _local_codec(frames: list[bytes]) -> tuple[FrameFn, FrameFn]:
    transport = LocalTransport(lockstep=False)

    def inbound(i: int) -> object:
        transport.inbound.put_nowait(AudioIn(frames[i % len(frames)]))
        return transport.inbound.get_nowait()

    def outbound(i: int) -> object:
        run_sync(transport.send_audio(frames[i % len(frames)]))
        return transport.outbound.get_nowait()

    return inbound, outbound


# ------------------------------------------------------------------ edge hops
class EchoAgent:
    """The voice side of a benchmark call: one outbound frame for each inbound frame, stamped."""

    def __init__(self) -> None:
        self.arrived: list[float] = []
        self.sent: list[float] = []

    async def serve(self, transport: Transport) -> None:
        while True:
            item: InboundEvent = await transport.receive()
            if isinstance(item, Hangup):
                return
            if isinstance(item, AudioIn):
                self.arrived.append(time.monotonic())
                await transport.send_audio(item.pcm)
                self.sent.append(time.monotonic())


async def paced(n: int, send: Callable[[int], Awaitable[None]], stamps: list[float]) -> None:
    """Send n frames on the real 20 ms clock, stamping each once it is on the wire (the far end's own
    send cost, e.g. a websocket client's masking, is not the edge's)."""
    start = time.monotonic()
    for i in range(n):
        delay = start + i * 0.02 - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        await send(i)
        stamps.append(time.monotonic())


def hop_ms(sent: list[float], arrived: list[float]) -> list[float]:
    return [(b - a) * 1000 for a, b in zip(sent, arrived)]


async def _local_hop(frames: list[bytes]) -> tuple[list[float], list[float]]:
    transport = LocalTransport(lockstep=False)
    agent = EchoAgent()
    serving = asyncio.create_task(agent.serve(transport))
    sent: list[float] = []
    heard: list[float] = []

    async def read() -> None:
        while len(heard) < len(frames):
            await transport.outbound.get()
            heard.append(time.monotonic())

    reader = asyncio.create_task(read())

    async def send(i: int) -> None:
        transport.inbound.put_nowait(AudioIn(frames[i]))

    await paced(len(frames), send, sent)
    await asyncio.wait_for(reader, 5)
    transport.inbound.put_nowait(Hangup())
    await serving
    return hop_ms(sent, agent.arrived), hop_ms(agent.sent, heard)


@contextlib.asynccontextmanager
async def loopback_ws_server(route: str, handler: Callable[[WebSocket], Awaitable[None]]) -> AsyncIterator[str]:
    """A Starlette websocket route on 127.0.0.1 (random port) served by uvicorn in this loop."""
    app = Starlette(routes=[WebSocketRoute(route, handler)])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"ws://127.0.0.1:{port}{route}"
    finally:
        server.should_exit = True
        await task


async def _twilio_hop(frames: list[bytes]) -> tuple[list[float], list[float]]:
    agent = EchoAgent()

    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        await agent.serve(TwilioTransport(ws))

    messages = twilio_media_messages(frames)
    sent: list[float] = []
    heard: list[float] = []
    async with loopback_ws_server("/twilio/media", handler) as url:
        async with websockets.connect(url) as ws:
            await ws.send(twilio_start())

            async def read() -> None:
                while len(heard) < len(frames):
                    if json.loads(await ws.recv()).get("event") == "media":
                        heard.append(time.monotonic())

            reader = asyncio.create_task(read())
            await paced(len(frames), lambda i: ws.send(messages[i]), sent)
            await asyncio.wait_for(reader, 5)
            await ws.send(json.dumps({"event": "stop", "sequenceNumber": str(len(frames) + 2)}))
    return hop_ms(sent, agent.arrived), hop_ms(agent.sent, heard)


def _sip_media(codec: str) -> AgreedMedia:
    return AgreedMedia(codec=codec, payload_type=0 if codec == "PCMU" else 8, ptime=20, dtmf_payload_type=101,
                       remote_host="127.0.0.1", remote_port=40000)


def _sip_codec(codec: str) -> Callable[[list[bytes]], tuple[FrameFn, FrameFn]]:
    def build(frames: list[bytes]) -> tuple[FrameFn, FrameFn]:
        caller = SipMediaCodec(_sip_media(codec), realtime=False)
        packets = [p for i, f in enumerate(frames) for p in caller.encode_frame(f, slot=i)]
        server_in = SipMediaCodec(_sip_media(codec), realtime=False)
        server_out = SipMediaCodec(_sip_media(codec), realtime=False)

        def inbound(i: int) -> object:
            return server_in.decode_packet(packets[i % len(packets)])

        def outbound(i: int) -> object:
            return server_out.encode_frame(frames[i % len(frames)], slot=i)

        return inbound, outbound

    return build


async def _sip_hop(frames: list[bytes]) -> tuple[list[float], list[float]]:
    agent = EchoAgent()
    server = SipServer(agent.serve, host="127.0.0.1", port=0)
    await server.start()
    sent: list[float] = []
    try:
        async with SipPeer(server.address, called="+14155550100") as peer:
            await paced(len(frames), lambda i: peer.exchange(frames[i]), sent)
            deadline = time.monotonic() + 2
            while len(peer.received) < len(frames) and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            heard = [r.arrived for r in peer.received]
    finally:
        await server.stop()
    return hop_ms(sent, agent.arrived), hop_ms(agent.sent, heard)


class _MemoryBrowserSocket(_MemorySocket):
    async def send_bytes(self, data: bytes) -> None:
        self.sent.append("")

    async def receive(self) -> dict[str, Any]:
        raise ConnectionError("memory socket: nothing to receive")

    async def close(self, code: int = 1000) -> None:
        return None


def _browser_ws_codec(frames: list[bytes]) -> tuple[FrameFn, FrameFn]:
    sock = _MemoryBrowserSocket()
    transport = BrowserWsTransport(sock)
    transport.handle_text(json.dumps({"type": "start", "tenant": "maple-street-salon"}))
    return _socket_codec(transport, sock, lambda i: transport.handle_bytes(frames[i % len(frames)]), frames)


def _webrtc_codec(frames: list[bytes]) -> tuple[FrameFn, FrameFn]:
    browser, server_in, server_out = OpusRoundTrip(), OpusRoundTrip(), OpusRoundTrip()
    packets = [p for f in frames for p in browser.send(f)]

    def inbound(i: int) -> object:
        return server_in.receive(packets[i % len(packets)])

    def outbound(i: int) -> object:
        return server_out.send(frames[i % len(frames)])

    return inbound, outbound


async def _browser_ws_hop(frames: list[bytes]) -> tuple[list[float], list[float]]:
    agent = EchoAgent()

    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        await agent.serve(BrowserWsTransport(ws))

    sent: list[float] = []
    heard: list[float] = []
    async with loopback_ws_server("/browser/ws", handler) as url:
        async with websockets.connect(url) as ws:
            await ws.send(json.dumps({"type": "start", "tenant": "maple-street-salon"}))

            async def read() -> None:
                while len(heard) < len(frames):
                    if isinstance(await ws.recv(), bytes):
                        heard.append(time.monotonic())

            reader = asyncio.create_task(read())
            await paced(len(frames), lambda i: ws.send(frames[i]), sent)
            await asyncio.wait_for(reader, 5)
            await ws.send(json.dumps({"type": "hangup"}))
    return hop_ms(sent, agent.arrived), hop_ms(agent.sent, heard)


CODEC_PATHS: list[CodecPath] = [
    CodecPath("local", "PCM16 16 kHz, in process", _local_codec),
    CodecPath("twilio", "JSON + base64 mu-law 8 kHz", _twilio_codec),
    CodecPath("sip pcmu", "RTP G.711 mu-law 8 kHz", _sip_codec("PCMU")),
    CodecPath("sip pcma", "RTP G.711 A-law 8 kHz", _sip_codec("PCMA")),
    CodecPath("browser ws", "PCM16 16 kHz binary frames", _browser_ws_codec),
    CodecPath("webrtc", "Opus 48 kHz (aiortc codec)", _webrtc_codec),
]
EDGE_HOPS: list[EdgeHop] = [
    EdgeHop("local", _local_hop),
    EdgeHop("twilio ws", _twilio_hop),
    EdgeHop("sip rtp", _sip_hop),
    EdgeHop("browser ws", _browser_ws_hop),
]
