"""RTP packets (RFC 3550): parse and build headers; the sender's sequence, timestamp, SSRC and marker."""
from __future__ import annotations

import random
import struct
from dataclasses import dataclass

__all__ = ["RtpError", "RtpPacket", "RtpSender", "extend_sequence", "parse_rtp"]

_HEADER = struct.Struct("!BBHII")
SEQ_MOD = 1 << 16
TS_MOD = 1 << 32


class RtpError(ValueError):
    """The datagram is not a valid RTP packet; the message says why."""


@dataclass(frozen=True)
class RtpPacket:
    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes
    marker: bool = False

    def to_bytes(self) -> bytes:
        """Wire form: a 12-byte header (version 2, no padding, extension or CSRCs) and the payload."""
        return _HEADER.pack(0x80, (0x80 if self.marker else 0) | (self.payload_type & 0x7F),
                            self.sequence % SEQ_MOD, self.timestamp % TS_MOD, self.ssrc & 0xFFFFFFFF) + self.payload


def parse_rtp(data: bytes) -> RtpPacket:
    """Parse one datagram; CSRCs, header extension and padding are skipped. Raises RtpError."""
    if len(data) < _HEADER.size:
        raise RtpError(f"{len(data)} bytes is shorter than an RTP header (12)")
    b0, b1, seq, ts, ssrc = _HEADER.unpack_from(data)
    if b0 >> 6 != 2:
        raise RtpError(f"RTP version {b0 >> 6}, expected 2")
    pt = b1 & 0x7F
    if 72 <= pt <= 76:
        raise RtpError(f"payload type {pt} is RTCP, not RTP (RTCP belongs on the next port)")
    offset = _HEADER.size + 4 * (b0 & 0x0F)
    if b0 & 0x10:  # header extension: 16-bit profile, 16-bit length in 32-bit words
        if len(data) < offset + 4:
            raise RtpError("header extension cut short")
        (words,) = struct.unpack_from("!H", data, offset + 2)
        offset += 4 + 4 * words
    end = len(data)
    if b0 & 0x20:  # padding: the last byte says how many bytes to drop
        pad = data[-1]
        if pad == 0 or pad > end - offset:
            raise RtpError(f"bad padding length {pad}")
        end -= pad
    if offset > end:
        raise RtpError("header longer than the packet")
    return RtpPacket(pt, seq, ts, ssrc, bytes(data[offset:end]), bool(b1 & 0x80))


def extend_sequence(seq: int, reference: int) -> int:
    """The extended (unwrapped) sequence number nearest `reference` with these low 16 bits."""
    base = reference - (reference % SEQ_MOD)
    candidates = (base - SEQ_MOD + seq, base + seq, base + SEQ_MOD + seq)
    return min(candidates, key=lambda c: abs(c - reference))


class RtpSender:
    """Numbers outbound packets: +1 sequence per packet, timestamp in samples, one random SSRC.

    `packet(payload, slot_ts)` places the packet at an absolute sample position (from the first
    packet); a jump past the next contiguous position (a silence gap) or `talkspurt()` sets the
    marker bit on the next packet, as RFC 3551 4.1 asks at the start of each talk spurt.
    """

    def __init__(self, payload_type: int, ssrc: int | None = None) -> None:
        self.payload_type = payload_type
        self.ssrc = ssrc if ssrc is not None else random.getrandbits(32)
        self._seq0 = random.getrandbits(16)
        self._ts0 = random.getrandbits(32)
        self.sent = 0
        self.next_position = 0  # sample position right after the last packet
        self._marker = True

    def talkspurt(self) -> None:
        """The next packet starts a talk spurt (after silence or a clear)."""
        self._marker = True

    def packet(self, payload: bytes, samples: int, position: int | None = None,
               payload_type: int | None = None) -> RtpPacket:
        """The next packet carrying `samples` samples, at `position` (default: right after the last)."""
        pos = self.next_position if position is None else max(position, self.next_position)
        if pos > self.next_position:
            self._marker = True
        pkt = RtpPacket(self.payload_type if payload_type is None else payload_type,
                        (self._seq0 + self.sent) % SEQ_MOD, (self._ts0 + pos) % TS_MOD, self.ssrc, payload,
                        self._marker)
        self._marker = False
        self.sent += 1
        self.next_position = pos + samples
        return pkt

    def event_packet(self, payload: bytes, payload_type: int, position: int, marker: bool) -> RtpPacket:
        """A telephone-event packet: its own timestamp (the event start) and the shared sequence."""
        pkt = RtpPacket(payload_type, (self._seq0 + self.sent) % SEQ_MOD, (self._ts0 + position) % TS_MOD,
                        self.ssrc, payload, marker)
        self.sent += 1
        return pkt
