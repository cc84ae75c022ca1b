"""Streaming and one-shot resampling: chunking does not matter, a tone survives a telephony round trip."""
from __future__ import annotations

import numpy as np
import pytest

from spotfunnel.audio.resample import SteadyResampler, StreamResampler, resample_once


def tone(rate: int, seconds: float, freq: float = 1000.0, amp: float = 0.5) -> bytes:
    t = np.arange(int(rate * seconds)) / rate
    return (np.sin(2 * np.pi * freq * t) * amp * 32767).astype("<i2").tobytes()


def as_array(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype="<i2").astype(np.float64)


def stream_in_chunks(res: StreamResampler | SteadyResampler, pcm: bytes, chunk: int) -> bytes:
    out = b"".join(res.process(pcm[i : i + chunk]) for i in range(0, len(pcm), chunk))
    return out + res.flush()


def tone_snr_db(pcm: bytes, rate: int, freq: float) -> float:
    """SNR of the best-fitting sine at `freq` against everything else (middle half of the signal)."""
    x = as_array(pcm)
    seg = x[len(x) // 4 : 3 * len(x) // 4]
    t = np.arange(len(seg)) / rate
    basis = np.stack([np.sin(2 * np.pi * freq * t), np.cos(2 * np.pi * freq * t), np.ones_like(t)], axis=1)
    coef, *_ = np.linalg.lstsq(basis, seg, rcond=None)
    fit = basis @ coef
    return float(10 * np.log10(np.sum(fit**2) / np.sum((seg - fit) ** 2)))


@pytest.mark.parametrize("in_rate,out_rate", [(8000, 16000), (16000, 8000), (44100, 16000)])
def test_streaming_output_is_chunk_size_independent(in_rate: int, out_rate: int) -> None:
    pcm = tone(in_rate, 1.0, freq=440.0)
    reference = as_array(stream_in_chunks(StreamResampler(in_rate, out_rate), pcm, in_rate // 50 * 2))
    for chunk in (2, 74, 666, 4000):
        got = as_array(stream_in_chunks(StreamResampler(in_rate, out_rate), pcm, chunk))
        assert len(got) == len(reference)
        assert np.max(np.abs(got - reference)) <= 4  # rounding-level differences only
    assert abs(len(reference) - len(pcm) // 2 * out_rate / in_rate) <= 2


def test_tone_survives_16k_to_8k_to_16k_with_snr_above_20db() -> None:
    pcm = tone(16000, 1.0)
    down, up = StreamResampler(16000, 8000), StreamResampler(8000, 16000)
    out = b""
    for i in range(0, len(pcm), 640):
        out += up.process(down.process(pcm[i : i + 640]))
    out += up.process(down.flush()) + up.flush()
    assert tone_snr_db(out, 16000, 1000.0) > 20.0


def test_equal_rates_pass_through_untouched() -> None:
    res = StreamResampler(16000, 16000)
    pcm = tone(16000, 0.1)
    assert res.passthrough
    assert res.process(pcm[:101]) + res.process(pcm[101:]) == pcm
    assert res.flush() == b""


def test_odd_byte_chunks_are_carried_not_lost() -> None:
    pcm = tone(8000, 0.5)
    whole = stream_in_chunks(StreamResampler(8000, 16000), pcm, 320)
    odd = stream_in_chunks(StreamResampler(8000, 16000), pcm, 37)
    assert len(odd) == len(whole)


def test_steady_resampler_returns_exactly_proportional_output_per_call() -> None:
    res = SteadyResampler(8000, 16000)
    pcm = tone(8000, 1.0)
    outs = [res.process(pcm[i : i + 320]) for i in range(0, len(pcm), 320)]
    assert all(len(o) == 640 for o in outs)
    tail = res.flush()
    total = b"".join(outs) + tail
    assert res.padded_samples * 1000 // 16000 <= 40  # low fixed delay (ms)
    assert abs(len(total) // 2 - (16000 + res.padded_samples)) <= 4  # nothing lost, only delayed
    assert tone_snr_db(total, 16000, 1000.0) > 40.0


def test_steady_resampler_44k1_frames() -> None:
    res = SteadyResampler(44100, 16000)
    pcm = tone(44100, 0.5)
    sizes = {len(res.process(pcm[i : i + 1764])) for i in range(0, len(pcm) - 1763, 1764)}
    assert sizes == {640}


def test_resample_once_length_and_quality() -> None:
    out = resample_once(tone(44100, 1.0), 44100, 16000)
    assert len(out) == 32000
    assert tone_snr_db(out, 16000, 1000.0) > 40.0
    assert resample_once(b"", 8000, 16000) == b""


def test_invalid_rates_are_rejected() -> None:
    with pytest.raises(ValueError, match="in_rate"):
        StreamResampler(0, 16000)
