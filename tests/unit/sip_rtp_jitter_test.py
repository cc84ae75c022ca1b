"""RTP headers and the jitter buffer: reordering, duplicates, late packets, sequence wraparound, gaps, restarts."""
from __future__ import annotations

import struct

import pytest

from spotfunnel.transports.sip.jitter import Gap, JitterBuffer
from spotfunnel.transports.sip.rtp import RtpError, RtpPacket, RtpSender, extend_sequence, parse_rtp


def pkt(seq: int, ssrc: int = 7, pt: int = 0) -> RtpPacket:
    return RtpPacket(pt, seq % 65536, seq * 160, ssrc, bytes([seq % 256]) * 160)


def seqs(items: list) -> list:
    return [("gap", i.packets) if isinstance(i, Gap) else i.sequence for i in items]


def test_header_round_trip_and_fields() -> None:
    p = RtpPacket(8, 65535, 2**32 - 1, 0xDEADBEEF, b"\x55" * 160, marker=True)
    data = p.to_bytes()
    assert len(data) == 172 and data[0] == 0x80 and data[1] == 0x88
    assert parse_rtp(data) == p


def test_csrc_extension_and_padding_are_skipped() -> None:
    header = bytes([0x80 | 0x20 | 0x10 | 0x01, 0]) + struct.pack("!HII", 1, 160, 9)
    csrc = struct.pack("!I", 42)
    ext = struct.pack("!HH", 0xBEDE, 1) + b"\x00" * 4
    data = header + csrc + ext + b"\xff" * 10 + b"\x00\x00\x03"
    assert parse_rtp(data).payload == b"\xff" * 10


@pytest.mark.parametrize("data, says", [
    (b"\x80\x00", "shorter"),
    (bytes([0x40, 0]) + bytes(10), "version 1"),
    (bytes([0x80, 0xC8]) + bytes(10), "RTCP"),
    (bytes([0xA0, 0]) + bytes(10) + b"\x00", "padding"),
    (bytes([0x90, 0]) + bytes(10) + b"\x00", "extension"),
])
def test_malformed_packets(data: bytes, says: str) -> None:
    with pytest.raises(RtpError, match=says):
        parse_rtp(data)


def test_sequence_extension_across_the_wrap() -> None:
    assert extend_sequence(2, 65534) == 65538
    assert extend_sequence(65535, 65538) == 65535
    assert extend_sequence(100, 70000) == 65636


def test_sender_numbers_packets_and_marks_talk_spurts() -> None:
    s = RtpSender(0, ssrc=5)
    a, b = s.packet(b"x" * 160, 160), s.packet(b"x" * 160, 160)
    assert a.marker and not b.marker
    assert (b.sequence - a.sequence) % 65536 == 1 and (b.timestamp - a.timestamp) % 2**32 == 160
    c = s.packet(b"x" * 160, 160, position=160 * 10)  # after 8 frames of silence
    assert c.marker and (c.timestamp - a.timestamp) % 2**32 == 1600 and (c.sequence - b.sequence) % 65536 == 1
    s.talkspurt()
    assert s.packet(b"x" * 160, 160).marker


def test_in_order_packets_play_at_once() -> None:
    jb = JitterBuffer()
    for s in range(5):
        assert jb.push(pkt(s)) == "accepted"
        assert seqs(jb.pop_ready()) == [s]


def test_out_of_order_packets_are_reordered() -> None:
    jb = JitterBuffer(depth=3)
    jb.push(pkt(10))
    assert seqs(jb.pop_ready()) == [10]
    jb.push(pkt(12))
    assert jb.pop_ready() == []  # 11 may still come
    jb.push(pkt(11))
    assert seqs(jb.pop_ready()) == [11, 12]


def test_duplicates_are_dropped_queued_or_played() -> None:
    jb = JitterBuffer()
    jb.push(pkt(1))
    jb.pop_ready()
    assert jb.push(pkt(1)) == "duplicate"
    jb.push(pkt(3))
    assert jb.push(pkt(3)) == "duplicate"
    assert jb.stats["duplicate"] == 2


def test_a_hole_becomes_a_gap_after_depth_packets_and_the_straggler_is_late() -> None:
    jb = JitterBuffer(depth=3)
    jb.push(pkt(0))
    jb.pop_ready()
    for s in (2, 3):
        jb.push(pkt(s))
        assert jb.pop_ready() == []
    jb.push(pkt(4))
    assert seqs(jb.pop_ready()) == [("gap", 1), 2, 3, 4]
    assert jb.push(pkt(1)) == "late"
    assert jb.stats["lost"] == 1


def test_a_hole_expires_by_time_with_a_clock() -> None:
    jb = JitterBuffer(depth=10, max_wait_s=0.06)
    jb.push(pkt(0), now=0.0)
    jb.pop_ready(0.0)
    jb.push(pkt(2), now=0.02)
    assert jb.pop_ready(0.05) == []
    assert seqs(jb.pop_ready(0.09)) == [("gap", 1), 2]


def test_wraparound_keeps_order() -> None:
    jb = JitterBuffer(depth=3)
    jb.push(pkt(65534))
    jb.pop_ready()
    jb.push(pkt(65536))  # seq 0 arrives before 65535
    jb.push(pkt(65535))
    jb.push(pkt(65537))
    assert seqs(jb.pop_ready()) == [65535, 0, 1]


def test_long_holes_are_not_concealed_and_restarts_resync() -> None:
    jb = JitterBuffer(depth=1, max_gap=25)
    jb.push(pkt(0))
    jb.pop_ready()
    jb.push(pkt(100))  # a pause in sending, not 99 lost packets
    assert seqs(jb.pop_ready()) == [100]
    assert jb.push(pkt(40000)) == "restarted"  # far jump: the sender restarted its numbering
    assert seqs(jb.pop_ready()) == [40000]
    assert jb.push(pkt(5, ssrc=99)) == "accepted"  # a new SSRC is a new stream
    assert seqs(jb.pop_ready()) == [5]
    assert jb.stats["restarted"] == 2


def test_force_releases_everything_at_the_end() -> None:
    jb = JitterBuffer(depth=5)
    jb.push(pkt(0))
    jb.pop_ready()
    jb.push(pkt(3))
    assert seqs(jb.pop_ready(force=True)) == [("gap", 2), 3]
