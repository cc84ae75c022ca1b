"""The one internal audio format: PCM16 little-endian mono 16 kHz, in 20 ms frames."""
from __future__ import annotations

SAMPLE_RATE = 16_000
FRAME_MS = 20
FRAME_SAMPLES = SAMPLE_RATE * FRAME_MS // 1000  # 320
FRAME_BYTES = FRAME_SAMPLES * 2  # 640
SILENCE_FRAME = bytes(FRAME_BYTES)


def frames_for_ms(ms: int) -> int:
    """How many 20 ms frames cover `ms` milliseconds (rounded up)."""
    return -(-ms // FRAME_MS)


def split_frames(pcm: bytes) -> list[bytes]:
    """Cut PCM16 16 kHz audio into 20 ms frames, zero-padding the last one."""
    out = [pcm[i : i + FRAME_BYTES] for i in range(0, len(pcm), FRAME_BYTES)]
    if out and len(out[-1]) < FRAME_BYTES:
        out[-1] = out[-1] + bytes(FRAME_BYTES - len(out[-1]))
    return out
