"""Local speech synthesis with piper-tts and the bundled Joe (en_US, medium) voice."""
from __future__ import annotations

from typing import Any, AsyncIterator

import numpy as np

from spotfunnel.audio.frames import SAMPLE_RATE
from spotfunnel.providers.models import SharedModel, piper_voice_paths
from spotfunnel.resilience.engine_queue import EngineQueue

# One engine thread (onnxruntime already uses both cores). A sentence takes 0.1-0.4 s: sixteen
# waiting still start inside a sentence's budget; more are refused at once rather than queued.
MAX_WAITING_SENTENCES = 16
engine = EngineQueue("piper", threads=1, max_waiting=MAX_WAITING_SENTENCES)


def _load_piper() -> Any:
    from piper import PiperVoice

    model, config = piper_voice_paths()
    return PiperVoice.load(str(model), config_path=str(config))


_piper: SharedModel[Any] = SharedModel(_load_piper)


def shared_voice() -> Any:
    """The process-wide piper voice, loaded on first use and shared by every call."""
    return _piper.get()


class PiperLocalTts:
    """Synthesizes a sentence off the event loop and yields it as PCM16 16 kHz."""

    name = "piper-joe"

    def __init__(self, length_scale: float | None = None, noise_scale: float | None = None,
                 noise_w_scale: float | None = None) -> None:
        self._length_scale = length_scale
        self._noise_scale = noise_scale
        self._noise_w_scale = noise_w_scale

    async def synthesize(self, text: str) -> AsyncIterator[bytes]:
        pcm = await engine.run(self._render, text)
        if pcm:
            yield pcm

    def _render(self, text: str) -> bytes:
        import soxr
        from piper import SynthesisConfig

        voice = shared_voice()
        config = SynthesisConfig(length_scale=self._length_scale, noise_scale=self._noise_scale,
                                 noise_w_scale=self._noise_w_scale)
        chunks = [c.audio_float_array for c in voice.synthesize(text, syn_config=config)]
        if not chunks:
            return b""
        audio = np.concatenate(chunks)
        audio16k = soxr.resample(audio, voice.config.sample_rate, SAMPLE_RATE, quality="HQ")
        return (np.clip(_trim_lead(audio16k), -1.0, 1.0) * 32767).astype("<i2").tobytes()


LEAD_KEEP = SAMPLE_RATE // 100  # keep 10 ms before the voice starts


def _trim_lead(audio: np.ndarray) -> np.ndarray:
    """Piper starts each sentence with 40-60 ms of near-silence; the caller would wait through it."""
    loud = np.flatnonzero(np.abs(audio) > 0.003)  # about -50 dBFS
    if len(loud) == 0:
        return audio
    return audio[max(0, int(loud[0]) - LEAD_KEEP):]
