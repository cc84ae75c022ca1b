"""RMS level in dBFS and the silence test."""
from __future__ import annotations

import math

import numpy as np

from spotfunnel.audio.frames import SILENCE_FRAME
from spotfunnel.audio.levels import is_silent, rms_dbfs
from spotfunnel.audio.pcm import float_from_pcm, pcm_from_float


def test_full_scale_square_is_about_0_dbfs_and_sine_about_minus_3() -> None:
    square = np.tile(np.array([32767, -32768], dtype="<i2"), 160).tobytes()
    assert abs(rms_dbfs(square)) < 0.01
    sine = pcm_from_float(np.sin(np.linspace(0, 2 * np.pi * 10, 3200, endpoint=False)) * 0.999)
    assert abs(rms_dbfs(sine) + 3.01) < 0.05


def test_silence_and_empty() -> None:
    assert rms_dbfs(SILENCE_FRAME) == -math.inf
    assert rms_dbfs(b"") == -math.inf
    assert is_silent(SILENCE_FRAME) and is_silent(b"")


def test_threshold() -> None:
    quiet = pcm_from_float(np.full(320, 10 ** (-60 / 20)))  # -60 dBFS DC
    loud = pcm_from_float(np.full(320, 10 ** (-20 / 20)))
    assert is_silent(quiet) and not is_silent(loud)
    assert not is_silent(quiet, threshold_dbfs=-70)


def test_float_pcm_round_trip_and_clipping() -> None:
    pcm = np.array([-32768, -1, 0, 1, 32767], dtype="<i2").tobytes()
    assert pcm_from_float(float_from_pcm(pcm)) == pcm
    assert pcm_from_float(np.array([2.0, -2.0])) == np.array([32767, -32768], dtype="<i2").tobytes()
