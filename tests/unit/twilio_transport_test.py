"""The Twilio Media Streams transport driven by a fake websocket with scripted messages."""
from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import numpy as np
import pytest

from spotfunnel.audio.g711 import ulaw_decode, ulaw_encode
from spotfunnel.audio.resample import resample_once
from spotfunnel.transports.base import AudioIn, CallStarted, Dtmf, Hangup, InboundEvent, MarkPlayed, ProtocolIssue
from spotfunnel.transports.twilio import ControlRequest, StreamLimits, TwilioTransport


class WebSocketDisconnect(Exception):
    """Stands in for starlette's exception of the same name."""


class FakeWebSocket:
    def __init__(self, messages: list[str | dict[str, Any]]) -> None:
        self.inbox: asyncio.Queue[str | None] = asyncio.Queue()
        for m in messages:
            self.inbox.put_nowait(m if isinstance(m, str) else json.dumps(m))
        self.sent: list[dict[str, Any]] = []
        self.closed = False

    def push(self, message: dict[str, Any] | None) -> None:
        self.inbox.put_nowait(None if message is None else json.dumps(message))

    async def receive_text(self) -> str:
        item = await self.inbox.get()
        if item is None or self.closed:
            raise WebSocketDisconnect(1000)
        return item

    async def send_text(self, data: str) -> None:
        if self.closed:
            raise RuntimeError("websocket closed")
        self.sent.append(json.loads(data))

    async def close(self, code: int = 1000) -> None:
        self.closed = True
        self.inbox.put_nowait(None)


#: feeds scripted audio as fast as it is read: no pacing (the pacer has its own tests)
UNPACED = StreamLimits(burst_s=3600.0, max_buffered_frames=1_000_000)


def Unpaced(ws: FakeWebSocket, **kwargs: Any) -> TwilioTransport:  # noqa: N802 - reads like the class
    return TwilioTransport(ws, limits=UNPACED, **kwargs)


CONNECTED = {"event": "connected", "protocol": "Call", "version": "1.0.0"}


def start(params: dict[str, str] | None = None, seq: int = 1, encoding: str = "audio/x-mulaw",
          rate: int = 8000) -> dict[str, Any]:
    return {"event": "start", "sequenceNumber": str(seq), "streamSid": "MZ1",
            "start": {"accountSid": "AC1", "streamSid": "MZ1", "callSid": "CA1", "tracks": ["inbound"],
                      "customParameters": params if params is not None else {"tenant": "acme", "caller": "+15551234"},
                      "mediaFormat": {"encoding": encoding, "sampleRate": rate, "channels": 1}}}


def media(payload: bytes, seq: int, chunk: int | None = None) -> dict[str, Any]:
    return {"event": "media", "sequenceNumber": str(seq), "streamSid": "MZ1",
            "media": {"track": "inbound", "chunk": str(chunk if chunk is not None else seq - 1),
                      "timestamp": str((seq - 2) * 20), "payload": base64.b64encode(payload).decode()}}


def stop(seq: int) -> dict[str, Any]:
    return {"event": "stop", "sequenceNumber": str(seq), "streamSid": "MZ1",
            "stop": {"accountSid": "AC1", "callSid": "CA1"}}


async def drain(transport: TwilioTransport, limit: int = 10_000) -> list[InboundEvent]:
    events: list[InboundEvent] = []
    for _ in range(limit):
        event = await asyncio.wait_for(transport.receive(), 2)
        events.append(event)
        if isinstance(event, Hangup):
            return events
    raise AssertionError("no Hangup")


def mulaw_tone(seconds: float, freq: float = 1000.0) -> bytes:
    t = np.arange(int(8000 * seconds)) / 8000
    return ulaw_encode((np.sin(2 * np.pi * freq * t) * 12000).astype("<i2").tobytes())


async def test_the_stream_names_no_one_without_a_binding() -> None:
    ws = FakeWebSocket([CONNECTED, start({"tenant": "acme", "from": "+15550001", "to": "+15550002", "caller": "+1",
                                          "setup": "k", "lockstep": "1", "direction": "outbound"}), stop(2)])
    t = Unpaced(ws)
    events = await drain(t)
    # whatever the custom parameters claim, identity and test switches never come from the stream
    assert events[0] == CallStarted(call_id="CA1", caller_id="", called="", tenant_id=None, params={})
    assert events[-1] == Hangup("caller hung up")
    assert not t.lockstep and t.stream_sid == "MZ1"
    assert await t.receive() == Hangup("caller hung up")  # stays ended


async def test_the_binding_decides_who_the_call_is_or_refuses_it() -> None:
    seen: list[tuple[str, dict[str, str]]] = []

    def bind(call_sid: str, params: dict[str, str]) -> CallStarted | str:
        seen.append((call_sid, params))
        if params.get("stream_token") != "t0k":
            return "wrong token"
        return CallStarted(call_id=call_sid, caller_id="+15550009", called="+15550100", tenant_id="ours")

    events = await drain(Unpaced(FakeWebSocket([CONNECTED, start({"stream_token": "t0k", "tenant": "theirs"}),
                                                stop(2)]), bind_start=bind))
    assert events[0] == CallStarted(call_id="CA1", caller_id="+15550009", called="+15550100", tenant_id="ours")
    assert seen == [("CA1", {"stream_token": "t0k", "tenant": "theirs"})]
    refused = Unpaced(FakeWebSocket([CONNECTED, start({"stream_token": "nope"}), media(b"\xff" * 160, 2)]),
                      bind_start=bind)
    events = await drain(refused)
    assert not any(isinstance(e, (CallStarted, AudioIn)) for e in events) and not refused.started
    assert events[-1] == Hangup("rejected: wrong token")


async def test_odd_payload_sizes_give_exact_640_byte_frames_and_lose_no_audio() -> None:
    audio = mulaw_tone(1.0)  # 8000 bytes
    sizes = [37, 160, 333, 1, 159, 480, 7]
    messages: list[str | dict[str, Any]] = [CONNECTED, start()]
    pos, seq = 0, 2
    while pos < len(audio):
        size = sizes[(seq - 2) % len(sizes)]
        messages.append(media(audio[pos : pos + size], seq))
        pos += size
        seq += 1
    messages.append(stop(seq))
    t = Unpaced(FakeWebSocket(messages))
    events = await drain(t)
    frames = [e.pcm for e in events if isinstance(e, AudioIn)]
    assert not [e for e in events if isinstance(e, ProtocolIssue)]
    assert all(len(f) == 640 for f in frames)
    assert len(frames) >= 50  # 1 s = 50 frames, plus the flushed resampler delay
    received = np.frombuffer(b"".join(frames), dtype="<i2").astype(np.float64)
    expected = np.frombuffer(resample_once(ulaw_decode(audio), 8000, 16000), dtype="<i2").astype(np.float64)
    lag = t._upsampler.padded_samples  # fixed delay of the streaming resampler (leading silence)
    assert lag * 1000 / 16000 <= 40
    aligned = received[lag : lag + len(expected)]
    assert len(aligned) >= len(expected) - 40  # the tail was flushed at stop, not lost
    error = aligned[200:-200] - expected[200 : len(aligned) - 200]
    snr = 10 * np.log10(np.sum(expected[200:-200] ** 2) / np.sum(error**2))
    assert snr > 20


async def test_one_frame_per_20ms_twilio_chunk_while_streaming() -> None:
    ws = FakeWebSocket([CONNECTED, start()])
    t = Unpaced(ws)
    assert isinstance(await t.receive(), CallStarted)
    for i in range(5):
        ws.push(media(bytes([0xFF]) * 160, i + 2))
        event = await asyncio.wait_for(t.receive(), 1)
        assert isinstance(event, AudioIn) and len(event.pcm) == 640


async def test_duplicates_and_late_chunks_are_dropped_and_reported() -> None:
    chunk = bytes([0xFF]) * 160
    ws = FakeWebSocket([CONNECTED, start(), media(chunk, 2), media(chunk, 3), media(chunk, 3),
                        media(chunk, 5), media(chunk, 4), media(chunk, 6), stop(7)])
    events = await drain(Unpaced(ws))
    issues = [e.message for e in events if isinstance(e, ProtocolIssue)]
    assert any("duplicate" in m and "3" in m for m in issues)
    assert any("missing" in m and "5" in m for m in issues)
    assert any("late" in m and "4" in m for m in issues)
    audio = [e for e in events if isinstance(e, AudioIn)]
    assert len(audio) >= 4  # chunks 2, 3, 5, 6 (+ flushed tail); the duplicate and late ones dropped
    assert len(audio) <= 6


async def test_a_corrupt_sequence_jump_does_not_silence_the_rest_of_the_call() -> None:
    chunk = bytes([0xFF]) * 160
    ws = FakeWebSocket([CONNECTED, start(), media(chunk, 2), media(chunk, 999_999), media(chunk, 4),
                        media(chunk, 5), stop(6)])
    events = await drain(Unpaced(ws))
    issues = [e.message for e in events if isinstance(e, ProtocolIssue)]
    assert len(issues) == 2 and "jumped back from 999999 to 4" in issues[1]
    assert sum(isinstance(e, AudioIn) for e in events) >= 4


async def test_chunk_numbers_used_when_sequence_numbers_are_absent() -> None:
    def m(chunk: int) -> dict[str, Any]:
        msg = media(bytes([0xFF]) * 160, 0, chunk)
        del msg["sequenceNumber"]
        return msg

    events = await drain(Unpaced(FakeWebSocket([CONNECTED, start(), m(1), m(2), m(2), {"event": "stop"}])))
    assert [e.message for e in events if isinstance(e, ProtocolIssue)] == [
        "duplicate message dropped: media chunk 2 after 2"]


async def test_malformed_unknown_and_premature_messages_never_raise() -> None:
    ws = FakeWebSocket([
        "{not json", "[1, 2]", {"no_event": True}, {"event": "party"},
        media(b"\xff" * 160, 1),  # before start
        CONNECTED, start(seq=2),
        {"event": "media", "sequenceNumber": "3", "media": {"chunk": "1"}},  # no payload
        {"event": "media", "sequenceNumber": "4", "media": {"payload": "***not base64***"}},
        {"event": "mark", "sequenceNumber": "5"},
        {"event": "dtmf", "sequenceNumber": "6", "dtmf": {"track": "inbound_track"}},
        {"event": "start", "sequenceNumber": "7", "start": {}},
        stop(8),
    ])
    t = TwilioTransport(ws, limits=StreamLimits(log_first_issues=20))
    events = await drain(t)
    issues = [e.message for e in events if isinstance(e, ProtocolIssue)]
    assert len(issues) == 10 and t.stats["junk"] == 10
    for fragment in ("malformed JSON", "not a JSON object", "None", "'party'", "media before start",
                     "without media.payload", "not valid base64", "without mark.name", "without dtmf.digit",
                     "second start"):
        assert any(fragment in m for m in issues), fragment
    assert sum(isinstance(e, CallStarted) for e in events) == 1
    assert isinstance(events[-1], Hangup)


async def test_a_junk_flood_is_counted_quietly_and_the_stream_closed() -> None:
    ws = FakeWebSocket([CONNECTED, start()] + ["{junk"] * 500)
    t = Unpaced(ws)
    events = await drain(t)
    # the first few issues are reported, then nothing until the budget runs out: no log or queue growth
    assert sum(isinstance(e, ProtocolIssue) for e in events) == UNPACED.log_first_issues
    assert events[-1] == Hangup(f"rejected: {UNPACED.junk_budget} malformed messages; the stream was closed")
    assert t.stats["junk"] == UNPACED.junk_budget and ws.inbox.qsize() > 400  # the rest was never read


async def test_good_messages_earn_back_the_junk_budget() -> None:
    good = [media(b"\xff" * 160, seq) for seq in range(2, 2 + 10 * 60)]
    mixed: list[str | dict[str, Any]] = [CONNECTED, start()]
    for i in range(60):  # one junk message per ten good ones, 60 in all: more than the budget of 50
        mixed += good[i * 10:(i + 1) * 10] + ["{junk"]
    t = Unpaced(FakeWebSocket(mixed + [stop(10_000)]))
    events = await drain(t)
    assert events[-1] == Hangup("caller hung up") and t.stats["junk"] == 60


async def test_an_oversized_message_is_refused_unparsed() -> None:
    huge = json.dumps({"event": "media", "media": {"payload": "A" * 100_000}})
    events = await drain(Unpaced(FakeWebSocket([CONNECTED, start(), huge, stop(2)])))
    [issue] = [e.message for e in events if isinstance(e, ProtocolIssue)]
    assert "refused unparsed" in issue and str(len(huge)) in issue
    assert not any(isinstance(e, AudioIn) for e in events)


async def test_no_start_in_time_closes_the_stream() -> None:
    ws = FakeWebSocket([CONNECTED])
    t = TwilioTransport(ws, limits=StreamLimits(start_timeout_s=0.05))
    events = await drain(t)
    assert events == [Hangup("rejected: no valid start message within 0.05 s")] and ws.closed


async def test_a_started_stream_that_goes_silent_ends_the_call() -> None:
    ws = FakeWebSocket([CONNECTED, start(), media(b"\xff" * 160, 2)])
    t = TwilioTransport(ws, limits=StreamLimits(idle_timeout_s=0.05))
    events = await drain(t)
    assert isinstance(events[0], CallStarted) and isinstance(events[1], AudioIn)
    assert events[-1] == Hangup("the stream went silent: no audio for 0.05 s") and ws.closed


async def test_mark_dtmf_and_stop_events() -> None:
    ws = FakeWebSocket([CONNECTED, start(),
                        {"event": "mark", "sequenceNumber": "2", "streamSid": "MZ1", "mark": {"name": "turn-1"}},
                        {"event": "dtmf", "sequenceNumber": "3", "streamSid": "MZ1",
                         "dtmf": {"track": "inbound_track", "digit": "5"}},
                        stop(4)])
    events = await drain(Unpaced(ws))
    assert events[1:] == [MarkPlayed("turn-1"), Dtmf("5"), Hangup("caller hung up")]


async def test_websocket_close_is_a_hangup() -> None:
    ws = FakeWebSocket([CONNECTED, start()])
    ws.push(None)
    events = await drain(Unpaced(ws))
    assert isinstance(events[-1], Hangup) and "websocket closed" in events[-1].reason


async def test_unsupported_media_format_is_rejected_clearly() -> None:
    ws = FakeWebSocket([CONNECTED, start(encoding="audio/x-alaw"), media(b"\xff" * 160, 2)])
    events = await drain(Unpaced(ws))
    assert isinstance(events[0], ProtocolIssue)
    assert "audio/x-alaw" in events[0].message and "expects audio/x-mulaw 8000 Hz mono" in events[0].message
    assert isinstance(events[-1], Hangup) and events[-1].reason.startswith("rejected")
    assert not any(isinstance(e, (CallStarted, AudioIn)) for e in events)


async def test_outbound_messages_have_twilio_shapes() -> None:
    ws = FakeWebSocket([CONNECTED, start()])
    t = Unpaced(ws)
    await t.send_audio(bytes(640))  # before start: nowhere to send, dropped
    assert ws.sent == [] and t.stats["dropped_out"] == 1
    assert isinstance(await t.receive(), CallStarted)
    frame = (np.sin(np.arange(320) / 3) * 8000).astype("<i2").tobytes()
    for _ in range(3):
        await t.send_audio(frame)
    await t.send_mark("m1")
    await t.clear()
    assert [m["event"] for m in ws.sent] == ["media", "media", "media", "mark", "clear"]
    for m in ws.sent[:3]:
        assert set(m) == {"event", "streamSid", "media"} and m["streamSid"] == "MZ1"
        assert set(m["media"]) == {"payload"}
        assert len(base64.b64decode(m["media"]["payload"])) == 160  # 20 ms of mu-law at 8 kHz
    assert ws.sent[3] == {"event": "mark", "streamSid": "MZ1", "mark": {"name": "m1"}}
    assert ws.sent[4] == {"event": "clear", "streamSid": "MZ1"}


async def test_hangup_and_transfer_are_recorded_and_hangup_closes() -> None:
    ws = FakeWebSocket([CONNECTED, start()])
    t = Unpaced(ws)
    assert isinstance(await t.receive(), CallStarted)
    await t.transfer("+15559876")
    assert not ws.closed
    await t.hangup()
    assert ws.closed
    assert t.control_requests == [ControlRequest("transfer", "+15559876"), ControlRequest("hangup")]
    assert await t.receive() == Hangup("agent hung up")
    await t.send_audio(bytes(640))  # after close: dropped quietly
    assert t.stats["dropped_out"] == 1


@pytest.mark.parametrize("payload_size", [37, 160, 333])
async def test_each_payload_size_alone(payload_size: int) -> None:
    audio = mulaw_tone(0.2)
    msgs: list[str | dict[str, Any]] = [CONNECTED, start()]
    msgs += [media(audio[i : i + payload_size], 2 + n) for n, i in enumerate(range(0, len(audio), payload_size))]
    msgs.append(stop(len(msgs)))
    events = await drain(Unpaced(FakeWebSocket(msgs)))
    frames = [e.pcm for e in events if isinstance(e, AudioIn)]
    assert all(len(f) == 640 for f in frames)
    assert len(frames) * 640 >= len(audio) * 4  # every input sample is represented (8k -> 16k, 2 bytes)
