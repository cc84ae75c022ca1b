"""The playout clock: agent audio leaves one 20 ms frame per tick, so we always know what was heard."""
from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from dataclasses import dataclass, field

from spotfunnel.audio.frames import FRAME_BYTES, FRAME_MS

_ids = itertools.count(1)


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
        self.played = 0  # bytes played
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

    def heard_text(self) -> str:
        """Whole sentences already played, plus the words of the current one in proportion."""
        words: list[str] = []
        for s in self.sentences:
            end = s.end if s.end is not None else len(self.audio)
            if self.played >= end:
                words.extend(s.text.split())
            elif self.played > s.start:
                sw = s.text.split()
                share = (self.played - s.start) / max(1, end - s.start)
                words.extend(sw[: int(len(sw) * share)])
                break
            else:
                break
        return " ".join(words)

    def _settle(self, interrupted: bool) -> SpeechResult:
        heard = self.text if not interrupted else self.heard_text()
        result = SpeechResult(self.text, heard, interrupted, self.played // (FRAME_BYTES // FRAME_MS))
        if not self._result.done():
            self._result.set_result(result)
        self.audible.set()
        return result


@dataclass
class PlayoutClock:
    """Plays queued speech in order, one frame per call to `tick`."""

    queue: deque[SpeechHandle] = field(default_factory=deque)
    frames_played: int = 0

    def enqueue(self, handle: SpeechHandle) -> None:
        self.queue.append(handle)

    @property
    def busy(self) -> bool:
        """Agent speech is playing or waiting to play."""
        return bool(self.queue)

    @property
    def current(self) -> SpeechHandle | None:
        return self.queue[0] if self.queue else None

    def tick(self) -> tuple[bytes | None, SpeechHandle | None]:
        """The next frame to send (or None), and the handle that just finished playing, if any."""
        while self.queue:
            h = self.queue[0]
            available = len(h.audio) - h.played
            if available >= FRAME_BYTES or (h.synth_done and available > 0):
                frame = bytes(h.audio[h.played : h.played + FRAME_BYTES])
                h.played += len(frame)
                h.started = True
                self.frames_played += 1
                finished = None
                if h.synth_done and h.played >= len(h.audio):
                    self.queue.popleft()
                    h._settle(interrupted=False)
                    finished = h
                return frame.ljust(FRAME_BYTES, b"\x00"), finished
            if h.synth_done:  # nothing to say (empty synthesis)
                self.queue.popleft()
                h._settle(interrupted=False)
                return None, h
            return None, None  # audio still being synthesized: a gap
        return None, None

    def interrupt(self) -> list[SpeechResult]:
        """Barge-in: stop now; every queued handle settles with what was actually heard."""
        results = [h._settle(interrupted=True) for h in self.queue]
        self.queue.clear()
        return results
