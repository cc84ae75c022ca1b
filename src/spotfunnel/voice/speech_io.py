"""The STT and TTS seams of the voice core, and the sentence splitting and phrase cache around TTS."""
from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import AsyncIterator, Protocol


@dataclass(frozen=True)
class Transcript:
    text: str
    confidence: float | None = None
    provider: str = ""


class SpeechToText(Protocol):
    """Turns one utterance (PCM16 16 kHz) into text, biased towards a vocabulary."""

    name: str

    async def transcribe(self, pcm: bytes, *, vocabulary: list[str]) -> Transcript: ...


class TextToSpeech(Protocol):
    """Turns one sentence into PCM16 16 kHz mono audio, streamed in chunks."""

    name: str

    def synthesize(self, text: str) -> AsyncIterator[bytes]: ...


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'])")


def split_sentences(text: str) -> list[str]:
    """Sentences to synthesize one by one, so the first starts playing before the rest exist."""
    parts = [p.strip() for p in _SENTENCE_END.split(text.strip())]
    return [p for p in parts if p]


class PhraseCache:
    """Audio of the agent's fixed phrases, so a greeting or a filler starts playing at once."""

    def __init__(self, max_entries: int = 512) -> None:
        self._audio: OrderedDict[str, bytes] = OrderedDict()
        self._max = max_entries
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(voice: str, text: str) -> str:
        return f"{voice}\x00{text.strip()}"

    def get(self, voice: str, text: str) -> bytes | None:
        k = self.key(voice, text)
        audio = self._audio.get(k)
        if audio is None:
            self.misses += 1
            return None
        self._audio.move_to_end(k)
        self.hits += 1
        return audio

    def put(self, voice: str, text: str, audio: bytes) -> None:
        self._audio[self.key(voice, text)] = audio
        while len(self._audio) > self._max:
            self._audio.popitem(last=False)


class CachedSpeech:
    """A TextToSpeech that answers fixed phrases from the cache and fills it as it goes."""

    def __init__(self, inner: TextToSpeech, cache: PhraseCache, voice: str) -> None:
        self.name = f"cached:{inner.name}"
        self._inner = inner
        self._cache = cache
        self._voice = voice

    async def synthesize(self, text: str) -> AsyncIterator[bytes]:
        cached = self._cache.get(self._voice, text)
        if cached is not None:
            yield cached
            return
        chunks: list[bytes] = []
        async for chunk in self._inner.synthesize(text):
            chunks.append(chunk)
            yield chunk
        self._cache.put(self._voice, text, b"".join(chunks))

    async def prewarm(self, phrases: list[str]) -> None:
        for phrase in phrases:
            for sentence in split_sentences(phrase):
                if self._cache.get(self._voice, sentence) is None:
                    async for _ in self.synthesize(sentence):
                        pass
