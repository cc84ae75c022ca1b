"""RFC 4733 (ex-2833) telephone-event payloads: DTMF digits in RTP, received once each and sent as a sender does."""
from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass

__all__ = ["DIGITS", "DtmfError", "DtmfEvent", "DtmfReceiver", "event_payloads", "info_digits", "parse_event"]

DIGITS = "0123456789*#ABCD"
_PAYLOAD = struct.Struct("!BBH")


class DtmfError(ValueError):
    """A telephone-event payload that cannot be read."""


@dataclass(frozen=True)
class DtmfEvent:
    digit: str
    end: bool
    volume: int
    duration: int  # in timestamp units (samples at 8 kHz)


def parse_event(payload: bytes) -> DtmfEvent:
    """Parse the 4-byte event payload: event, E bit, volume, duration."""
    if len(payload) < 4:
        raise DtmfError(f"telephone-event payload of {len(payload)} bytes, expected 4")
    event, flags, duration = _PAYLOAD.unpack_from(payload)
    if event >= len(DIGITS):
        raise DtmfError(f"telephone-event {event} is not a DTMF digit (0-15)")
    return DtmfEvent(DIGITS[event], bool(flags & 0x80), flags & 0x3F, duration)


def event_payloads(digit: str, duration_samples: int = 800, step: int = 160, volume: int = 10,
                   end_repeats: int = 3) -> list[bytes]:
    """The payloads a sender puts on the wire for one key press: growing durations, then the end x3."""
    if len(digit) != 1 or digit.upper() not in DIGITS:
        raise ValueError(f"not a DTMF digit: {digit!r} (use 0-9, *, #, A-D)")
    code = DIGITS.index(digit.upper())
    body = [_PAYLOAD.pack(code, volume & 0x3F, d) for d in range(step, duration_samples, step)]
    end = _PAYLOAD.pack(code, 0x80 | (volume & 0x3F), duration_samples)
    return body + [end] * end_repeats


class DtmfReceiver:
    """Turns telephone-event packets into digits: one digit per event, however often it is repeated.

    An event is identified by (SSRC, RTP timestamp): every packet of one key press, the three end
    packets included, carries the timestamp of the press's start (RFC 4733 2.5.1.3).
    """

    def __init__(self) -> None:
        self._seen: deque[tuple[int, int]] = deque(maxlen=32)

    def feed(self, ssrc: int, timestamp: int, payload: bytes) -> str | None:
        """The digit when this packet starts a new event; None for repeats. Raises DtmfError."""
        event = parse_event(payload)
        key = (ssrc, timestamp)
        if key in self._seen:
            return None
        self._seen.append(key)
        return event.digit


def info_digits(body: bytes) -> list[str]:
    """The digits of a SIP INFO application/dtmf-relay body ('Signal=5'), which some phones send instead."""
    digits = []
    for line in body.decode("utf-8", "replace").splitlines():
        key, _, value = line.partition("=")
        if key.strip().lower() == "signal" and value.strip():
            digits.append(value.strip()[0])
    return digits
