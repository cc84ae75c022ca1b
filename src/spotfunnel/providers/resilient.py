"""STT and TTS behind a fallback chain of breakers, so the voice core never calls a provider bare."""
from __future__ import annotations

from typing import AsyncIterator

from spotfunnel.resilience.breaker import CircuitBreaker
from spotfunnel.resilience.fallback import FallbackChain
from spotfunnel.voice.speech_io import SpeechToText, TextToSpeech, Transcript


class ResilientStt:
    """A SpeechToText over an ordered chain of providers (primary, secondary, ...)."""

    def __init__(self, providers: list[SpeechToText]) -> None:
        self.chain: FallbackChain[SpeechToText] = FallbackChain(
            [(p.name, p, CircuitBreaker(f"stt:{p.name}")) for p in providers], name="stt")
        self.name = "+".join(p.name for p in providers)
        self.typical_latency_ms = providers[0].typical_latency_ms if providers else 0

    async def transcribe(self, pcm: bytes, *, vocabulary: list[str]) -> Transcript:
        return await self.chain.call(lambda p: p.transcribe(pcm, vocabulary=vocabulary))


class ResilientTts:
    """A TextToSpeech over a chain; falls over only before the first audio of a sentence."""

    def __init__(self, providers: list[TextToSpeech]) -> None:
        self.chain: FallbackChain[TextToSpeech] = FallbackChain(
            [(p.name, p, CircuitBreaker(f"tts:{p.name}")) for p in providers], name="tts")
        self.name = "+".join(p.name for p in providers)

    async def synthesize(self, text: str) -> AsyncIterator[bytes]:
        async for chunk in self.chain.stream(lambda p: p.synthesize(text)):
            yield chunk
