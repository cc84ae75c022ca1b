"""What one browser call may cost us: its deadlines, message caps, junk budget and the paced inbound buffer."""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from spotfunnel.transports.base import AudioIn, InboundEvent
from spotfunnel.transports.twilio_guard import InboundPacer, IssueLog, JunkBudget

__all__ = ["BrowserLimits", "JunkGuard", "PacedInbound"]


@dataclass(frozen=True)
class BrowserLimits:
    """The bounds of one browser call (wall time: this is the transport edge).

    A page sends its start (WebSocket) or finishes ICE and DTLS (WebRTC) within a second or two, and
    then a 20 ms frame of microphone audio every 20 ms for the whole call, silence included; a call
    quiet for seconds is a page that is gone (or never was one), and it ends so its seat is free.
    """

    start_timeout_s: float = 15.0  # WebSocket open, no start message by then: closed
    connect_timeout_s: float = 15.0  # WebRTC offer answered, no audio by then: ICE or DTLS never completed
    idle_timeout_s: float = 10.0  # started, no caller audio for this long: the call ends
    send_timeout_s: float = 2.0  # one message to a page that stopped reading (its socket buffer full): closed
    #: one binary message of audio: the page's worklet sends 640-byte (20 ms) frames; up to 100 ms is re-chunked
    max_audio_bytes: int = 3200
    #: one JSON control message (WebSocket text or data channel): a start is ~120 characters, a mark ~40
    max_control_chars: int = 1024
    max_buffered_frames: int = 25  # caller audio waiting for its turn (500 ms); more is dropped and counted
    burst_s: float = 0.2  # how far ahead of real time a burst may run (network jitter)
    junk_budget: int = 50  # junk messages a call may send (net of good ones) before it is closed
    good_per_junk: int = 10  # good messages that earn back one unit of the junk budget
    log_first_issues: int = 5  # protocol issues reported in full per call; then one line per 100
    max_held_events: int = 256  # page events held until the WebRTC data channel opens; older ones dropped


class JunkGuard:
    """Counts a call's protocol issues: reports the first few and then one in a hundred, and closes a junk source.

    Every issue is counted; only the admitted ones reach the log and the call's events, so a flood
    of junk grows neither. Junk spends the budget and good messages earn it back slowly, so a page
    with the odd bad message is never cut off, while one that keeps sending junk is.
    """

    def __init__(self, limits: BrowserLimits) -> None:
        self._budget = JunkBudget(limits.junk_budget, limits.good_per_junk)
        self._log = IssueLog(first=limits.log_first_issues)

    @property
    def junk(self) -> int:
        return self._budget.junk

    @property
    def issues(self) -> int:
        return self._log.count

    def admit(self, message: str) -> str | None:
        """Count one issue; the line to report for it, or None to stay quiet."""
        prefix = self._log.admit()
        return None if prefix is None else prefix + message

    def spend(self) -> bool:
        """Count one junk message; True once the call has sent too much junk and must be closed."""
        return self._budget.spend()

    def good(self) -> None:
        self._budget.good()


class PacedInbound:
    """A call's inbound items in order, caller audio released at most at real-time pace.

    A sender that pushes audio faster than real time does not drive the call's clock: frames wait
    their turn in a buffer of `max_buffered_frames`, and what arrives beyond it is dropped and counted.
    """

    def __init__(self, limits: BrowserLimits) -> None:
        self._items: deque[InboundEvent] = deque()
        self._audio_waiting = 0
        self._cap = limits.max_buffered_frames
        self._pacer = InboundPacer(limits.burst_s)
        self.dropped_frames = 0

    def __bool__(self) -> bool:
        return bool(self._items)

    def put(self, event: InboundEvent) -> None:
        """Queue a control event (start, DTMF, mark, issue, hang-up): these are few and never dropped."""
        self._items.append(event)

    def put_audio(self, pcm: bytes) -> bool:
        """Queue one 640-byte frame; False when the buffer is full and the frame was dropped."""
        if self._audio_waiting >= self._cap:
            self.dropped_frames += 1
            return False
        self._items.append(AudioIn(pcm))
        self._audio_waiting += 1
        return True

    def wait_s(self, now: float, ended: bool) -> float:
        """How long the next item must wait (0: take it now). After the end the tail goes at once."""
        if not self._items or not isinstance(self._items[0], AudioIn) or ended:
            return 0.0
        return self._pacer.wait_s(now)

    def take(self, now: float) -> InboundEvent:
        """The next item, its release counted on the pacing clock."""
        item = self.popleft()
        if isinstance(item, AudioIn):
            self._pacer.released(now)
        return item

    def popleft(self) -> InboundEvent:
        """The next item, outside the pacing clock (codec benchmarks take items straight off the queue)."""
        item = self._items.popleft()
        if isinstance(item, AudioIn):
            self._audio_waiting -= 1
        return item

    def clear(self) -> None:
        self._items.clear()
        self._audio_waiting = 0
