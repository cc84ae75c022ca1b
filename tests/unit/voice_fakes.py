"""Fakes for voice tests: scripted STT, tone TTS, and a frame script for the caller's side."""
from __future__ import annotations

import asyncio
from typing import AsyncIterator

import numpy as np

from spotfunnel.audio.frames import FRAME_SAMPLES, SAMPLE_RATE, SILENCE_FRAME
from spotfunnel.voice.speech_io import Transcript


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

    async def transcribe(self, pcm: bytes, *, vocabulary: list[str]) -> Transcript:
        self.calls.append(len(pcm))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        return Transcript(self.texts.pop(0) if self.texts else "", 0.9, self.name)


class ToneTts:
    """Every word becomes 200 ms of tone, so heard-text arithmetic is easy to check."""

    name = "tone"

    async def synthesize(self, text: str) -> AsyncIterator[bytes]:
        yield tone(200 * len(text.split()), freq=300.0)
