"""What one Twilio media stream may cost us: its timeouts, message and buffer caps, junk budget and inbound pacing."""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["InboundPacer", "IssueLog", "JunkBudget", "MessageOrder", "StreamLimits"]

FRAME_S = 0.020


@dataclass(frozen=True)
class StreamLimits:
    """The bounds of one stream (wall time: this is the transport edge).

    Twilio sends `connected` and `start` as soon as the socket opens and a media message every
    20 ms for the whole call, silence included, so a stream quiet for seconds is gone or hostile.
    """

    start_timeout_s: float = 5.0  # socket open, no valid `start` by then: closed
    idle_timeout_s: float = 10.0  # started, no media for this long: the call ends ("the stream went silent")
    #: a media message is ~300 characters (160 bytes of audio in base64) and a start message a few KB;
    #: anything larger is refused before it is parsed
    max_message_chars: int = 8192
    max_buffered_frames: int = 25  # caller audio waiting for its turn (500 ms); more is dropped and counted
    burst_s: float = 0.2  # how far ahead of real time a burst may run (network jitter Twilio may bunch up)
    junk_budget: int = 50  # malformed messages a stream may send (net of good ones) before it is closed
    good_per_junk: int = 10  # good messages that earn back one unit of the junk budget
    log_first_issues: int = 5  # protocol issues logged in full per stream; then one line per 100


class InboundPacer:
    """Releases caller frames at most at real-time pace (plus a short burst), whatever pace they arrive at.

    A sender that falls behind does not bank credit: the clock rebases on the late frame, so what
    it later pushes in a rush is paced too.
    """

    def __init__(self, burst_s: float) -> None:
        self.burst_s = burst_s
        self._due: float | None = None  # wall time at which the next frame would play in real time

    def wait_s(self, now: float) -> float:
        """How long the next frame must wait before it may be released (0: now)."""
        if self._due is None:
            return 0.0
        return max(0.0, self._due - self.burst_s - now)

    def released(self, now: float) -> None:
        if self._due is None or now > self._due:
            self._due = now
        self._due += FRAME_S


class JunkBudget:
    """Counts malformed messages; a stream that keeps sending them runs out of budget and is closed."""

    def __init__(self, budget: int, good_per_junk: int) -> None:
        self.cap, self.left, self.good_per_junk = budget, budget, good_per_junk
        self.junk = 0
        self._good = 0

    def good(self) -> None:
        self._good += 1
        if self._good >= self.good_per_junk:
            self._good = 0
            self.left = min(self.cap, self.left + 1)

    def spend(self) -> bool:
        """Count one junk message; True when the budget is exhausted."""
        self.junk += 1
        self.left -= 1
        return self.left <= 0


class IssueLog:
    """Rate limit for protocol issues: the first `first` of a stream, then one summary per `every`."""

    def __init__(self, first: int = 5, every: int = 100) -> None:
        self.first, self.every = first, every
        self.count = 0

    def admit(self) -> str | None:
        """Count one issue; None to stay quiet, else a prefix for the line that reports it."""
        self.count += 1
        if self.count <= self.first:
            return ""
        if self.count % self.every == 0:
            return f"{self.count} protocol issues on this stream so far (only every {self.every}th is reported); "
        return None


class MessageOrder:
    """Tracks a monotonically increasing message counter; says what to do with the next value.

    A value at or below the last one is a duplicate or a late arrival and is dropped, unless it is
    more than RESYNC_WINDOW behind: then the counter itself jumped (a corrupt or restarted
    sequence), and it is accepted and followed from there rather than dropping the rest of the call.
    """

    RESYNC_WINDOW = 50  # one second of 20 ms media messages

    def __init__(self, label: str) -> None:
        self.label = label
        self.last: int | None = None

    def check(self, value: int) -> tuple[bool, str | None]:
        """(accept, issue message) for the counter value of an arriving message."""
        last = self.last
        if last is not None and last - self.RESYNC_WINDOW <= value <= last:
            kind = "duplicate" if value == last else "late (out of order)"
            return False, f"{kind} message dropped: {self.label} {value} after {last}"
        self.last = value
        if last is not None and value < last:
            return True, f"{self.label} jumped back from {last} to {value}; following the new numbering"
        if last is not None and value > last + 1:
            missing = value - last - 1
            return True, f"{missing} message(s) missing before {self.label} {value} (gap after {last})"
        return True, None
