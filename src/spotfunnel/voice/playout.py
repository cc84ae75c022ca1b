"""The playout clock: agent audio leaves one 20 ms frame per tick, and marks echoed by the far end say what was heard."""
from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from dataclasses import dataclass, field

import structlog

from spotfunnel.audio.frames import FRAME_BYTES, FRAME_MS

log = structlog.get_logger(__name__)

_ids = itertools.count(1)
_mark_ids = itertools.count(1)


@dataclass(frozen=True)
class SpeechResult:
    text: str  # everything the agent meant to say
    heard: str  # the words whose audio actually played
    interrupted: bool
    played_ms: int


@dataclass
class _Sentence:
    text: str
    start: int  # byte offset of its audio in the handle's buffer
    end: int | None = None  # None while still being synthesized


class SpeechHandle:
    """One thing the agent says: its audio is appended sentence by sentence while it plays."""

    def __init__(self, text: str, meta: dict[str, object] | None = None) -> None:
        self.id = next(_ids)
        self.text = text
        self.meta = meta or {}
        self.audio = bytearray()
        self.sentences: list[_Sentence] = []
        self.played = 0  # bytes sent to the transport (the far end may still be playing them)
        self.first_frame = 0  # the clock's sent-frame count before this speech's first frame
        self.synth_done = False
        self.started = False
        self.first_audio_wall: float | None = None  # first frame handed to the transport
        self.tts_ready_wall: float | None = None  # first synthesized audio available
        self.audible = asyncio.Event()  # set at the first frame sent, or when it ends silent
        self._result: asyncio.Future[SpeechResult] = asyncio.get_running_loop().create_future()

    # -- filled by the TTS task --
    def begin_sentence(self, text: str) -> None:
        self.sentences.append(_Sentence(text, len(self.audio)))

    def add_audio(self, pcm: bytes) -> None:
        if self.tts_ready_wall is None:
            self.tts_ready_wall = time.perf_counter()
        self.audio.extend(pcm)

    def end_sentence(self) -> None:
        if self.sentences:
            self.sentences[-1].end = len(self.audio)

    def finish_synthesis(self) -> None:
        self.synth_done = True

    # -- read by the caller of say() --
    async def result(self) -> SpeechResult:
        return await asyncio.shield(self._result)

    @property
    def done(self) -> bool:
        return self._result.done()

    @property
    def fully_sent(self) -> bool:
        return self.synth_done and self.played >= len(self.audio)

    def heard_text(self, heard_bytes: int | None = None) -> str:
        """Whole sentences heard, plus the words of the current one in proportion."""
        heard = self.played if heard_bytes is None else heard_bytes
        words: list[str] = []
        for s in self.sentences:
            end = s.end if s.end is not None else len(self.audio)
            if heard >= end:
                words.extend(s.text.split())
            elif heard > s.start:
                sw = s.text.split()
                share = (heard - s.start) / max(1, end - s.start)
                words.extend(sw[: int(len(sw) * share)])
                break
            else:
                break
        return " ".join(words)

    def sentence_ends_between(self, before: int, after: int) -> bool:
        """Whether a sentence (not the last) ends within the bytes sent in (before, after]."""
        return any(s.end is not None and before < s.end <= after < len(self.audio) for s in self.sentences)

    def settle_unheard(self) -> SpeechResult:
        """Nothing of it will play (the line has gone): done at once, heard empty."""
        return self._settle(interrupted=True, heard_bytes=0)

    def _settle(self, interrupted: bool, heard_bytes: int | None = None) -> SpeechResult:
        heard_bytes = self.played if heard_bytes is None else min(heard_bytes, self.played)
        if interrupted and self.synth_done and heard_bytes >= len(self.audio):
            interrupted = False  # every frame had played before the stop: nothing was cut
        heard = self.text if not interrupted else self.heard_text(heard_bytes)
        result = SpeechResult(self.text, heard, interrupted, heard_bytes // (FRAME_BYTES // FRAME_MS))
        if not self._result.done():
            self._result.set_result(result)
        self.audible.set()
        return result


@dataclass
class Tick:
    """What one tick of the clock produced."""

    frame: bytes | None = None  # the agent frame to send now, or None (nothing ready)
    marks: list[str] = field(default_factory=list)  # marks to send right after the frame
    sent_all: SpeechHandle | None = None  # a speech whose last frame (or empty synthesis) went out now
    settled: list[SpeechHandle] = field(default_factory=list)  # speeches now known to be played


@dataclass
class _Mark:
    handle: SpeechHandle
    frame: int  # the clock's sent-frame count the mark stands for
    final: bool


@dataclass
class PlayoutClock:
    """Plays queued speech in order, one frame per call to `tick`.

    With a transport that echoes marks (`echoes_marks`), a mark follows every sentence end and every
    `mark_every` frames; an echo confirms the audio up to it was played at the far end, and a speech
    is finished only when its final mark comes back. What was heard when speech stops is the
    confirmed audio plus the ticks since the last echo (the far end plays one frame per tick), never
    more than was sent. Without echoes, a speech is finished when its last frame was sent.
    """

    echoes_marks: bool = False
    mark_every: int = 10  # frames between marks while speaking (200 ms)
    echo_timeout: int = 150  # frames to wait for a final echo before trusting the send (3 s)
    queue: deque[SpeechHandle] = field(default_factory=deque)
    awaiting: deque[SpeechHandle] = field(default_factory=deque)  # sent, final echo not back yet
    frames_played: int = 0  # frames sent
    confirmed: int = 0  # frames confirmed played by an echo
    since_echo: int = 0  # ticks since the last echo (or since the last reset)
    _marks: dict[str, _Mark] = field(default_factory=dict)
    _last_mark_frame: int = 0
    _sent_at: dict[int, int] = field(default_factory=dict)  # handle id -> tick count when fully sent
    _ticks: int = 0

    def enqueue(self, handle: SpeechHandle) -> None:
        self.queue.append(handle)

    @property
    def busy(self) -> bool:
        """Agent speech is playing (at the far end too) or waiting to play."""
        return bool(self.queue or self.awaiting)

    @property
    def current(self) -> SpeechHandle | None:
        return self.queue[0] if self.queue else None

    @property
    def heard_frames(self) -> int:
        """Frames the far end has played by now: confirmed, plus one per tick since (at most all sent)."""
        return min(self.frames_played, self.confirmed + self.since_echo)

    def tick(self) -> Tick:
        """The next frame to send (or None), the marks to follow it, and the speeches finished."""
        self._ticks += 1
        # The far end plays one frame per tick only while it has one: idle ticks (between turns) must
        # not count, or the next speech would be taken as heard the moment it is sent.
        self.since_echo = min(self.since_echo + 1, self.frames_played - self.confirmed)
        out = Tick()
        while self.queue:
            h = self.queue[0]
            available = len(h.audio) - h.played
            if available >= FRAME_BYTES or (h.synth_done and available > 0):
                out.frame = self._send_frame(h, out)
                break
            if h.synth_done:  # nothing to say (empty synthesis)
                self.queue.popleft()
                h._settle(interrupted=False)
                out.sent_all = h
                out.settled.append(h)
                continue
            break  # audio still being synthesized: a gap
        out.settled.extend(self._overdue())
        return out

    def _send_frame(self, h: SpeechHandle, out: Tick) -> bytes:
        if not h.started:
            h.first_frame = self.frames_played
        before = h.played
        frame = bytes(h.audio[h.played : h.played + FRAME_BYTES])
        h.played += len(frame)
        h.started = True
        self.frames_played += 1
        if h.fully_sent:
            self.queue.popleft()
            out.sent_all = h
            if self.echoes_marks:
                out.marks.append(self._mark(h, final=True))
                self.awaiting.append(h)
                self._sent_at[h.id] = self._ticks
            else:
                h._settle(interrupted=False)
                out.settled.append(h)
        elif self.echoes_marks and (h.sentence_ends_between(before, h.played)
                                    or self.frames_played - self._last_mark_frame >= self.mark_every):
            out.marks.append(self._mark(h, final=False))
        return frame.ljust(FRAME_BYTES, b"\x00")

    def _mark(self, h: SpeechHandle, final: bool) -> str:
        name = f"speech-{h.id}-{next(_mark_ids)}"
        self._marks[name] = _Mark(h, self.frames_played, final)
        self._last_mark_frame = self.frames_played
        return name

    def mark_played(self, name: str) -> list[SpeechHandle] | None:
        """An echo: the audio up to the mark was played. The speeches it finishes, or None when the
        mark is not pending (it was cleared by a barge-in, so its echo proves nothing)."""
        mark = self._marks.pop(name, None)
        if mark is None:
            return None
        for older in [n for n, m in self._marks.items() if m.frame < mark.frame]:
            del self._marks[older]  # marks come back in order: an earlier one was lost
        self.confirmed = max(self.confirmed, mark.frame)
        self.since_echo = 0
        return self._settle_played()

    def _settle_played(self) -> list[SpeechHandle]:
        done = []
        while self.awaiting and self.awaiting[0].first_frame + self._frames_of(self.awaiting[0]) <= self.confirmed:
            h = self.awaiting.popleft()
            self._sent_at.pop(h.id, None)
            h._settle(interrupted=False)
            done.append(h)
        return done

    def _overdue(self) -> list[SpeechHandle]:
        """A final echo that never came (a lost mark): trust the send after `echo_timeout` ticks."""
        done = []
        while self.awaiting and self._ticks - self._sent_at.get(self.awaiting[0].id, self._ticks) >= self.echo_timeout:
            h = self.awaiting.popleft()
            self._sent_at.pop(h.id, None)
            log.warning("playout.mark_echo_missing", speech=h.id, waited_frames=self.echo_timeout)
            h._settle(interrupted=False)
            done.append(h)
        return done

    @staticmethod
    def _frames_of(h: SpeechHandle) -> int:
        return -(-h.played // FRAME_BYTES)

    def _heard_bytes(self, h: SpeechHandle) -> int:
        return max(0, self.heard_frames - h.first_frame) * FRAME_BYTES if h.started else 0

    def interrupt(self) -> list[SpeechResult]:
        """Barge-in: stop now; every speech not yet played settles with what was heard.

        Pending marks are dropped: the far end echoes them when it clears its buffer, and those
        echoes must not count as played.
        """
        handles = [*self.awaiting, *self.queue]
        results = [h._settle(interrupted=True, heard_bytes=self._heard_bytes(h)) for h in handles]
        self.queue.clear()
        self.awaiting.clear()
        self._marks.clear()
        self._sent_at.clear()
        # The far end dropped whatever it had not played: nothing is outstanding any more.
        self.confirmed = self.frames_played
        self.since_echo = 0
        return results
