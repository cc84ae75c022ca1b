"""Twilio Media Streams attacks (benchmarks/abuse.py): instant hang-ups, silent or huge sockets, capacity, junk, pace."""
from __future__ import annotations

import asyncio
import secrets
import time
import uuid
import xml.etree.ElementTree as ET
from typing import Any

import httpx
import websockets

from abuse_server import SALON_NUMBER, Attack, Outcome, ServerUnderTest

from spotfunnel.transports.twilio_guard import StreamLimits
from spotfunnel.transports.twilio_peer import TwilioPeer

__all__ = ["SignedPeer", "ring", "TWILIO_ATTACKS"]

FRAME = bytes(640)  # 20 ms of PCM16 16 kHz silence: what a caller's quiet line sends
CONNECT_TIMEOUT_S = 5.0
LIMITS = StreamLimits()


class SignedPeer(TwilioPeer):
    """A TwilioPeer whose upgrade is signed over its own wss URL (as Twilio signs it), able to misbehave."""

    def __init__(self, url: str, params: dict[str, str], signature: str, **kwargs: Any) -> None:
        super().__init__(url, params, **kwargs)
        self.signature = signature

    async def connect(self, send_start: bool = True) -> None:
        self._ws = await websockets.connect(self.url, open_timeout=CONNECT_TIMEOUT_S, close_timeout=2,
                                            additional_headers={"X-Twilio-Signature": self.signature})
        if send_start:
            await self._send({"event": "connected", "protocol": "Call", "version": "1.0.0"})
            await self._send(self._start_message())
        self._reader = asyncio.create_task(self._read_loop(), name="abuse-peer-reader")

    @property
    def close_code(self) -> int | None:
        return getattr(self._ws, "close_code", None)

    async def send_raw(self, text: str) -> bool:
        """Put any text on the socket; False once it is closed."""
        if self._ws is None or self.closed:
            return False
        try:
            await asyncio.wait_for(self._ws.send(text), CONNECT_TIMEOUT_S)
        except (websockets.ConnectionClosed, asyncio.TimeoutError):
            self._mark_closed("closed while sending")
            return False
        return True

    async def drop(self) -> None:
        """The caller's line goes away: the socket closes without a `stop` message."""
        if self._ws is not None:
            await asyncio.wait_for(self._ws.close(), CONNECT_TIMEOUT_S)
        self._mark_closed("socket closed without stop")
        if self._reader is not None:
            await asyncio.wait_for(asyncio.gather(self._reader, return_exceptions=True), CONNECT_TIMEOUT_S)

    async def hang_up(self) -> None:
        """`stop` and close, bounded."""
        try:
            await asyncio.wait_for(self.hangup(), CONNECT_TIMEOUT_S)
        except (asyncio.TimeoutError, OSError, websockets.WebSocketException):
            self._mark_closed("hang-up timed out")


async def post_voice(server: ServerUnderTest, http: httpx.AsyncClient, form: dict[str, str]) -> httpx.Response:
    """POST /twilio/voice signed exactly as Twilio signs it."""
    url = f"{server.base}/twilio/voice"
    return await http.post(url, data=form, headers={"X-Twilio-Signature": server.sign(url, form)})


def voice_form(caller: str, called: str = SALON_NUMBER) -> dict[str, str]:
    return {"CallSid": "CA" + uuid.uuid4().hex, "AccountSid": "AC" + uuid.uuid4().hex, "From": caller,
            "To": called, "Direction": "inbound", "CallStatus": "ringing"}


def stream_in(twiml: str) -> tuple[str, dict[str, str]] | None:
    """The <Connect><Stream> URL and <Parameter>s of a TwiML answer; None when it connects no stream."""
    try:
        stream = ET.fromstring(twiml).find("./Connect/Stream")
    except ET.ParseError:
        return None
    if stream is None or not stream.get("url"):
        return None
    return str(stream.get("url")), {p.get("name", ""): p.get("value", "") for p in stream.findall("Parameter")}


async def ring(server: ServerUnderTest, http: httpx.AsyncClient, caller: str | None = None,
               start_caller: str | None = None, extra_params: dict[str, str] | None = None) -> SignedPeer | None:
    """A call as Twilio places it (signed webhook, then a peer for its stream); None when refused (busy)."""
    caller = caller or f"+1415555{secrets.randbelow(10_000):04d}"
    form = voice_form(caller)
    response = await post_voice(server, http, form)
    found = stream_in(response.text) if response.status_code == 200 else None
    if found is None:
        return None
    url, params = found
    return SignedPeer(url, {**params, **(extra_params or {})}, server.sign(url, {}), caller=start_caller or caller,
                      called=SALON_NUMBER, call_sid=form["CallSid"])


async def ring_patiently(server: ServerUnderTest, http: httpx.AsyncClient,
                         patience_s: float = 2.0) -> SignedPeer | None:
    """`ring`, retried for `patience_s` while busy: a call that just hung up may take a moment to free its seat."""
    deadline = time.monotonic() + patience_s
    while True:
        peer = await ring(server, http)
        if peer is not None or time.monotonic() >= deadline:
            return peer
        await asyncio.sleep(0.1)


async def one_call(attack: Attack, out: Outcome) -> SignedPeer | None:
    """One connected, started call to attack; None (a breach noted) when the server has no room for it."""
    async with httpx.AsyncClient(timeout=CONNECT_TIMEOUT_S) as http:
        peer = await ring_patiently(attack.server, http)
    if peer is None:
        out.breaches.append("no call to attack: the webhook refused it as busy")
        return None
    await peer.connect()
    return peer


async def play(peer: SignedPeer, seconds: float) -> None:
    """Send caller silence in real time for `seconds` (stops early when the line closes)."""
    loop = asyncio.get_running_loop()
    due = loop.time()
    for _ in range(int(seconds / 0.02)):
        if peer.closed:
            return
        await asyncio.wait_for(peer.exchange(FRAME), CONNECT_TIMEOUT_S)
        due += 0.02
        await asyncio.sleep(max(0.0, due - loop.time()))


async def immediate_hangups(attack: Attack) -> Outcome:
    """Issue 8 #1 (Twilio): `start` then `stop` at once, and `start` then the socket closes."""
    n = attack.scale(15, 5)
    out = Outcome(f"{n} x start+stop, {n} x start+close")
    busy = 0
    async with httpx.AsyncClient(timeout=CONNECT_TIMEOUT_S) as http:
        for i in range(2 * n):
            peer = await ring_patiently(attack.server, http)
            if peer is None:
                busy += 1
                continue
            await peer.connect()
            await (peer.hang_up() if i % 2 == 0 else peer.drop())
    out.notes.append(f"{busy} refused as busy")
    out.check(busy == 0, f"{busy} of {2 * n} calls refused as busy: earlier hung-up calls still hold seats")
    return out


async def silent_sockets(attack: Attack) -> Outcome:
    """Issue 8 #5: sockets that open and never send `start`: real tickets (up to capacity) and made-up ones."""
    n = attack.scale(200, 50)
    out = Outcome(f"{n} signed sockets that never send start")
    async with httpx.AsyncClient(timeout=CONNECT_TIMEOUT_S) as http:
        peers = [p for p in [await ring(attack.server, http) for _ in range(attack.capacity)] if p is not None]
    for _ in range(n - len(peers)):
        url = f"ws://{attack.server.base.removeprefix('http://')}/twilio/media/{secrets.token_urlsafe(24)}"
        peers.append(SignedPeer(url, {}, attack.server.sign(url, {})))
    opened = await asyncio.gather(*(p.connect(send_start=False) for p in peers), return_exceptions=True)
    connected = [p for p, r in zip(peers, opened) if not isinstance(r, BaseException)]
    waited = LIMITS.start_timeout_s + 2.0
    await asyncio.gather(*(p.wait_closed(waited) for p in connected))
    held = [p for p in connected if not p.closed]
    out.notes.append(f"{len(peers) - len(connected)} refused at the handshake, {len(connected) - len(held)} closed "
                     f"by the server, {len(held)} still held after {waited:.0f} s")
    out.check(not held, f"{len(held)} silent sockets held open past the start timeout")
    await asyncio.gather(*(p.drop() for p in held), return_exceptions=True)
    return out


async def oversized_message(attack: Attack) -> Outcome:
    """Issue 8 #5: one 10 MB message on a live stream."""
    out = Outcome("one 10 MB media message on a started stream")
    peer = await one_call(attack, out)
    if peer is None:
        return out
    await play(peer, 0.5)
    began = time.monotonic()
    await peer.send_raw('{"event":"media","media":{"track":"inbound","payload":"' + "A" * 10_000_000 + '"}}')
    closed = await peer.wait_closed(5.0)
    out.notes.append(f"closed by the server after {time.monotonic() - began:.2f} s (code {peer.close_code})"
                     if closed else "socket still open 5 s later")
    out.check(closed, "the server kept a stream that sent a 10 MB message")
    await peer.hang_up()
    return out


async def over_capacity(attack: Attack) -> Outcome:
    """Issue 8 #5: more calls than the capacity at once; the extra ones are refused, not admitted."""
    n = attack.capacity + 3
    out = Outcome(f"{n} calls at once (capacity {attack.capacity})")
    async with httpx.AsyncClient(timeout=CONNECT_TIMEOUT_S) as http:
        rung = await asyncio.gather(*(ring(attack.server, http) for _ in range(n)))
    peers = [p for p in rung if p is not None]
    opened = await asyncio.gather(*(p.connect() for p in peers), return_exceptions=True)
    live = [p for p, r in zip(peers, opened) if not isinstance(r, BaseException)]
    await asyncio.gather(*(play(p, 1.5) for p in live), return_exceptions=True)
    admitted = [p for p in live if not p.closed and p.media_received > 0]
    health = await attack.server.healthz() or {}
    out.notes.append(f"{n - len(peers)} refused busy by the webhook, {len(live) - len(admitted)} closed, "
                     f"{len(admitted)} admitted; /healthz active_calls {health.get('active_calls')}")
    out.check(len(admitted) <= attack.capacity, f"{len(admitted)} calls admitted past the capacity {attack.capacity}")
    out.check(len(admitted) > 0, "not one call admitted while the server had room")
    await asyncio.gather(*(p.hang_up() for p in live), return_exceptions=True)
    return out


JUNK = ["not json {", '{"event":"bogus","n":1}', "[]", '{"event":"media","media":{"payload":"!!!not base64"}}',
        '{"event":"mark"}', '{"event":"start","start":"x"}']


async def junk_flood(attack: Attack) -> Outcome:
    """Issue 8 #6: invalid JSON and unknown events on one socket, as fast as it takes them."""
    seconds = attack.seconds(10.0, 3.0)
    out = Outcome(f"junk messages for up to {seconds:.0f} s on one stream")
    peer = await one_call(attack, out)
    if peer is None:
        return out
    began, sent = time.monotonic(), 0
    while time.monotonic() - began < seconds and await peer.send_raw(JUNK[sent % len(JUNK)]):
        sent += 1
        if sent % 200 == 0:
            await asyncio.sleep(0)  # let the reader see a close
    closed = await peer.wait_closed(2.0)
    out.sent = f"{sent} junk messages in {time.monotonic() - began:.1f} s on one stream"
    out.notes.append(f"closed by the server (code {peer.close_code})" if closed else "socket still open")
    out.check(closed, f"a socket that sent {sent} junk messages was not closed")
    await peer.hang_up()
    return out


async def fast_sender(attack: Attack) -> Outcome:
    """Issue 8 #8: 10 s of caller audio in 0.5 s; the agent's audio (one frame per caller frame) must stay real time."""
    out = Outcome("10 s of caller audio in 0.5 s, then real time")
    window_s = 1.5
    peer = await one_call(attack, out)
    if peer is None:
        return out
    began = time.monotonic()
    for i in range(500):
        await peer.exchange(FRAME)
        if i % 10 == 9:
            await asyncio.sleep(max(0.0, began + (i + 1) * 0.001 - time.monotonic()))
    await play(peer, max(0.0, window_s - (time.monotonic() - began)))
    agent_s = peer.media_received * 0.02
    elapsed = time.monotonic() - began
    out.notes.append(f"agent sent {agent_s:.2f} s of audio in {elapsed:.2f} s ({agent_s / elapsed:.1f}x real time)")
    out.check(agent_s <= elapsed + LIMITS.burst_s + 0.1,
              f"the call clock raced: {agent_s:.2f} s of agent audio in {elapsed:.2f} s")
    await peer.hang_up()
    return out


TWILIO_ATTACKS = {
    "twilio-hangup-at-once": immediate_hangups,
    "twilio-silent-sockets": silent_sockets,
    "twilio-10mb-message": oversized_message,
    "twilio-over-capacity": over_capacity,
    "twilio-junk-flood": junk_flood,
    "twilio-fast-sender": fast_sender,
}
