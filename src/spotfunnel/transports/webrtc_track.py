"""The agent's voice to the browser over WebRTC: an aiortc track of queued 20 ms frames, paced by the wall clock."""
from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Callable

import av
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from spotfunnel.transports.webrtc_audio import OPUS_FRAME_SAMPLES, OPUS_RATE, WebRtcAudioPath

__all__ = ["CATCH_UP_FRAMES", "FRAME_S", "MAX_QUEUED_AGENT_FRAMES", "AgentAudioTrack"]

FRAME_S = OPUS_FRAME_SAMPLES / OPUS_RATE  # 0.02
#: frames queued for the caller beyond which the track stops waiting for the wall clock and
#: catches up (the browser's capture clock runs a little faster than ours)
CATCH_UP_FRAMES = 5
#: agent audio waiting for aiortc's sender (30 s); a sender that stopped pulling (the peer is gone)
#: cannot grow it further: later frames are dropped and counted until the call's deadline ends it
MAX_QUEUED_AGENT_FRAMES = 1500


class AgentAudioTrack(MediaStreamTrack):
    """The agent's voice to the browser: queued 20 ms frames in real time, silence when none.

    The voice session queues one frame per caller frame, and caller frames arrive in real time, so
    the queue stays short; `recv` paces itself by the wall clock (aiortc's sender calls it in a
    loop). Marks queued between frames are reported through `on_mark` once the audio before them
    has been handed to the encoder.
    """

    kind = "audio"

    def __init__(self, path: WebRtcAudioPath, on_mark: Callable[[str], None]) -> None:
        super().__init__()
        self._path = path
        self._on_mark = on_mark
        self._items: deque[av.AudioFrame | str] = deque()
        self._frames_queued = 0
        self._start: float | None = None
        self._sent = 0
        self.frames_sent = 0
        self.frames_dropped = 0
        self.first_audio_wall: float | None = None

    @property
    def queued_frames(self) -> int:
        return self._frames_queued

    def push(self, frame: av.AudioFrame) -> None:
        if self._frames_queued >= MAX_QUEUED_AGENT_FRAMES:
            self.frames_dropped += 1
            return
        self._items.append(frame)
        self._frames_queued += 1

    def push_mark(self, name: str) -> None:
        self._items.append(name)

    def clear(self) -> None:
        """Drop the queued audio; the marks in it count as played (as Twilio reports them on clear)."""
        marks = [item for item in self._items if isinstance(item, str)]
        self._items.clear()
        self._frames_queued = 0
        for name in marks:
            self._on_mark(name)

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        if self._start is None:
            self._start = now
        due = self._start + self._sent * FRAME_S
        if self.queued_frames > CATCH_UP_FRAMES:
            # A backlog: send now, and move the schedule so that this frame is not paid back later.
            self._start -= max(0.0, due - now)
        elif due > now:
            await asyncio.sleep(due - now)
        elif now - due > 0.2:
            self._start = now - self._sent * FRAME_S  # we fell behind (a stall): restart the clock
        self._sent += 1
        self._report_marks()
        if self._items:
            frame = self._items.popleft()
            assert not isinstance(frame, str)
            self._frames_queued -= 1
            self._report_marks()
            self.frames_sent += 1
            if self.first_audio_wall is None:
                self.first_audio_wall = time.perf_counter()
            return frame
        return self._path.silence()

    def _report_marks(self) -> None:
        while self._items and isinstance(self._items[0], str):
            self._on_mark(str(self._items.popleft()))
