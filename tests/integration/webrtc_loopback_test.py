"""The WebRTC transport against a real aiortc peer over 127.0.0.1 only: ICE on loopback, audio, data channel."""
from __future__ import annotations

import asyncio
import fractions
import json

import av
import numpy as np
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from spotfunnel.audio.levels import rms_dbfs
from spotfunnel.transports.base import AudioIn, CallStarted, Dtmf
from spotfunnel.transports.browser_guard import BrowserLimits
from spotfunnel.transports.webrtc import WebRtcTransport, loopback_candidates


class ToneTrack(MediaStreamTrack):
    """A caller's microphone: a 440 Hz tone, 20 ms frames in real time."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self.n = 0

    async def recv(self) -> av.AudioFrame:
        await asyncio.sleep(0.02)
        t = (np.arange(960) + self.n * 960) / 48000
        pcm = (np.sin(2 * np.pi * 440 * t) * 8000).astype("<i2").reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = 48000, self.n * 960, fractions.Fraction(1, 48000)
        self.n += 1
        return frame


def loopback_only(sdp: str) -> str:
    """Drop every ICE candidate that is not on 127.0.0.1, so the call can only connect over loopback."""
    return "\r\n".join(line for line in sdp.split("\r\n")
                       if not line.startswith("a=candidate:") or " 127.0.0.1 " in line) + "\r\n"


async def test_a_call_connects_over_loopback_only_and_carries_audio_and_dtmf() -> None:
    caller = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    transport = WebRtcTransport(tenant="maple-street-salon", limits=BrowserLimits(connect_timeout_s=10))
    got_events: list[dict[str, object]] = []
    try:
        caller.addTrack(ToneTrack())
        channel = caller.createDataChannel("control")
        channel.on("message", lambda m: got_events.append(json.loads(m)))
        with loopback_candidates(True):
            await caller.setLocalDescription(await caller.createOffer())
        offer = RTCSessionDescription(loopback_only(caller.localDescription.sdp), "offer")
        answer = await transport.answer(offer, allow_loopback=True)
        assert " 127.0.0.1 " in answer.sdp  # aioice was allowed to offer loopback
        await caller.setRemoteDescription(RTCSessionDescription(loopback_only(answer.sdp), "answer"))

        started = await transport.receive()
        assert isinstance(started, CallStarted) and started.tenant_id == "maple-street-salon"
        assert started.caller_id == "" and started.params == {}  # a browser call has no caller ID
        frames: list[bytes] = []
        while len(frames) < 50:
            item = await asyncio.wait_for(transport.receive(), 15)
            if isinstance(item, AudioIn):
                frames.append(item.pcm)
        assert all(len(f) == 640 for f in frames)
        assert rms_dbfs(b"".join(frames[25:])) > -30  # the tone, not silence

        await asyncio.wait_for(_until(lambda: channel.readyState == "open"), 10)
        channel.send(json.dumps({"type": "dtmf", "digit": "1"}))
        item = await asyncio.wait_for(transport.receive(), 5)
        while isinstance(item, AudioIn):
            item = await asyncio.wait_for(transport.receive(), 5)
        assert item == Dtmf("1")
        await transport.send_event({"type": "caller", "text": "hello"})
        await asyncio.wait_for(_until(lambda: bool(got_events)), 5)
        assert got_events[0] == {"type": "caller", "text": "hello"}
    finally:
        await transport.close()
        await caller.close()


async def _until(check) -> None:  # type: ignore[no-untyped-def]
    while not check():
        await asyncio.sleep(0.02)


async def test_an_offer_without_opus_is_answered_and_reported() -> None:
    from spotfunnel.transports.base import ProtocolIssue

    caller = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    transport = WebRtcTransport(tenant=None)
    try:
        transceiver = caller.addTransceiver(ToneTrack(), direction="sendrecv")
        from aiortc.rtcrtpsender import RTCRtpSender

        pcmu = [c for c in RTCRtpSender.getCapabilities("audio").codecs if c.mimeType == "audio/PCMU"]
        transceiver.setCodecPreferences(pcmu)
        await caller.setLocalDescription(await caller.createOffer())
        await transport.answer(caller.localDescription)
        items = [await transport.receive(), await transport.receive()]
        issue = items[1]
        assert isinstance(items[0], CallStarted) and isinstance(issue, ProtocolIssue)
        assert "PCMU/8000" in issue.message and "browser-opus" in issue.message
    finally:
        await transport.close()
        await caller.close()
