"""Answering-machine detection benchmark: when the agent's own detector decides, in audio time.

Renders answering-machine greetings and short human greetings with piper (two voices' pace), adds a
beep (numpy) after each machine greeting and some telephone-like noise, runs the detector with the
Silero VAD frame by frame, and prints for each case the verdicts and the audio time (ms from the
answer) at which each was reached, relative to the end of the greeting and of the beep.

Usage:
    python benchmarks/voicemail_detection.py [--short]
"""
from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT / "src") not in sys.path:  # runnable without an installed package too
    sys.path.insert(0, str(REPO_ROOT / "src"))

from spotfunnel.audio.frames import SAMPLE_RATE, split_frames  # noqa: E402
from spotfunnel.providers.tts.piper_local import PiperLocalTts  # noqa: E402
from spotfunnel.voice.vad import SileroFrameVad  # noqa: E402
from spotfunnel.voice.voicemail import AnswerDetector  # noqa: E402

MACHINES = [
    "Hi, you've reached the Johnson family. We can't come to the phone right now. Please leave a message after the tone.",
    "Hello, this is Dana. I'm away from my desk. Leave your name and number and I'll call you back.",
    "The person you are calling is not available. Please record your message after the tone.",
]
HUMANS = ["Hello?", "Hi, this is Sam.", "Yeah, hello?"]
BEEPS = [(1000.0, 500), (440.0, 300), (1400.0, 200)]


def _pcm(audio: np.ndarray) -> bytes:
    return (np.clip(audio, -1.0, 1.0) * 32767).astype("<i2").tobytes()


def _tone(hz: float, ms: int) -> np.ndarray:
    t = np.arange(SAMPLE_RATE * ms // 1000) / SAMPLE_RATE
    return 0.3 * np.sin(2 * np.pi * hz * t)


def _quiet(ms: int) -> np.ndarray:
    return np.zeros(SAMPLE_RATE * ms // 1000)


async def _speech(text: str, pace: float) -> np.ndarray:
    tts = PiperLocalTts(length_scale=pace, noise_scale=0.667, noise_w_scale=0.8)
    pcm = b"".join([c async for c in tts.synthesize(text)])
    return np.frombuffer(pcm, dtype="<i2").astype(np.float64) / 32768


def _verdicts(audio: np.ndarray) -> list[tuple[str, int]]:
    line_noise = np.random.default_rng(7).normal(0.0, 0.003, audio.size)  # about -50 dBFS hiss
    detector, vad = AnswerDetector(), SileroFrameVad()
    out: list[tuple[str, int]] = []
    for frame in split_frames(_pcm(audio + line_noise)):
        out.extend((v.value, detector.frame * 20) for v in detector.push(frame, vad.probability(frame)))
    return out


async def main(short: bool) -> None:
    table = Table("case", "greeting ends (ms)", "beep ends (ms)", "verdicts (audio ms after answer)")
    paces = [1.0] if short else [0.9, 1.0, 1.15]
    for pace in paces:
        for i, text in enumerate(MACHINES[:1] if short else MACHINES):
            hz, beep_ms = BEEPS[i % len(BEEPS)]
            greeting = await _speech(text, pace)
            audio = np.concatenate([_quiet(400), greeting, _quiet(300), _tone(hz, beep_ms), _quiet(2000)])
            end = 400 + greeting.size * 1000 // SAMPLE_RATE
            verdicts = ", ".join(f"{k} {ms}" for k, ms in _verdicts(audio))
            table.add_row(f"machine {i + 1} x{pace} + {hz:.0f} Hz beep", str(end), str(end + 300 + beep_ms), verdicts)
        for i, text in enumerate(HUMANS[:1] if short else HUMANS):
            hello = await _speech(text, pace)
            audio = np.concatenate([_quiet(300), hello, _quiet(3000)])
            end = 300 + hello.size * 1000 // SAMPLE_RATE
            verdicts = ", ".join(f"{k} {ms}" for k, ms in _verdicts(audio))
            table.add_row(f"human {text!r} x{pace}", str(end), "-", verdicts)
    Console(width=140).print(table)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", action="store_true", help="one machine and one human case")
    asyncio.run(main(parser.parse_args().short))
