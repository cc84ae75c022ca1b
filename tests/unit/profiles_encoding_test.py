"""Encoding profiles (R-PROD-002): declared formats, payload sizes, dead lines and clipping, and the Twilio hook."""
from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import numpy as np
from prometheus_client import REGISTRY

from spotfunnel.audio.g711 import alaw_encode, ulaw_encode
from spotfunnel.audio.profiles import (
    LOCAL_PCM16,
    SIP_PCMA,
    TWILIO_MEDIA_STREAMS,
    StreamCheck,
    analyse_audio,
    check_declared_format,
)
from spotfunnel.transports.base import Hangup, InboundEvent, ProtocolIssue
from spotfunnel.transports.twilio import TwilioTransport

TWILIO_FORMAT = {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}


def tone(seconds: float, amplitude: float, rate: int = 8000) -> bytes:
    t = np.arange(int(rate * seconds)) / rate
    return (np.sin(2 * np.pi * 440 * t) * amplitude).astype("<i2").tobytes()


def ulaw_decode_bytes(pcm: bytes) -> bytes:
    """PCM16 through mu-law and back."""
    return TWILIO_MEDIA_STREAMS.decode(ulaw_encode(pcm))


def test_profiles_know_their_wire_frames() -> None:
    assert (TWILIO_MEDIA_STREAMS.codec, TWILIO_MEDIA_STREAMS.sample_rate) == ("pcmu", 8000)
    assert TWILIO_MEDIA_STREAMS.frame_bytes == 160 and SIP_PCMA.frame_bytes == 160
    assert LOCAL_PCM16.frame_bytes == 640
    assert TWILIO_MEDIA_STREAMS.describe() == "audio/x-mulaw 8000 Hz mono"


def test_declared_format_matching_and_each_mismatch_named() -> None:
    assert check_declared_format(TWILIO_MEDIA_STREAMS, TWILIO_FORMAT) == []
    [issue] = check_declared_format(TWILIO_MEDIA_STREAMS, {"encoding": "audio/x-alaw", "sampleRate": 16000,
                                                           "channels": 2})
    assert issue.kind == "format"
    for part in ("'audio/x-alaw' is not audio/x-mulaw", "16000 is not 8000 Hz", "channels 2 is not 1"):
        assert part in issue.message, part
    assert "no media format declared" in check_declared_format(TWILIO_MEDIA_STREAMS, None)[0].message


def test_speech_level_audio_is_clean() -> None:
    assert analyse_audio(ulaw_decode_bytes(tone(1.0, 8000)), TWILIO_MEDIA_STREAMS) == []


def test_dead_line_and_clipping_are_reported() -> None:
    [silent] = analyse_audio(bytes(16000), TWILIO_MEDIA_STREAMS)
    assert silent.kind == "silence" and "digital silence" in silent.message and "1.0 s" in silent.message
    square = np.where(np.arange(8000) % 40 < 20, 32767, -32768).astype("<i2").tobytes()
    [clipped] = analyse_audio(ulaw_decode_bytes(square), TWILIO_MEDIA_STREAMS)
    assert clipped.kind == "clipping" and "full scale" in clipped.message
    assert analyse_audio(SIP_PCMA.decode(alaw_encode(square)), SIP_PCMA)[0].kind == "clipping"


def test_stream_check_reports_sizes_and_checks_the_first_second_once() -> None:
    check = StreamCheck(TWILIO_MEDIA_STREAMS)
    silence = ulaw_encode(bytes(320))  # 160 mu-law bytes of digital silence
    issues = [i for _ in range(49) for i in check.add_payload(silence)]
    assert issues == [] and not check.analysed
    [dead] = check.add_payload(silence + silence[:40])  # crosses 1 s
    assert dead.kind == "silence" and check.analysed
    assert check.add_payload(silence) == []  # checked once only
    assert "160 B x 50" in check.size_report() and "200 B x 1" in check.size_report()
    odd = StreamCheck(LOCAL_PCM16)
    assert odd.add_payload(b"\x00" * 641)[0].kind == "frame_size"
    assert odd.add_payload(b"\x00" * 641) == []  # once per size


class FakeWebSocket:
    def __init__(self, messages: list[dict[str, Any]]) -> None:
        self.inbox: asyncio.Queue[str | None] = asyncio.Queue()
        for m in messages:
            self.inbox.put_nowait(json.dumps(m))
        self.inbox.put_nowait(None)

    async def receive_text(self) -> str:
        item = await self.inbox.get()
        if item is None:
            raise RuntimeError("closed")
        return item

    async def send_text(self, data: str) -> None:
        pass


def start(fmt: dict[str, Any]) -> dict[str, Any]:
    return {"event": "start", "sequenceNumber": "1",
            "start": {"streamSid": "MZ9", "callSid": "CA42", "customParameters": {"tenant": "acme"},
                      "mediaFormat": fmt}}


def media(payload: bytes, seq: int) -> dict[str, Any]:
    return {"event": "media", "sequenceNumber": str(seq),
            "media": {"track": "inbound", "payload": base64.b64encode(payload).decode()}}


async def drain(t: TwilioTransport) -> list[InboundEvent]:
    out: list[InboundEvent] = []
    while not out or not isinstance(out[-1], Hangup):
        out.append(await t.receive())
    return out


def issues_total(kind: str) -> float:
    return REGISTRY.get_sample_value("spotfunnel_encoding_issues_total",
                                     {"transport": "twilio", "kind": kind}) or 0.0


async def test_twilio_transport_names_the_call_on_a_format_mismatch_and_counts_it() -> None:
    before = issues_total("format")
    events = await drain(TwilioTransport(FakeWebSocket([start({**TWILIO_FORMAT, "sampleRate": 16000})])))
    [issue] = [e for e in events if isinstance(e, ProtocolIssue)]
    assert issue.message.startswith("call CA42:") and "16000 is not 8000 Hz" in issue.message
    assert issues_total("format") == before + 1


async def test_twilio_transport_flags_a_dead_line_once_after_a_second() -> None:
    before = issues_total("silence")
    silence = ulaw_encode(bytes(320))
    messages = [start(TWILIO_FORMAT)] + [media(silence, i + 2) for i in range(120)]
    events = await drain(TwilioTransport(FakeWebSocket(messages)))
    issues = [e.message for e in events if isinstance(e, ProtocolIssue)]
    assert len(issues) == 1 and issues[0].startswith("call CA42:") and "silent" in issues[0]
    assert issues_total("silence") == before + 1


async def test_twilio_transport_is_quiet_on_clean_speech_level_audio() -> None:
    audio = ulaw_encode(tone(1.5, 9000))
    messages = [start(TWILIO_FORMAT)] + [media(audio[i:i + 160], i // 160 + 2) for i in range(0, len(audio), 160)]
    events = await drain(TwilioTransport(FakeWebSocket(messages)))
    assert not [e for e in events if isinstance(e, ProtocolIssue)]
