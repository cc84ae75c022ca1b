"""The simulated caller: speaks scenario turns into a phone line and listens like a person would."""
from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Protocol

from spotfunnel.audio.frames import FRAME_MS, SILENCE_FRAME, split_frames
from spotfunnel.audio.levels import rms_dbfs
from spotfunnel.voice.events import CallEvent, EventLog

QUIET_MS = 700  # the agent counts as quiet after this long without its audio
NO_REPLY_MS = 8_000  # a caller stops waiting for a reply after this long
TAIL_MS = 20_000  # the call ends this long after the last turn unless the agent hangs up
MAX_REPEATS = 2


class CallerLine(Protocol):
    closed: bool

    async def exchange(self, frame: bytes) -> bytes | None: ...

    async def hangup(self) -> None: ...


@dataclass
class CallerTurn:
    text: str
    pcm: bytes  # PCM16 16 kHz, silence trimmed from both ends
    pause_ms: int = 500
    barge_in_ms: int | None = None


@dataclass
class CallerTrace:
    """What the caller sent and heard, and how long each reply took to start."""

    caller_pcm: bytearray = field(default_factory=bytearray)
    agent_pcm: bytearray = field(default_factory=bytearray)
    latencies_ms: list[float | None] = field(default_factory=list)
    said: list[str] = field(default_factory=list)
    ticks: int = 0
    ended_by: str = ""


AUDIBLE_DBFS = 20 * math.log10(80 / 32768)  # about -52 dBFS: agent audio the caller hears
VOICE_DBFS = 20 * math.log10(150 / 32768)  # about -47 dBFS: where a recorded voice starts and stops


def _is_audible(frame: bytes | None) -> bool:
    return bool(frame) and rms_dbfs(frame or b"") > AUDIBLE_DBFS


def trim_silence(pcm: bytes, threshold_dbfs: float = VOICE_DBFS) -> bytes:
    """Cut leading and trailing near-silence, so 'end of speech' is when the voice stops."""
    frames = split_frames(pcm)
    loud = [i for i, f in enumerate(frames) if rms_dbfs(f) > threshold_dbfs]
    if not loud:
        return pcm
    return b"".join(frames[loud[0] : loud[-1] + 1])


class SimulatedCaller:
    """Ticks every 20 ms of audio; in real-time mode each tick also waits for the wall clock."""

    def __init__(self, line: CallerLine, turns: list[CallerTurn], agent_events: EventLog, realtime: bool) -> None:
        self.line, self.turns, self.realtime = line, turns, realtime
        self.trace = CallerTrace()
        self._reprompted = False
        agent_events.subscribe(self._on_agent_event)
        self._tick = 0
        self._last_agent_tick = -1
        self._reply_start_tick: int | None = None  # first agent audio after our last turn
        self._turn_end_tick = 0
        self._t0 = 0.0
        self._pending_latency: tuple[int, float] | None = None  # (turn slot, wall time speech ended)
        self.on_reply: Callable[[str, float], None] | None = None  # live latency report (real time only)

    def _on_agent_event(self, ev: CallEvent) -> None:
        if ev.kind == "agent_speech_queued" and ev.data.get("reprompt"):
            self._reprompted = True

    async def run(self) -> CallerTrace:
        self._t0 = time.perf_counter()
        index, repeats = 0, 0
        while index < len(self.turns) and not self.line.closed:
            turn = self.turns[index]
            if not await self._wait_for_cue(turn):
                break
            if self._reprompted and index > 0 and repeats < MAX_REPEATS:
                index, repeats = index - 1, repeats + 1  # asked to repeat: say the last turn again
                turn = self.turns[index]
            else:
                repeats = 0
            self._reprompted = False
            await self._speak(turn)
            index += 1
        await self._listen_until_end()
        return self.trace

    async def _wait_for_cue(self, turn: CallerTurn) -> bool:
        """Wait for the agent to answer and go quiet, or for the barge-in moment. False if the call ended."""
        waited = 0
        while not self.line.closed:
            if turn.barge_in_ms is not None and self._reply_start_tick is not None:
                if (self._tick - self._reply_start_tick) * FRAME_MS >= turn.barge_in_ms:
                    return True
            replied = self._reply_start_tick is not None
            quiet_ms = (self._tick - self._last_agent_tick) * FRAME_MS
            if replied and quiet_ms >= max(QUIET_MS, turn.pause_ms):
                return True
            if not replied and waited * FRAME_MS >= NO_REPLY_MS + turn.pause_ms:
                return True
            await self._exchange(SILENCE_FRAME)
            waited += 1
        return False

    async def _speak(self, turn: CallerTurn) -> None:
        self.trace.said.append(turn.text)
        frames = split_frames(turn.pcm)
        for frame in frames:
            await self._exchange(frame)
            if self.line.closed:
                return
        end_wall = time.perf_counter()
        self._reply_start_tick = None
        self._turn_end_tick = self._tick
        self.trace.latencies_ms.append(None)
        slot = len(self.trace.latencies_ms) - 1
        self._pending_latency = (slot, end_wall)

    async def _listen_until_end(self) -> None:
        end = self._tick + TAIL_MS // FRAME_MS
        while not self.line.closed and self._tick < end:
            await self._exchange(SILENCE_FRAME)
        self.trace.ended_by = "agent" if self.line.closed else "caller"
        if not self.line.closed:
            await self.line.hangup()

    async def _exchange(self, frame: bytes) -> None:
        if self.realtime:
            due = self._t0 + self._tick * FRAME_MS / 1000
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        heard = await self.line.exchange(frame)
        self._tick += 1
        self.trace.ticks = self._tick
        self.trace.caller_pcm.extend(frame)
        self.trace.agent_pcm.extend(heard if heard else SILENCE_FRAME)
        if _is_audible(heard):
            self._last_agent_tick = self._tick
            if self._reply_start_tick is None:
                self._reply_start_tick = self._tick
                self._note_latency()

    def _note_latency(self) -> None:
        pending = self._pending_latency
        if pending is None:
            return
        slot, end_wall = pending
        if self.realtime:
            ms = round((time.perf_counter() - end_wall) * 1000, 1)
            self.trace.latencies_ms[slot] = ms
            if self.on_reply is not None:
                self.on_reply(self.trace.said[slot], ms)
        self._pending_latency = None
