"""The browser edge on a real server over loopback: silent WebRTC peers free their seats, junk and floods are bounded."""
from __future__ import annotations

import asyncio
import contextlib
import fractions
import json
from typing import Any, AsyncIterator

import av
import httpx
import numpy as np
import pytest
import websockets
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from spotfunnel.api.app import create_app
from spotfunnel.api.browser import MAX_CALLS_ENV
from spotfunnel.api.loopback import serve_on_loopback
from spotfunnel.store.db import Database
from spotfunnel.transports.browser_guard import BrowserLimits
from spotfunnel.transports.webrtc import loopback_candidates

from call_support import WAIT_S, poll

pytestmark = pytest.mark.models

SALON = "maple-street-salon"
#: short deadlines so that a silent peer is given up in a second or two, not 10-15 s
QUICK = BrowserLimits(connect_timeout_s=2.0, idle_timeout_s=1.5, start_timeout_s=2.0)


class MicTrack(MediaStreamTrack):
    """A caller's microphone: 20 ms frames of a tone, in real time; it goes silent (sends nothing) after `frames`."""

    kind = "audio"

    def __init__(self, frames: int | None = None, real_time: bool = True) -> None:
        super().__init__()
        self.frames, self.real_time, self.n = frames, real_time, 0
        self._never = asyncio.Event()

    async def recv(self) -> av.AudioFrame:
        if self.frames is not None and self.n >= self.frames:
            await self._never.wait()  # the line goes dead: no more RTP, the connection itself stays up
        await asyncio.sleep(0.02 if self.real_time else 0)
        t = (np.arange(960) + self.n * 960) / 48000
        pcm = (np.sin(2 * np.pi * 440 * t) * 8000).astype("<i2").reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = 48000, self.n * 960, fractions.Fraction(1, 48000)
        self.n += 1
        return frame


class BrowserPeer:
    """An aiortc peer posting its offer to /webrtc/offer as the talk page does; `events` are what its data channel got."""

    def __init__(self, track: MicTrack) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pc.addTrack(track)
        self.channel = self.pc.createDataChannel("control")
        self.events: list[dict[str, Any]] = []
        self.channel.on("message", lambda m: self.events.append(json.loads(m)))

    async def offer(self, client: httpx.AsyncClient, *, complete: bool = True) -> httpx.Response:
        """Post the offer; `complete=False`: never take the answer, so ICE and DTLS never complete."""
        with loopback_candidates(True):
            await self.pc.setLocalDescription(await self.pc.createOffer())
        r = await client.post("/webrtc/offer", json={"sdp": self.pc.localDescription.sdp, "type": "offer",
                                                     "tenant": SALON})
        if r.status_code == 200 and complete:
            await self.pc.setRemoteDescription(RTCSessionDescription(r.json()["sdp"], "answer"))
        return r

    def ended(self) -> dict[str, Any] | None:
        return next((e for e in self.events if e.get("type") == "ended"), None)


@contextlib.asynccontextmanager
async def server(services: Any, seats: int, limits: BrowserLimits = QUICK) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    """The real app on a loopback port with `seats` browser seats and `limits`; yields a client and the app."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(MAX_CALLS_ENV, str(seats))
        app = create_app(Database("sqlite://"), services=services, run_worker=False, twilio_auth_token="",
                         twilio_control=None)
    app.state.browser_limits = limits
    async with serve_on_loopback(app) as port:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=20) as client:
            yield client, app


async def seats_taken(client: httpx.AsyncClient) -> int:
    return int((await client.get("/healthz")).json()["edges"]["browser"]["active_calls"])


async def test_webrtc_peers_that_go_silent_or_never_connect_give_their_seats_back(services: Any) -> None:
    async with server(services, seats=2) as (client, app):
        mic = MicTrack(frames=50)
        dead_line = BrowserPeer(mic)  # connects, talks for a second, then sends nothing
        never = BrowserPeer(MicTrack())  # its offer is answered, but it never takes the answer
        assert (await dead_line.offer(client)).status_code == 200
        assert (await never.offer(client, complete=False)).status_code == 200
        try:
            async def heard_audio() -> bool:
                return dead_line.pc.connectionState == "connected" and mic.n >= 50

            await poll(heard_audio, "the first peer connected and sent its second of audio")
            third = BrowserPeer(MicTrack())
            refused = await third.offer(client, complete=False)
            assert refused.status_code == 429 and "try again" in refused.json()["detail"]  # both seats held
            await third.pc.close()

            async def seats_free() -> bool:
                return await seats_taken(client) == 0 and not app.state.browser_calls

            await poll(seats_free, "both seats given back")
            async def outcome() -> dict[str, Any] | None:
                return dead_line.ended()

            ended = await poll(outcome, "the call's outcome on the page")
            assert ended["outcome"], ended  # the call ended with an outcome, not None
            late = BrowserPeer(MicTrack())
            assert (await late.offer(client, complete=False)).status_code == 200  # a new caller gets a seat
            await late.pc.close()
        finally:
            await dead_line.pc.close()
            await never.pc.close()


async def test_a_webrtc_peer_faster_than_real_time_is_buffered_and_its_excess_dropped() -> None:
    from spotfunnel.transports.webrtc import WebRtcTransport

    caller = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    flood = MicTrack(frames=1000, real_time=False)  # 20 s of audio pushed as fast as aiortc can send it
    caller.addTrack(flood)
    transport = WebRtcTransport(tenant=SALON, limits=BrowserLimits(max_buffered_frames=25))
    try:
        with loopback_candidates(True):
            await caller.setLocalDescription(await caller.createOffer())
        answer = await transport.answer(caller.localDescription, allow_loopback=True)
        await caller.setRemoteDescription(answer)

        async def all_sent_and_arrived() -> bool:
            arrived = transport.stats["frames_in"] + transport.stats["dropped_in"]
            return flood.n >= 1000 and arrived >= 900  # Opus over loopback: a few packets may be late or lost

        await poll(all_sent_and_arrived, "the burst sent and received")
        # nobody read the call meanwhile: only its buffer's worth waits, the rest was dropped and counted
        assert transport.stats["frames_in"] == 25 and transport.stats["dropped_in"] >= 875
    finally:
        await transport.close()
        await caller.close()


async def test_a_junk_flood_on_the_browser_socket_is_cut_off_and_leaves_no_trace(services: Any) -> None:
    async with server(services, seats=1) as (client, _app):
        url = str(client.base_url).replace("http://", "ws://") + f"/browser/ws?tenant={SALON}"
        received: list[Any] = []
        async with websockets.connect(url) as ws:
            await ws.send(json.dumps({"type": "start", "format": {"encoding": "audio/l16", "sampleRate": 16000,
                                                                  "channels": 1}}))
            with contextlib.suppress(websockets.ConnectionClosed):
                for i in range(5000):
                    await ws.send("not json " + "x" * 900 + str(i))
            with pytest.raises(websockets.ConnectionClosed) as closed:
                while True:
                    received.append(await asyncio.wait_for(ws.recv(), WAIT_S))
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008  # closed for its junk
        issues = [m for m in received if isinstance(m, str) and json.loads(m).get("type") == "issue"]
        assert len(issues) <= QUICK.log_first_issues  # the page, like the log, gets a few lines, not thousands

        async def seat_free() -> bool:
            return await seats_taken(client) == 0

        await poll(seat_free, "the junk sender's seat given back")


async def test_the_browser_socket_caps_message_size_and_refuses_unknown_tenants(services: Any) -> None:
    async with server(services, seats=1) as (client, _app):
        base = str(client.base_url).replace("http://", "ws://") + "/browser/ws"
        async with websockets.connect(f"{base}?tenant=no-such-salon") as ws:
            refused = json.loads(await asyncio.wait_for(ws.recv(), WAIT_S))
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), WAIT_S)
        assert refused["type"] == "refused" and SALON in refused["message"] and closed.value.rcvd.code == 1008  # type: ignore[union-attr]
        async with websockets.connect(f"{base}?tenant={SALON}") as ws:
            await ws.send(json.dumps({"type": "start"}))
            await ws.send(bytes(QUICK.max_audio_bytes + 2))  # far beyond a 20 ms frame
            issue = await _next_of(ws, "issue")
            assert f"limit is {QUICK.max_audio_bytes} bytes" in issue["message"]
            await ws.send("{" + " " * QUICK.max_control_chars + "}")
            issue = await _next_of(ws, "issue")
            assert "refused unparsed" in issue["message"]


async def _next_of(ws: Any, kind: str) -> dict[str, Any]:
    while True:
        raw = await asyncio.wait_for(ws.recv(), WAIT_S)
        if isinstance(raw, str) and (msg := json.loads(raw)).get("type") == kind:
            return dict(msg)


async def test_webrtc_calls_still_running_at_shutdown_are_ended_and_their_peers_closed(services: Any) -> None:
    caller = BrowserPeer(MicTrack())  # a live caller, talking in real time
    try:
        async with server(services, seats=1, limits=BrowserLimits()) as (client, app):
            assert (await caller.offer(client)).status_code == 200

            async def connected() -> bool:
                return caller.pc.connectionState == "connected" and caller.channel.readyState == "open"

            await poll(connected, "the caller connected")
            calls = set(app.state.browser_calls)
            assert len(calls) == 1
        assert all(task.done() for task in calls)  # the server stopped: its call did not outlive it

        async def channel_closed() -> bool:
            return caller.channel.readyState == "closed" or caller.pc.connectionState in ("closed", "failed")

        await poll(channel_closed, "the caller's connection closed by the server")
    finally:
        await caller.pc.close()
