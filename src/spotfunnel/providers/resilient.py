"""STT and TTS behind a fallback chain of breakers, so the voice core never calls a provider bare."""
from __future__ import annotations

from typing import AsyncIterator

from spotfunnel.resilience.breaker import CircuitBreaker
from spotfunnel.resilience.deadline import Budget
from spotfunnel.resilience.fallback import FallbackChain
from spotfunnel.voice.speech_io import SpeechToText, TextToSpeech, Transcript


# A turn's recognition (queueing, decoding, falling over to the next provider) gets this long; a
# miss counts against the provider that ran out of it. Whisper base takes ~0.5 s per short turn,
# but 1-2 s on a machine whose cores other work shares (measured with 4 calls at load 5 on 2
# cores: 5 s was missed), and a breaker opened by a busy machine silences every call's STT.
STT_TURN_BUDGET_S = 8.0
# A sentence's synthesis (to its last chunk, through every fallback); piper takes 0.1-0.4 s.
TTS_SENTENCE_BUDGET_S = 8.0


class ResilientStt:
    """A SpeechToText over an ordered chain of providers (primary, secondary, ...)."""

    def __init__(self, providers: list[SpeechToText], turn_budget_s: float = STT_TURN_BUDGET_S) -> None:
        self.turn_budget_s = turn_budget_s
        self.chain: FallbackChain[SpeechToText] = FallbackChain(
            [(p.name, p, CircuitBreaker(f"stt:{p.name}")) for p in providers], name="stt")
        self.name = "+".join(p.name for p in providers)
        self.typical_latency_ms = providers[0].typical_latency_ms if providers else 0

    async def transcribe(self, pcm: bytes, *, vocabulary: list[str], speculative: bool = False) -> Transcript:
        budget = Budget(self.turn_budget_s, "speech recognition of one turn")
        return await self.chain.call(
            lambda p: p.transcribe(pcm, vocabulary=vocabulary, speculative=speculative), budget)


class ResilientTts:
    """A TextToSpeech over a chain; falls over only before the first audio of a sentence."""

    def __init__(self, providers: list[TextToSpeech], sentence_budget_s: float = TTS_SENTENCE_BUDGET_S) -> None:
        self.sentence_budget_s = sentence_budget_s
        self.chain: FallbackChain[TextToSpeech] = FallbackChain(
            [(p.name, p, CircuitBreaker(f"tts:{p.name}")) for p in providers], name="tts")
        self.name = "+".join(p.name for p in providers)

    async def synthesize(self, text: str) -> AsyncIterator[bytes]:
        budget = Budget(self.sentence_budget_s, "speech synthesis of one sentence")
        async for chunk in self.chain.stream(lambda p: p.synthesize(text), budget):
            yield chunk
