"""The SIP media path without sockets: G.711 in and out, RFC 4733 DTMF, wrong payload types, loss, silence fill."""
from __future__ import annotations

import numpy as np
import pytest

from spotfunnel.audio.frames import FRAME_BYTES, SILENCE_FRAME
from spotfunnel.audio.g711 import alaw_encode, ulaw_encode
from spotfunnel.audio.levels import rms_dbfs
from spotfunnel.audio.profiles import ENCODING_ISSUES
from spotfunnel.transports.base import AudioIn, Dtmf, ProtocolIssue
from spotfunnel.transports.sip.dtmf import DtmfError, DtmfReceiver, event_payloads, parse_event
from spotfunnel.transports.sip.media import SipMediaCodec, sip_profile
from spotfunnel.transports.sip.rtp import RtpPacket, parse_rtp
from spotfunnel.transports.sip.sdp import AgreedMedia


def agreed(codec: str = "PCMU", ptime: int = 20) -> AgreedMedia:
    return AgreedMedia(codec, 0 if codec == "PCMU" else 8, ptime, 101, "127.0.0.1", 4000)


def tone8k(samples: int, offset: int = 0, freq: float = 440.0) -> bytes:
    t = np.arange(offset, offset + samples)
    return (np.sin(2 * np.pi * freq * t / 8000) * 8000).astype("<i2").tobytes()


def audio_packet(seq: int, samples: int = 160, codec: str = "PCMU", ssrc: int = 1, pt: int | None = None) -> bytes:
    encode = ulaw_encode if codec == "PCMU" else alaw_encode
    payload = encode(tone8k(samples, seq * samples))
    return RtpPacket(pt if pt is not None else (0 if codec == "PCMU" else 8), seq, seq * samples, ssrc,
                     payload).to_bytes()


def audio(events: list) -> list[bytes]:
    return [e.pcm for e in events if isinstance(e, AudioIn)]


def test_pcmu_packets_become_640_byte_frames_of_the_tone() -> None:
    codec = SipMediaCodec(agreed(), realtime=False)
    frames = [f for s in range(20) for f in audio(codec.decode_packet(audio_packet(s)))]
    assert len(frames) == 20 and all(len(f) == FRAME_BYTES for f in frames)
    assert rms_dbfs(b"".join(frames[5:])) > -20  # the tone survived G.711 and 8k -> 16k
    assert codec.stats["loud_frames_in"] >= 15


def test_pcma_with_30_ms_packets_gives_three_frames_per_two_packets() -> None:
    codec = SipMediaCodec(agreed("PCMA", ptime=30), realtime=False)
    counts = [len(audio(codec.decode_packet(audio_packet(s, 240, "PCMA")))) for s in range(10)]
    assert counts == [1, 2] * 5


def test_rfc4733_digits_once_each_across_repeats_and_end_packets() -> None:
    codec = SipMediaCodec(agreed(), realtime=False)
    out = []
    seq = 0
    for digit, ts in (("1", 1000), ("#", 5000), ("1", 9000)):
        for payload in event_payloads(digit):
            out += codec.decode_packet(RtpPacket(101, seq, ts, 77, payload).to_bytes())
            seq += 1
    assert [e.digit for e in out if isinstance(e, Dtmf)] == ["1", "#", "1"]


def test_dtmf_payload_parsing() -> None:
    event = parse_event(event_payloads("9")[-1])
    assert event.digit == "9" and event.end and event.duration == 800
    with pytest.raises(DtmfError, match="4"):
        parse_event(b"\x01")
    with pytest.raises(DtmfError, match="not a DTMF digit"):
        parse_event(bytes([40, 0, 0, 160]))
    with pytest.raises(ValueError, match="not a DTMF digit"):
        event_payloads("x")
    receiver = DtmfReceiver()
    assert receiver.feed(1, 10, event_payloads("5")[0]) == "5"
    assert receiver.feed(1, 10, event_payloads("5")[-1]) is None


def test_dtmf_in_the_audio_stream_is_not_counted_as_loss() -> None:
    codec = SipMediaCodec(agreed(), realtime=False)
    events = codec.decode_packet(audio_packet(0))
    events += codec.decode_packet(RtpPacket(101, 1, 160, 1, event_payloads("7")[0]).to_bytes())
    events += codec.decode_packet(audio_packet(2))
    assert [e.digit for e in events if isinstance(e, Dtmf)] == ["7"]
    assert codec.stats["concealed_samples"] == 0 and len(audio(events)) == 2


def test_wrong_payload_type_is_an_issue_with_a_metric_and_plays_silence() -> None:
    codec = SipMediaCodec(agreed("PCMU"), realtime=False, label="call-x")
    before = ENCODING_ISSUES.labels(transport="sip", kind="format")._value.get()
    events = codec.decode_packet(audio_packet(0))
    for s in range(1, 6):
        events += codec.decode_packet(audio_packet(s, codec="PCMA"))  # PCMA on a PCMU call
    issues = [e.message for e in events if isinstance(e, ProtocolIssue)]
    assert len(issues) == 1 and "payload type 8" in issues[0] and "call call-x" in issues[0]
    assert ENCODING_ISSUES.labels(transport="sip", kind="format")._value.get() == before + 1
    frames = audio(events)
    assert len(frames) == 6 and all(rms_dbfs(f) < -70 for f in frames[-2:])  # no garbled audio passed on
    assert codec.stats["wrong_payload_type"] == 5


def test_malformed_rtp_is_reported_not_raised() -> None:
    codec = SipMediaCodec(agreed(), realtime=False)
    events = [e for _ in range(10) for e in codec.decode_packet(b"\x00garbage")]
    assert len(events) == 3 and all(isinstance(e, ProtocolIssue) for e in events)  # the first three, then counted


def test_loss_is_concealed_and_duplicates_dropped() -> None:
    codec = SipMediaCodec(agreed(), realtime=False)
    frames = []
    for s in (0, 1, 1, 3, 4):  # 1 duplicated, 2 lost
        frames += audio(codec.decode_packet(audio_packet(s)))
    assert len(frames) == 5  # 0, 1, concealment for 2, 3, 4
    assert codec.stats["packets_duplicate"] == 1 and codec.stats["concealed_samples"] == 160


def test_realtime_tick_fills_silence_while_nothing_arrives() -> None:
    codec = SipMediaCodec(agreed(), realtime=True)
    assert audio(codec.decode_packet(audio_packet(0), now=0.0))
    assert codec.tick(0.04) == []  # a short pause may just be jitter
    filled = [f for t in (0.08, 0.10, 0.12, 0.14) for f in audio(codec.tick(t))]
    assert 3 <= len(filled) <= 4 and rms_dbfs(filled[-1]) < -70  # silence (after the resampler's tail)


def test_outbound_packets_are_160_bytes_with_continuous_numbering() -> None:
    codec = SipMediaCodec(agreed(), realtime=False)
    tone16k = (np.sin(np.arange(320) * 2 * np.pi * 440 / 16000) * 8000).astype("<i2").tobytes()
    packets = [parse_rtp(p) for slot in range(10) for p in codec.encode_frame(tone16k, slot)]
    assert len(packets) == 10 and all(len(p.payload) == 160 and p.payload_type == 0 for p in packets)
    assert all((b.sequence - a.sequence) % 65536 == 1 for a, b in zip(packets, packets[1:]))
    assert all((b.timestamp - a.timestamp) % 2**32 == 160 for a, b in zip(packets, packets[1:]))
    assert [p.marker for p in packets] == [True] + [False] * 9
    later = parse_rtp(codec.encode_frame(tone16k, 20)[0])  # the agent was silent for slots 10-19
    assert later.marker and (later.timestamp - packets[-1].timestamp) % 2**32 == 160 * 11
    assert (later.sequence - packets[-1].sequence) % 65536 == 1
    with pytest.raises(ValueError, match="640"):
        codec.encode_frame(b"\x00" * 100)


def test_outbound_30_ms_ptime_and_profile() -> None:
    codec = SipMediaCodec(agreed("PCMA", ptime=30), realtime=False)
    packets = [parse_rtp(p) for slot in range(6) for p in codec.encode_frame(SILENCE_FRAME, slot)]
    assert [len(p.payload) for p in packets] == [240] * 4 and packets[0].payload_type == 8
    profile = sip_profile(agreed("PCMA", ptime=30))
    assert (profile.codec, profile.sample_rate, profile.frame_bytes) == ("pcma", 8000, 240)


def test_oversized_rtp_payloads_are_dropped_and_counted() -> None:
    codec = SipMediaCodec(agreed(), realtime=False)
    huge = RtpPacket(0, 0, 0, 1, ulaw_encode(tone8k(8000))).to_bytes()  # one second in one packet
    events = codec.decode_packet(huge)
    assert audio(events) == [] and codec.stats["packets_oversized"] == 1
    assert any("payload bytes dropped" in e.message for e in events if isinstance(e, ProtocolIssue))
    longest = RtpPacket(0, 1, 0, 1, ulaw_encode(tone8k(480))).to_bytes()  # 60 ms: still taken
    assert len(audio(codec.decode_packet(longest))) == 3 and codec.stats["packets_oversized"] == 1


def test_loss_is_concealed_at_the_agreed_ptime_whatever_the_packets_carry() -> None:
    codec = SipMediaCodec(agreed(), realtime=False)  # 20 ms agreed
    codec.decode_packet(audio_packet(0, samples=320))  # the caller sends 40 ms anyway
    codec.decode_packet(audio_packet(2))  # 1 is lost
    assert codec.stats["concealed_samples"] == 160  # one agreed packet, not the peer's 320
