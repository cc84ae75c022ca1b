"""G.711 codecs are bit-exact with CPython's audioop over every input value."""
from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import pytest

from spotfunnel.audio.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode

# The reference: CPython's own audioop up to 3.12, the maintained `audioop-lts` (same module name,
# a test dependency for python_version >= '3.13' in pyproject.toml) from 3.13 on. Never skipped.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

ALL_PCM16 = np.arange(-32768, 32768, dtype="<i2").tobytes()
ALL_BYTES = bytes(range(256))


def test_ulaw_encode_matches_audioop_for_all_65536_samples() -> None:
    assert ulaw_encode(ALL_PCM16) == audioop.lin2ulaw(ALL_PCM16, 2)


def test_ulaw_decode_matches_audioop_for_all_256_codes() -> None:
    assert ulaw_decode(ALL_BYTES) == audioop.ulaw2lin(ALL_BYTES, 2)


def test_alaw_encode_matches_audioop_for_all_65536_samples() -> None:
    assert alaw_encode(ALL_PCM16) == audioop.lin2alaw(ALL_PCM16, 2)


def test_alaw_decode_matches_audioop_for_all_256_codes() -> None:
    assert alaw_decode(ALL_BYTES) == audioop.alaw2lin(ALL_BYTES, 2)


@pytest.mark.parametrize("encode,decode", [(ulaw_encode, ulaw_decode), (alaw_encode, alaw_decode)])
def test_round_trip_is_idempotent_after_first_quantisation(
    encode: Callable[[bytes], bytes], decode: Callable[[bytes], bytes]
) -> None:
    once = decode(encode(ALL_PCM16))
    assert decode(encode(once)) == once


def test_empty_input_and_odd_length() -> None:
    assert ulaw_encode(b"") == b"" and ulaw_decode(b"") == b""
    with pytest.raises(ValueError, match="even number of bytes"):
        ulaw_encode(b"\x00")
