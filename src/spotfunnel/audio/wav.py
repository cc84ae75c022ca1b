"""WAV file I/O: read any PCM/float/G.711 WAV as PCM16 mono 16 kHz; write mono and stereo PCM16."""
from __future__ import annotations

import struct
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from spotfunnel.audio.frames import SAMPLE_RATE
from spotfunnel.audio.g711 import alaw_decode, ulaw_decode
from spotfunnel.audio.pcm import pcm_from_float
from spotfunnel.audio.resample import resample_once

__all__ = [
    "AudioFileError",
    "WavInfo",
    "pcm_from_float",
    "read_wav_info",
    "read_wav_pcm16k",
    "write_stereo_wav",
    "write_wav",
]

_FMT_PCM = 0x0001
_FMT_FLOAT = 0x0003
_FMT_ALAW = 0x0006
_FMT_ULAW = 0x0007
_FMT_EXTENSIBLE = 0xFFFE
_FORMAT_NAMES = {_FMT_PCM: "PCM", _FMT_FLOAT: "IEEE float", _FMT_ALAW: "A-law", _FMT_ULAW: "mu-law"}
_CONVERT_HINT = "convert it with: ffmpeg -i INPUT -ac 1 -ar 16000 -c:a pcm_s16le OUTPUT.wav"


class AudioFileError(ValueError):
    """An audio file cannot be used; the message names the file, the problem and what to do."""

    def __init__(self, path: str | Path, problem: str, fix: str = _CONVERT_HINT) -> None:
        self.path = str(path)
        self.problem = problem
        self.fix = fix
        super().__init__(f"{self.path}: {problem}; {fix}")


@dataclass(frozen=True)
class WavInfo:
    """What the header of a WAV file says."""

    format_tag: int
    channels: int
    sample_rate: int
    bits_per_sample: int
    block_align: int


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise AudioFileError(path, "file not found", "check the path (relative paths start at the "
                             "current directory)") from None
    except IsADirectoryError:
        raise AudioFileError(path, "is a directory, not a WAV file", "give the path of a .wav file") from None
    except OSError as exc:
        raise AudioFileError(path, f"cannot be read ({exc.strerror or exc})",
                             "check the file's permissions") from None


def _iter_chunks(path: Path, raw: bytes) -> dict[bytes, bytes]:
    """The RIFF chunks of a WAV file by id (first occurrence wins); the data chunk may be truncated."""
    if len(raw) == 0:
        raise AudioFileError(path, "file is empty (0 bytes)", "record or export the audio again")
    if len(raw) < 12 or raw[:4] not in (b"RIFF", b"RF64") or raw[8:12] != b"WAVE":
        raise AudioFileError(path, "not a WAV file (no RIFF/WAVE header)", _CONVERT_HINT)
    chunks: dict[bytes, bytes] = {}
    pos = 12
    while pos + 8 <= len(raw):
        cid = raw[pos : pos + 4]
        (size,) = struct.unpack_from("<I", raw, pos + 4)
        body = raw[pos + 8 : pos + 8 + size]  # a streaming writer may leave size wrong: take what is there
        chunks.setdefault(cid, body)
        pos += 8 + size + (size & 1)
    return chunks


def _parse_fmt(path: Path, fmt: bytes | None) -> WavInfo:
    if fmt is None or len(fmt) < 16:
        raise AudioFileError(path, "WAV file has no valid 'fmt ' chunk (damaged header)", _CONVERT_HINT)
    tag, channels, rate, _byte_rate, block_align, bits = struct.unpack_from("<HHIIHH", fmt, 0)
    if tag == _FMT_EXTENSIBLE:
        if len(fmt) < 26:
            raise AudioFileError(path, "WAV extensible header is truncated", _CONVERT_HINT)
        (tag,) = struct.unpack_from("<H", fmt, 24)  # first two bytes of the sub-format GUID
    if channels < 1 or rate < 1:
        raise AudioFileError(path, f"WAV header says {channels} channels at {rate} Hz", _CONVERT_HINT)
    block_align = block_align or channels * ((bits + 7) // 8)
    if block_align <= 0 or block_align % channels:
        raise AudioFileError(path, f"WAV header is inconsistent (block size {block_align} bytes for "
                             f"{channels} channels)", _CONVERT_HINT)
    return WavInfo(tag, channels, rate, bits, block_align)


def read_wav_info(path: str | Path) -> WavInfo:
    """Parse just the header of a WAV file (raises AudioFileError like `read_wav_pcm16k`)."""
    p = Path(path)
    return _parse_fmt(p, _iter_chunks(p, _read_bytes(p)).get(b"fmt "))


def _samples_to_float(path: Path, info: WavInfo, data: bytes) -> npt.NDArray[np.float64]:
    """Interleaved samples of any supported encoding -> float64 in [-1, 1], shape (frames, channels)."""
    width = info.block_align // info.channels
    usable = len(data) - len(data) % info.block_align
    data = data[:usable]
    tag, bits = info.format_tag, info.bits_per_sample
    flat: npt.NDArray[np.float64]
    if tag == _FMT_PCM and width == 1:
        flat = (np.frombuffer(data, dtype=np.uint8).astype(np.float64) - 128.0) / 128.0
    elif tag == _FMT_PCM and width == 2:
        flat = np.frombuffer(data, dtype="<i2").astype(np.float64) / 32768.0
    elif tag == _FMT_PCM and width == 3:
        b = np.frombuffer(data, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        ints = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        flat = np.where(ints >= 1 << 23, ints - (1 << 24), ints).astype(np.float64) / float(1 << 23)
    elif tag == _FMT_PCM and width == 4:
        flat = np.frombuffer(data, dtype="<i4").astype(np.float64) / float(1 << 31)
    elif tag == _FMT_FLOAT and width in (4, 8):
        flat = np.frombuffer(data, dtype="<f4" if width == 4 else "<f8").astype(np.float64)
        flat = np.clip(np.nan_to_num(flat), -1.0, 1.0)
    elif tag in (_FMT_ULAW, _FMT_ALAW) and width == 1:
        pcm = ulaw_decode(data) if tag == _FMT_ULAW else alaw_decode(data)
        flat = np.frombuffer(pcm, dtype="<i2").astype(np.float64) / 32768.0
    else:
        name = _FORMAT_NAMES.get(tag, f"format tag 0x{tag:04X}")
        raise AudioFileError(path, f"unsupported WAV encoding: {name}, {bits}-bit",
                             "use 8/16/24/32-bit PCM, 32/64-bit float or G.711; " + _CONVERT_HINT)
    return flat.reshape(-1, info.channels)


def read_wav_pcm16k(path: str | Path) -> bytes:
    """Read a WAV file as PCM16 little-endian mono 16 kHz (channels averaged, resampled).

    Accepts PCM 8/16/24/32-bit, IEEE float 32/64-bit, mu-law and A-law, plain or extensible
    headers, any rate and channel count. Raises AudioFileError naming the file and the problem.
    """
    p = Path(path)
    chunks = _iter_chunks(p, _read_bytes(p))
    info = _parse_fmt(p, chunks.get(b"fmt "))
    data = chunks.get(b"data")
    if data is None:
        raise AudioFileError(p, "WAV file has no 'data' chunk (no audio)", "record or export the audio again")
    frames = _samples_to_float(p, info, data)
    if frames.shape[0] == 0:
        raise AudioFileError(p, "WAV file contains no audio samples (empty data chunk)",
                             "record or export the audio again")
    mono = frames.mean(axis=1) if info.channels > 1 else frames[:, 0]
    return resample_once(pcm_from_float(mono), info.sample_rate, SAMPLE_RATE)


def write_wav(path: str | Path, pcm: bytes, rate: int, channels: int = 1) -> None:
    """Write PCM16 little-endian audio (interleaved if channels > 1) as a standard WAV file."""
    if len(pcm) % (2 * channels):
        raise ValueError(f"PCM16 with {channels} channel(s) needs a multiple of {2 * channels} bytes, "
                         f"got {len(pcm)}")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)


def write_stereo_wav(path: str | Path, left_pcm16k: bytes, right_pcm16k: bytes,
                     rate: int = SAMPLE_RATE) -> None:
    """Write two mono PCM16 tracks as one stereo WAV (e.g. caller left, agent right).

    The shorter track is padded with silence to the length of the longer one.
    """
    for name, track in (("left", left_pcm16k), ("right", right_pcm16k)):
        if len(track) % 2:
            raise ValueError(f"{name} track must be PCM16 (even byte count), got {len(track)} bytes")
    left = np.frombuffer(left_pcm16k, dtype="<i2")
    right = np.frombuffer(right_pcm16k, dtype="<i2")
    n = max(len(left), len(right))
    stereo = np.zeros((n, 2), dtype="<i2")
    stereo[: len(left), 0] = left
    stereo[: len(right), 1] = right
    write_wav(path, stereo.tobytes(), rate, channels=2)
