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
    #: what one short utterance usually takes; lockstep (fast) calls charge it in audio time
    typical_latency_ms: int

    async def transcribe(self, pcm: bytes, *, vocabulary: list[str], speculative: bool = False) -> Transcript:
        """`speculative`: an early guess at a turn still open; a busy engine may refuse it at once."""
        ...


class TextToSpeech(Protocol):
    """Turns one sentence into PCM16 16 kHz mono audio, streamed in chunks."""

    name: str

    def synthesize(self, text: str) -> AsyncIterator[bytes]: ...


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'])")
_CLAUSE_END = re.compile(r"(?<=[:;])\s+")
LONG_SENTENCE_WORDS = 12
MIN_PIECE_WORDS = 5


def split_sentences(text: str) -> list[str]:
    """Pieces to synthesize one by one, so the first starts playing before the rest exist.

    Sentences, and long sentences cut again at clause marks (a colon or semicolon anywhere, a
    comma only between two pieces of five words or more, so dates and lists stay whole): the
    first audio of a long reply waits for a few words of synthesis, not the whole sentence."""
    out: list[str] = []
    for sentence in (p.strip() for p in _SENTENCE_END.split(text.strip())):
        if not sentence:
            continue
        if len(sentence.split()) < LONG_SENTENCE_WORDS:
            out.append(sentence)
            continue
        for clause in _CLAUSE_END.split(sentence):
            out.extend(_split_at_commas(clause))
    return [p for p in out if p]


def _split_at_commas(clause: str) -> list[str]:
    pieces: list[str] = []
    rest = clause
    while True:
        cut = next((m.end() for m in re.finditer(r",\s+", rest)
                    if len(rest[: m.start()].split()) >= MIN_PIECE_WORDS
                    and len(rest[m.end():].split()) >= MIN_PIECE_WORDS), None)
        if cut is None:
            pieces.append(rest.strip())
            return pieces
        pieces.append(rest[:cut].strip())
        rest = rest[cut:]


class PhraseCache:
    """Audio of the agent's fixed phrases, so a greeting or a filler starts playing at once.

    Every sentence spoken passes through it (confirmations with names and times too), so it is
    capped by bytes as well as entries: the least recently used go first."""

    def __init__(self, max_entries: int = 512, max_bytes: int = 48 << 20) -> None:
        self._audio: OrderedDict[str, bytes] = OrderedDict()
        self._max = max_entries
        self._max_bytes = max_bytes
        self.bytes = 0
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
        if len(audio) > self._max_bytes:
            return  # larger than the whole cache: not worth evicting everything for
        k = self.key(voice, text)
        old = self._audio.pop(k, None)
        self.bytes -= len(old) if old is not None else 0
        self._audio[k] = audio
        self.bytes += len(audio)
        while len(self._audio) > self._max or self.bytes > self._max_bytes:
            _key, evicted = self._audio.popitem(last=False)
            self.bytes -= len(evicted)


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
