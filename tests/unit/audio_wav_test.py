"""WAV reading in many formats to PCM16 mono 16 kHz, clear errors for bad files, and WAV writing."""
from __future__ import annotations

import struct
import wave
from pathlib import Path

import numpy as np
import pytest

from spotfunnel.audio.wav import AudioFileError, read_wav_info, read_wav_pcm16k, write_stereo_wav, write_wav


def sine(rate: int, seconds: float, freq: float = 440.0, amp: float = 0.5) -> np.ndarray:
    return np.sin(2 * np.pi * freq * np.arange(int(rate * seconds)) / rate) * amp


def riff(fmt_tag: int, channels: int, rate: int, bits: int, data: bytes, extensible: bool = False) -> bytes:
    """A hand-built WAV (the stdlib writer only does integer PCM)."""
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", 0xFFFE if extensible else fmt_tag, channels, rate, rate * block, block, bits)
    if extensible:
        guid_tail = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
        fmt += struct.pack("<HHI", 22, bits, 0) + struct.pack("<H", fmt_tag) + guid_tail
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def assert_is_tone(pcm: bytes, seconds: float, freq: float = 440.0) -> None:
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float64) / 32768
    assert abs(len(x) - 16000 * seconds) <= 2
    spectrum = np.abs(np.fft.rfft(x))
    peak_hz = np.argmax(spectrum) * 16000 / len(x)
    assert abs(peak_hz - freq) < 5
    assert 0.2 < np.max(np.abs(x)) < 0.6


def test_8k_stereo_8bit(tmp_path: Path) -> None:
    mono = sine(8000, 0.5)
    u8 = np.clip(np.rint(mono * 127 + 128), 0, 255).astype(np.uint8)
    path = tmp_path / "a.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(1)
        w.setframerate(8000)
        w.writeframes(np.stack([u8, u8], axis=1).tobytes())
    assert_is_tone(read_wav_pcm16k(path), 0.5)


def test_44k1_24bit_mono(tmp_path: Path) -> None:
    ints = np.rint(sine(44100, 0.5) * (2**23 - 1)).astype(np.int32)
    data = np.stack([ints & 0xFF, (ints >> 8) & 0xFF, (ints >> 16) & 0xFF], axis=1).astype(np.uint8).tobytes()
    path = tmp_path / "b.wav"
    path.write_bytes(riff(1, 1, 44100, 24, data))
    assert_is_tone(read_wav_pcm16k(path), 0.5)


def test_48k_float32_stereo_extensible_downmixes(tmp_path: Path) -> None:
    left = sine(48000, 0.5).astype("<f4")
    right = np.zeros_like(left)  # the average halves the amplitude: 0.5 -> 0.25
    path = tmp_path / "c.wav"
    path.write_bytes(riff(3, 2, 48000, 32, np.stack([left, right], axis=1).tobytes(), extensible=True))
    assert read_wav_info(path).format_tag == 3
    assert_is_tone(read_wav_pcm16k(path), 0.5)


def test_32bit_int_and_mulaw(tmp_path: Path) -> None:
    ints = np.rint(sine(16000, 0.25) * (2**31 - 1)).astype("<i4")
    p32 = tmp_path / "d.wav"
    p32.write_bytes(riff(1, 1, 16000, 32, ints.tobytes()))
    assert_is_tone(read_wav_pcm16k(p32), 0.25)
    from spotfunnel.audio.g711 import ulaw_encode

    pmu = tmp_path / "e.wav"
    pmu.write_bytes(riff(7, 1, 8000, 8, ulaw_encode(np.rint(sine(8000, 0.25) * 32767).astype("<i2").tobytes())))
    assert_is_tone(read_wav_pcm16k(pmu), 0.25)


def test_16k_mono_16bit_is_returned_bit_exact(tmp_path: Path) -> None:
    pcm = np.rint(sine(16000, 0.1) * 32767).astype("<i2").tobytes()
    path = tmp_path / "f.wav"
    write_wav(path, pcm, 16000)
    assert read_wav_pcm16k(path) == pcm


@pytest.mark.parametrize(
    "content,problem",
    [
        (b"", "file is empty"),
        (b"this is not audio at all, just some text" * 3, "not a WAV file"),
        (b"RIFF\x04\x00\x00\x00WAVE", "no valid 'fmt ' chunk"),
        (riff(1, 1, 16000, 16, b""), "no audio samples"),
        (riff(2, 1, 16000, 4, b"\x00" * 100), "unsupported WAV encoding: format tag 0x0002"),
        (riff(3, 1, 16000, 16, b"\x00" * 100), "unsupported WAV encoding: IEEE float, 16-bit"),
    ],
)
def test_bad_files_raise_audio_file_error_naming_file_and_fix(tmp_path: Path, content: bytes, problem: str) -> None:
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(AudioFileError) as err:
        read_wav_pcm16k(path)
    message = str(err.value)
    assert str(path) in message and problem in message
    assert err.value.fix  # says what to do


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(AudioFileError, match="file not found"):
        read_wav_pcm16k(tmp_path / "nope.wav")
    with pytest.raises(AudioFileError, match="is a directory"):
        read_wav_pcm16k(tmp_path)


def test_write_stereo_pads_shorter_channel(tmp_path: Path) -> None:
    left = np.full(100, 1000, dtype="<i2").tobytes()
    right = np.full(40, -1000, dtype="<i2").tobytes()
    path = tmp_path / "s.wav"
    write_stereo_wav(path, left, right)
    with wave.open(str(path), "rb") as w:
        assert (w.getnchannels(), w.getframerate(), w.getsampwidth(), w.getnframes()) == (2, 16000, 2, 100)
        frames = np.frombuffer(w.readframes(100), dtype="<i2").reshape(-1, 2)
    assert (frames[:, 0] == 1000).all()
    assert (frames[:40, 1] == -1000).all() and (frames[40:, 1] == 0).all()
    assert_len = len(read_wav_pcm16k(path))
    assert assert_len == 200


def test_write_wav_rejects_partial_frames(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="multiple of 4"):
        write_wav(tmp_path / "x.wav", b"\x00" * 6, 16000, channels=2)
