"""G.711 mu-law and A-law codecs for PCM16 little-endian audio, bit-exact with CPython's audioop."""
from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["alaw_decode", "alaw_encode", "ulaw_decode", "ulaw_encode"]

_ULAW_SEG_END = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF], dtype=np.int32)
_ALAW_SEG_END = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF], dtype=np.int32)
_ULAW_BIAS = 0x84
_ULAW_CLIP14 = 8159  # CLIP (32635) in the 14-bit domain the encoder works in


def _all_pcm16() -> npt.NDArray[np.int32]:
    """Every int16 value, ordered by its uint16 bit pattern (so a table index is the raw sample)."""
    return np.arange(65536, dtype=np.uint16).view(np.int16).astype(np.int32)


def _segment(magnitude: npt.NDArray[np.int32], seg_end: npt.NDArray[np.int32]) -> npt.NDArray[np.int32]:
    """Index of the first segment whose end is >= magnitude (8 when above all segments)."""
    return np.searchsorted(seg_end, magnitude, side="left").astype(np.int32)


def _build_ulaw_encode() -> npt.NDArray[np.uint8]:
    pcm = _all_pcm16() >> 2  # 16-bit sample to the 14-bit range, arithmetic shift as in audioop
    negative = pcm < 0
    mask = np.where(negative, 0x7F, 0xFF)
    mag = np.minimum(np.where(negative, -pcm, pcm), _ULAW_CLIP14) + (_ULAW_BIAS >> 2)
    seg = _segment(mag, _ULAW_SEG_END)
    safe_seg = np.minimum(seg, 7)
    uval = (safe_seg << 4) | ((mag >> (safe_seg + 1)) & 0xF)
    out = np.where(seg >= 8, 0x7F ^ mask, uval ^ mask)
    return out.astype(np.uint8)


def _build_ulaw_decode() -> npt.NDArray[np.int16]:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    t = (((u & 0x0F) << 3) + _ULAW_BIAS) << ((u & 0x70) >> 4)
    out = np.where(u & 0x80, _ULAW_BIAS - t, t - _ULAW_BIAS)
    return out.astype(np.int16)


def _build_alaw_encode() -> npt.NDArray[np.uint8]:
    pcm = _all_pcm16() >> 3  # 16-bit sample to the 13-bit range
    negative = pcm < 0
    mask = np.where(negative, 0x55, 0xD5)
    mag = np.where(negative, -pcm - 1, pcm)
    seg = _segment(mag, _ALAW_SEG_END)
    safe_seg = np.minimum(seg, 7)
    shift = np.where(safe_seg < 2, 1, safe_seg)
    aval = (safe_seg << 4) | ((mag >> shift) & 0xF)
    out = np.where(seg >= 8, 0x7F ^ mask, aval ^ mask)
    return out.astype(np.uint8)


def _build_alaw_decode() -> npt.NDArray[np.int16]:
    a = np.arange(256, dtype=np.int32) ^ 0x55
    seg = (a & 0x70) >> 4
    t = (a & 0x0F) << 4
    t = np.where(seg == 0, t + 8, t + 0x108)
    t = np.where(seg > 1, t << np.maximum(seg - 1, 0), t)
    out = np.where(a & 0x80, t, -t)
    return out.astype(np.int16)


_ULAW_ENCODE = _build_ulaw_encode()
_ULAW_DECODE = _build_ulaw_decode().astype("<i2")
_ALAW_ENCODE = _build_alaw_encode()
_ALAW_DECODE = _build_alaw_decode().astype("<i2")


def _pcm_indices(pcm: bytes) -> npt.NDArray[np.uint16]:
    if len(pcm) % 2:
        raise ValueError(f"PCM16 audio must have an even number of bytes, got {len(pcm)}")
    return np.frombuffer(pcm, dtype="<u2")


def ulaw_encode(pcm: bytes) -> bytes:
    """PCM16 little-endian -> mu-law bytes (one byte per sample)."""
    return _ULAW_ENCODE[_pcm_indices(pcm)].tobytes()


def ulaw_decode(data: bytes) -> bytes:
    """Mu-law bytes -> PCM16 little-endian."""
    return _ULAW_DECODE[np.frombuffer(data, dtype=np.uint8)].tobytes()


def alaw_encode(pcm: bytes) -> bytes:
    """PCM16 little-endian -> A-law bytes (one byte per sample)."""
    return _ALAW_ENCODE[_pcm_indices(pcm)].tobytes()


def alaw_decode(data: bytes) -> bytes:
    """A-law bytes -> PCM16 little-endian."""
    return _ALAW_DECODE[np.frombuffer(data, dtype=np.uint8)].tobytes()
