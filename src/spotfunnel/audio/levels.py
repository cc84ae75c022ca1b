"""Loudness of PCM16 audio: RMS level in dBFS and a silence test."""
from __future__ import annotations

import math

import numpy as np

__all__ = ["DEFAULT_SILENCE_DBFS", "is_silent", "rms_dbfs"]

DEFAULT_SILENCE_DBFS = -50.0


def rms_dbfs(pcm: bytes) -> float:
    """RMS level of PCM16 little-endian audio in dB relative to full scale (32768).

    A full-scale square wave is 0 dBFS, a full-scale sine about -3 dBFS; empty input or digital
    silence is -inf.
    """
    if len(pcm) < 2:
        return -math.inf
    samples = np.frombuffer(pcm, dtype="<i2", count=len(pcm) // 2).astype(np.float64)
    rms = math.sqrt(float(np.mean(samples * samples)))
    if rms == 0.0:
        return -math.inf
    return 20.0 * math.log10(rms / 32768.0)


def is_silent(pcm: bytes, threshold_dbfs: float = DEFAULT_SILENCE_DBFS) -> bool:
    """True when the audio's RMS level is below `threshold_dbfs` (empty audio counts as silent)."""
    return rms_dbfs(pcm) < threshold_dbfs
