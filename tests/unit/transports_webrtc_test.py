"""The WebRTC transport without a network: 48 <-> 16 kHz framing, Opus, the agent track, data channel messages."""
from __future__ import annotations

import asyncio
import fractions
import json

import av
import numpy as np
import pytest

from spotfunnel.audio.levels import rms_dbfs
from spotfunnel.transports.base import CallStarted, Dtmf, Hangup, MarkPlayed, ProtocolIssue
from spotfunnel.transports.browser_guard import BrowserLimits
from spotfunnel.transports.webrtc import MAX_QUEUED_AGENT_FRAMES, AgentAudioTrack, WebRtcTransport
from spotfunnel.transports.webrtc_audio import OpusRoundTrip, WebRtcAudioPath


def tone48k_stereo(n_frames: int, freq: float = 1000.0, amp: int = 8000) -> list[av.AudioFrame]:
    """What aiortc's Opus decoder hands over: s16 packed stereo 48 kHz, 960 samples a frame."""
    t = np.arange(n_frames * 960) / 48000
    mono = (np.sin(2 * np.pi * freq * t) * amp).astype("<i2")
    frames = []
    for i in range(n_frames):
        chunk = np.repeat(mono[i * 960:(i + 1) * 960], 2).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(chunk, format="s16", layout="stereo")
        frame.sample_rate = 48000
        frame.pts = i * 960
        frame.time_base = fractions.Fraction(1, 48000)
        frames.append(frame)
    return frames


def tone16k(n_frames: int, freq: float = 1000.0, amp: int = 8000) -> bytes:
    t = np.arange(n_frames * 320) / 16000
    return (np.sin(2 * np.pi * freq * t) * amp).astype("<i2").tobytes()


def dominant_hz(pcm: bytes, rate: int) -> float:
    x = np.frombuffer(pcm, dtype="<i2").astype(float)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum) * rate / len(x))


def test_inbound_48k_stereo_gives_one_640_byte_frame_per_20_ms() -> None:
    path = WebRtcAudioPath()
    out: list[bytes] = []
    for frame in tone48k_stereo(50):
        frames, issues = path.inbound(frame)
        assert issues == [] and len(frames) == 1  # steady: no bursts, no gaps
        out.extend(frames)
    assert all(len(f) == 640 for f in out)
    steady = b"".join(out[10:])
    assert abs(dominant_hz(steady, 16000) - 1000) < 30
    assert abs(rms_dbfs(steady) - rms_dbfs(tone16k(40))) < 1.0


def test_inbound_at_an_unexpected_rate_is_reported_and_still_converted() -> None:
    path = WebRtcAudioPath()
    frame = av.AudioFrame.from_ndarray(np.zeros((1, 320), dtype="<i2"), format="s16", layout="mono")
    frame.sample_rate = 16000
    frames, issues = path.inbound(frame)
    assert len(frames) == 1 and issues and "16000 Hz" in issues[0].message and "48000" in issues[0].message


def test_outbound_frame_is_960_samples_at_48k_with_running_pts() -> None:
    path = WebRtcAudioPath()
    pcm = tone16k(30)
    frames = [path.outbound(pcm[i:i + 640]) for i in range(0, len(pcm), 640)]
    assert all(f.samples == 960 and f.sample_rate == 48000 and f.format.name == "s16" for f in frames)
    assert [f.pts for f in frames] == [i * 960 for i in range(30)]
    left = b"".join(f.to_ndarray().reshape(-1)[::2].astype("<i2").tobytes() for f in frames[5:])
    assert abs(dominant_hz(left, 48000) - 1000) < 30
    with pytest.raises(ValueError, match="640 bytes"):
        path.outbound(pcm[:320])


def test_opus_round_trip_keeps_pitch_and_level_frame_for_frame() -> None:
    rt = OpusRoundTrip()
    pcm = tone16k(100, freq=440)
    out = []
    for i in range(0, len(pcm), 640):
        packets = rt.send(pcm[i:i + 640])
        assert len(packets) == 1
        out.extend(rt.receive(packets[0]))
    assert len(out) == 100
    steady = b"".join(out[20:])
    assert abs(dominant_hz(steady, 16000) - 440) < 20
    assert abs(rms_dbfs(steady) - rms_dbfs(pcm)) < 1.5


async def test_agent_track_plays_queued_frames_then_silence_and_reports_marks() -> None:
    path = WebRtcAudioPath()
    marks: list[str] = []
    track = AgentAudioTrack(path, marks.append)
    loud = path.outbound(tone16k(1))
    track.push(loud)
    track.push_mark("speech-1")
    first = await track.recv()
    assert first is loud and marks == ["speech-1"]
    second = await track.recv()
    assert second.samples == 960 and not np.any(second.to_ndarray())
    track.push(path.outbound(tone16k(1)))
    track.push_mark("speech-2")
    track.clear()  # barge-in: the audio goes, its marks count as played
    assert marks == ["speech-1", "speech-2"] and track.queued_frames == 0
    track.stop()


async def test_data_channel_messages_become_events_or_issues() -> None:
    t = WebRtcTransport(tenant="maple-street-salon")
    try:
        started = await t.receive()
        assert isinstance(started, CallStarted) and started.tenant_id == "maple-street-salon"
        t.handle_message(json.dumps({"type": "dtmf", "digit": "#"}))
        t.handle_message("not json")
        t.handle_message(json.dumps({"type": "dtmf", "digit": "12"}))
        t.handle_message(json.dumps({"type": "launch"}))
        t.handle_message(json.dumps({"type": "hangup"}))
        events = [await t.receive() for _ in range(5)]
        assert events[0] == Dtmf("#")
        assert [type(e) for e in events[1:4]] == [ProtocolIssue] * 3
        assert "malformed" in events[1].message and "'12'" in events[2].message  # type: ignore[union-attr]
        assert "'launch'" in events[3].message  # type: ignore[union-attr]
        assert events[4] == Hangup("caller hung up")
        assert await t.receive() == Hangup("caller hung up")
    finally:
        await t.close()


async def test_marks_pass_through_the_transport_and_bad_events_are_refused() -> None:
    t = WebRtcTransport(tenant=None)
    try:
        await t.receive()  # CallStarted
        await t.send_audio(tone16k(1))
        await t.send_mark("speech-7")
        await t.track.recv()
        assert await t.receive() == MarkPlayed("speech-7")
        with pytest.raises(ValueError, match="event type"):
            await t.send_event({"type": "clear"})
        with pytest.raises(ValueError, match="640 bytes"):
            await t.send_audio(b"\x00" * 10)
    finally:
        await t.close()


async def test_agent_track_catches_up_on_a_backlog_without_paying_it_back(monkeypatch: pytest.MonkeyPatch) -> None:
    import spotfunnel.transports.webrtc as webrtc

    waits: list[float] = []

    async def record_wait(seconds: float) -> None:
        waits.append(seconds)

    monkeypatch.setattr(webrtc.asyncio, "sleep", record_wait)
    path = WebRtcAudioPath()
    track = AgentAudioTrack(path, lambda _name: None)
    for _ in range(12):
        track.push(path.outbound(tone16k(1)))
    for _ in range(7):  # above the catch-up threshold (5 queued): sent without waiting for the clock
        await track.recv()
    assert waits == [] and track.queued_frames == 5
    await track.recv()  # back in real time: one frame's wait, the burst is not paid back
    assert len(waits) == 1 and 0 < waits[0] <= webrtc.FRAME_S
    track.stop()


async def test_a_data_channel_junk_flood_is_counted_quietly_and_ends_the_call() -> None:
    t = WebRtcTransport(tenant=None, limits=BrowserLimits(junk_budget=30, log_first_issues=3, max_control_chars=100))
    try:
        assert isinstance(await t.receive(), CallStarted)
        t.handle_message("x" * 101)  # too long: refused before it is parsed
        for i in range(5000):
            t.handle_message(f"junk {i}")
        events = [await t.receive() for _ in range(4)]
        assert [type(e) for e in events] == [ProtocolIssue] * 3 + [Hangup]
        assert "101 characters refused unparsed" in events[0].message  # type: ignore[union-attr]
        assert "keeps sending junk" in events[3].reason  # type: ignore[union-attr]
        assert t.stats["junk"] == 30  # nothing counted (or kept) once the call is over
    finally:
        await t.close()


async def test_events_held_for_a_channel_that_never_opens_are_capped() -> None:
    t = WebRtcTransport(tenant=None, limits=BrowserLimits(max_held_events=10))
    try:
        for i in range(25):
            await t.send_event({"type": "caller", "text": str(i)})
        assert t.stats["dropped_events"] == 15
        assert [json.loads(m)["text"] for m in t._unsent] == [str(i) for i in range(15, 25)]  # the latest kept
    finally:
        await t.close()


def test_agent_audio_for_a_sender_that_stopped_pulling_is_capped() -> None:
    path = WebRtcAudioPath()
    track = AgentAudioTrack(path, lambda _name: None)
    frame = path.outbound(tone16k(1))
    for _ in range(MAX_QUEUED_AGENT_FRAMES + 40):
        track.push(frame)
    assert track.queued_frames == MAX_QUEUED_AGENT_FRAMES and track.frames_dropped == 40
    track.clear()
    assert track.queued_frames == 0
