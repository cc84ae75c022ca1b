"""Jitter buffer for one RTP stream: reorder by sequence (with wraparound), drop duplicates and late packets, mark gaps."""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Literal, Union

from spotfunnel.transports.sip.rtp import RtpPacket, extend_sequence

__all__ = ["Gap", "JitterBuffer", "PushResult"]

PushResult = Literal["accepted", "duplicate", "late", "restarted"]


@dataclass(frozen=True)
class Gap:
    """`packets` consecutive packets never arrived; the player conceals them."""

    packets: int


Played = Union[RtpPacket, Gap]


class JitterBuffer:
    """Holds packets until they can be played in sequence order.

    Packets are released as soon as they are next in order, so an in-order stream adds no delay.
    A missing packet is waited for until `depth` later packets are queued or (with a clock) the
    oldest queued one has waited `max_wait_s`; then the hole is released as a `Gap`. A packet at
    or behind the play position is dropped: 'duplicate' when it was already played or queued,
    'late' when its slot was concealed. A jump of more than `resync` sequence numbers either way
    (a restarted sender) restarts the buffer at the new number instead of waiting or dropping.
    """

    def __init__(self, depth: int = 3, max_wait_s: float = 0.06, resync: int = 1000, max_gap: int = 25) -> None:
        self.depth = depth
        self.max_wait_s = max_wait_s
        self.resync = resync
        self.max_gap = max_gap  # a longer hole is a pause in sending, not loss: no concealment for it
        self.ssrc: int | None = None
        self._next: int | None = None  # extended sequence number to play next
        self._queued: dict[int, tuple[RtpPacket, float]] = {}
        self._played: deque[int] = deque(maxlen=128)
        self.stats = {"accepted": 0, "duplicate": 0, "late": 0, "restarted": 0, "lost": 0}

    def __len__(self) -> int:
        return len(self._queued)

    def reset(self) -> None:
        self.ssrc = None
        self._next = None
        self._queued.clear()
        self._played.clear()

    def push(self, packet: RtpPacket, now: float = 0.0) -> PushResult:
        """Queue a packet; says whether it was taken."""
        if self._next is None or packet.ssrc != self.ssrc:
            restarted = self._next is not None
            self.reset()
            self.ssrc, self._next = packet.ssrc, packet.sequence
            if restarted:
                self.stats["restarted"] += 1
        assert self._next is not None
        ext = extend_sequence(packet.sequence, self._next)
        if abs(ext - self._next) > self.resync:
            self.reset()
            self.ssrc, self._next = packet.ssrc, packet.sequence
            ext = packet.sequence
            result: PushResult = "restarted"
        elif ext in self._queued or (ext < self._next and ext in self._played):
            result = "duplicate"
        elif ext < self._next:
            result = "late"
        else:
            result = "accepted"
        self.stats[result] += 1
        if result in ("accepted", "restarted"):
            self._queued[ext] = (packet, now)
        return result

    def pop_ready(self, now: float | None = None, *, force: bool = False) -> list[Played]:
        """Packets (and Gaps) ready to play, in order. `force` releases every hole (end of stream)."""
        out: list[Played] = []
        while self._queued and self._next is not None:
            if self._next in self._queued:
                packet, _ = self._queued.pop(self._next)
                self._played.append(self._next)
                self._next += 1
                out.append(packet)
                continue
            if not (force or self._hole_expired(now)):
                break
            first = min(self._queued)
            missing = first - self._next
            self.stats["lost"] += missing
            if missing <= self.max_gap:
                out.append(Gap(missing))
            self._next = first
        return out

    def _hole_expired(self, now: float | None) -> bool:
        if len(self._queued) >= self.depth:
            return True
        if now is None:
            return False
        oldest = min(arrived for _, arrived in self._queued.values())
        return now - oldest >= self.max_wait_s
