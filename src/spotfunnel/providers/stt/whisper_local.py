"""Local speech recognition with faster-whisper (Whisper base, int8), one model per process."""
from __future__ import annotations

from typing import Any

import numpy as np

from spotfunnel.providers.models import SharedModel, whisper_base_dir
from spotfunnel.resilience.engine_queue import EngineQueue, Urgency
from spotfunnel.voice.speech_io import Transcript

# One engine thread: on 2 cores a single decode using both cores beats two decodes fighting for
# them. Eight waiting decodes of ~0.5 s still finish inside a turn's recognition budget; more are
# refused at once (the caller hears "sorry, say that again") instead of waiting past it.
MAX_WAITING_DECODES = 8
engine = EngineQueue("whisper", threads=1, max_waiting=MAX_WAITING_DECODES)


def _load_whisper() -> Any:
    from faster_whisper import WhisperModel

    return WhisperModel(str(whisper_base_dir()), device="cpu", compute_type="int8", cpu_threads=2)


_whisper: SharedModel[Any] = SharedModel(_load_whisper)


def shared_model() -> Any:
    """The process-wide Whisper model, loaded on first use and shared by every call."""
    return _whisper.get()


def _prompt(vocabulary: list[str]) -> str:
    """'Maple Street Salon: haircut, hair color, beard trim, blowout.' A short, natural prompt biases
    Whisper towards the business's words; long synonym lists and `hotwords` measurably hurt
    (e.g. 'Maria' heard as 'Marie', 'Thursday at eleven' garbled) on 8 kHz telephone audio."""
    if not vocabulary:
        return ""
    head, rest = vocabulary[0], vocabulary[1:12]
    return f"{head}: {', '.join(rest)}." if rest else f"{head}."


class WhisperLocalStt:
    name = "whisper-local"
    typical_latency_ms = 500  # Whisper base int8 on 2 cores, a short utterance (measured 450-600 ms)

    async def warm_up(self) -> None:
        await engine.run(self._decode, bytes(16000), [])

    async def transcribe(self, pcm: bytes, *, vocabulary: list[str], speculative: bool = False) -> Transcript:
        urgency = Urgency.SPECULATIVE if speculative else Urgency.FINAL
        return await engine.run(self._decode, pcm, vocabulary, urgency=urgency)

    def _decode(self, pcm: bytes, vocabulary: list[str]) -> Transcript:
        audio = np.frombuffer(pcm, dtype=np.int16).astype(np.float32) / 32768.0
        if len(audio) < 1600:
            return Transcript(text="", confidence=0.0, provider=self.name)
        segments, _info = shared_model().transcribe(
            audio,
            language="en",
            beam_size=1,  # measured: beam 5 did not hear names on 8 kHz audio any better and costs more
            temperature=0.0,
            vad_filter=False,
            without_timestamps=True,
            condition_on_previous_text=False,
            initial_prompt=_prompt(vocabulary) or None,
        )
        parts = list(segments)
        text = " ".join(s.text.strip() for s in parts).strip()
        if parts and all(s.no_speech_prob > 0.8 for s in parts):
            text = ""  # Whisper hallucinates words on noise; trust its own no-speech estimate
        conf = float(np.exp(np.mean([s.avg_logprob for s in parts]))) if parts else 0.0
        return Transcript(text=text, confidence=conf, provider=self.name)
