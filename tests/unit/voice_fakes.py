"""Fakes for voice tests: scripted STT, tone TTS, and a frame script for the caller's side."""
from __future__ import annotations

import asyncio
from typing import AsyncIterator, Callable

import numpy as np

from spotfunnel.audio.frames import FRAME_SAMPLES, SAMPLE_RATE, SILENCE_FRAME
from spotfunnel.transports.base import CallStarted
from spotfunnel.transports.local import LocalCallerLine, LocalTransport
from spotfunnel.voice.endpointing import TurnTaking
from spotfunnel.voice.session import VoiceSession, VoiceTurn
from spotfunnel.voice.speech_io import SpeechToText, Transcript
from spotfunnel.voice.vad import FrameVad


def tone(ms: int, freq: float = 440.0, amp: float = 0.3) -> bytes:
    n = SAMPLE_RATE * ms // 1000
    t = np.arange(n) / SAMPLE_RATE
    return (np.sin(2 * np.pi * freq * t) * amp * 32767).astype("<i2").tobytes()


def tone_frames(ms: int) -> list[bytes]:
    pcm = tone(ms)
    return [pcm[i : i + FRAME_SAMPLES * 2] for i in range(0, len(pcm), FRAME_SAMPLES * 2)]


def silence_frames(ms: int) -> list[bytes]:
    return [SILENCE_FRAME] * (ms // 20)


class ScriptedStt:
    """Returns the scripted texts in order; optionally takes `delay_s` of wall time."""

    name = "scripted"
    typical_latency_ms = 0

    def __init__(self, texts: list[str], delay_s: float = 0.0) -> None:
        self.texts = list(texts)
        self.calls: list[int] = []  # audio length (bytes) of each request
        self.delay_s = delay_s

    async def transcribe(self, pcm: bytes, *, vocabulary: list[str], speculative: bool = False) -> Transcript:
        self.calls.append(len(pcm))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        return Transcript(self.texts.pop(0) if self.texts else "", 0.9, self.name)


class ToneTts:
    """Every word becomes 200 ms of tone, so heard-text arithmetic is easy to check."""

    name = "tone"

    async def synthesize(self, text: str) -> AsyncIterator[bytes]:
        yield tone(200 * len(text.split()), freq=300.0)


class AnsweringSession(VoiceSession):
    """Collects turns the way the conversation would, answering each at once (silently)."""

    received: list[VoiceTurn]

    async def answer_turns(self) -> None:
        self.received = []
        while True:
            self.received.append(await self.turns.get())
            self.turn_answered()


async def start_session(stt: SpeechToText, vad: FrameVad,
                        completes_answer: Callable[[str], bool] | None = None,
                        ) -> tuple[AnsweringSession, LocalCallerLine, asyncio.Task[None]]:
    """A lockstep in-process call with `vad`, its session running and answering every turn."""
    transport = LocalTransport(lockstep=True)
    line = LocalCallerLine(transport)
    session = AnsweringSession(transport, stt, ToneTts(), vad, TurnTaking(), no_input_ms=60_000)
    if completes_answer is not None:
        session.completes_answer = completes_answer
    await line.start(CallStarted(call_id="t", caller_id="+14155550100", called="+14155550101"))
    await transport.receive()  # the CallStarted is the call layer's; the session takes the rest
    answerer = asyncio.create_task(session.answer_turns())
    task = asyncio.create_task(session.run())
    task.add_done_callback(lambda _t: answerer.cancel())
    return session, line, task


async def feed(line: LocalCallerLine, frames: list[bytes]) -> list[bytes | None]:
    return [await line.exchange(f) for f in frames]
