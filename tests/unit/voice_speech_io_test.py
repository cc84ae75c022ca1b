"""Sentence splitting for streamed synthesis, and the phrase cache that makes fixed phrases instant."""
from __future__ import annotations

from typing import AsyncIterator

from spotfunnel.voice.speech_io import CachedSpeech, PhraseCache, split_sentences


def test_sentences_and_long_clauses_are_split_but_dates_stay_whole() -> None:
    text = ("You're all set: a haircut on Thursday, December 10 at 11 AM. "
            "Is there anything else I can help you with?")
    assert split_sentences(text) == ["You're all set:", "a haircut on Thursday, December 10 at 11 AM.",
                                     "Is there anything else I can help you with?"]
    assert split_sentences("Sure. What can I help you with?") == ["Sure.", "What can I help you with?"]
    assert split_sentences("  ") == []


class CountingTts:
    name = "count"

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def synthesize(self, text: str) -> AsyncIterator[bytes]:
        self.calls.append(text)
        yield b"\x01\x00" * 160
        yield b"\x02\x00" * 160


async def test_cached_phrases_are_synthesized_once() -> None:
    inner = CountingTts()
    tts = CachedSpeech(inner, PhraseCache(), voice="v")
    await tts.prewarm(["Hello there. How can I help?"])
    assert inner.calls == ["Hello there.", "How can I help?"]
    audio = [c async for c in tts.synthesize("Hello there.")]
    assert audio == [b"\x01\x00" * 160 + b"\x02\x00" * 160]
    assert inner.calls == ["Hello there.", "How can I help?"]


def test_the_phrase_cache_is_capped_by_bytes_least_recently_used_first() -> None:
    cache = PhraseCache(max_entries=100, max_bytes=10_000)
    for i in range(5):
        cache.put("v", f"sentence {i}", bytes(3_000))
    assert cache.bytes <= 10_000
    assert cache.get("v", "sentence 0") is None and cache.get("v", "sentence 4") is not None
    cache.put("v", "sentence 4", bytes(1_000))  # replacing an entry counts its new size only
    assert cache.bytes == 3_000 + 3_000 + 1_000  # sentences 2 and 3, and the new sentence 4
    cache.put("v", "a whole recording", bytes(20_000))  # bigger than the cache: not kept
    assert cache.get("v", "a whole recording") is None and cache.bytes <= 10_000
