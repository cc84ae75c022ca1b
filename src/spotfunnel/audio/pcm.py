"""Conversions between PCM16 little-endian bytes and float sample arrays."""
from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["float_from_pcm", "pcm_from_float"]

_SCALE = 32768.0


def pcm_from_float(samples: npt.ArrayLike) -> bytes:
    """Float samples in [-1, 1] -> PCM16 little-endian bytes (rounded, clipped to int16 range)."""
    arr = np.asarray(samples, dtype=np.float64)
    scaled = np.clip(np.rint(arr * _SCALE), -32768, 32767)
    return scaled.astype("<i2").tobytes()


def float_from_pcm(pcm: bytes) -> npt.NDArray[np.float32]:
    """PCM16 little-endian bytes -> float32 samples in [-1, 1)."""
    if len(pcm) % 2:
        raise ValueError(f"PCM16 audio must have an even number of bytes, got {len(pcm)}")
    return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / np.float32(_SCALE)
