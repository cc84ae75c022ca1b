"""The process-wide engines every call shares: STT, TTS (with its phrase cache) and the VAD factory."""
from __future__ import annotations

import asyncio
import atexit
import gc
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from spotfunnel.conversation.agent import AgentConfig

from spotfunnel.voice.speech_io import CachedSpeech, PhraseCache, SpeechToText, TextToSpeech
from spotfunnel.voice.vad import FrameVad, SileroFrameVad


@dataclass
class CallServices:
    stt: SpeechToText
    tts: TextToSpeech
    vad_factory: Callable[[], FrameVad]
    phrase_cache: PhraseCache | None = None


def embedded_services() -> CallServices:
    """The embedded default: faster-whisper, piper and Silero, all local, behind fallback chains."""
    from spotfunnel.providers.resilient import ResilientStt, ResilientTts
    from spotfunnel.providers.stt.whisper_local import WhisperLocalStt
    from spotfunnel.providers.tts.piper_local import PiperLocalTts

    cache = PhraseCache()
    tts = CachedSpeech(ResilientTts([PiperLocalTts()]), cache, voice="piper-joe")
    return CallServices(stt=ResilientStt([WhisperLocalStt()]), tts=tts, vad_factory=SileroFrameVad,
                        phrase_cache=cache)


async def warm_up(services: CallServices, phrases: list[str]) -> None:
    """Load the models and synthesize the agent's fixed phrases before the first call arrives."""
    from spotfunnel.providers.stt.whisper_local import WhisperLocalStt

    await WhisperLocalStt().warm_up()
    await asyncio.to_thread(_warm_date_parser)
    if isinstance(services.tts, CachedSpeech):
        await services.tts.prewarm(phrases)
    settle_heap()


def settle_heap() -> None:
    """Move everything loaded so far (libraries, models, caches) out of the garbage collector's way.

    Those objects live as long as the process, yet a full collection scans them all: with the
    models loaded that took 38-62 ms, a stall in the audio loop whenever it struck mid-call. Frozen,
    a full collection walks only what calls create (gc.freeze, Python 3.7+).
    """
    if gc.get_freeze_count():
        return  # once per process: what later calls leave behind must stay collectable
    gc.collect()
    atexit.register(gc.unfreeze)  # at exit they are collected as usual (native bindings check for leaks)
    gc.freeze()


def _warm_date_parser() -> None:
    """dateparser loads its language data on first use (~0.3 s): do it before a caller waits on it."""
    import dateparser

    dateparser.parse("next Friday at 3 pm", languages=["en"])


def fixed_phrases(agent: "AgentConfig") -> list[str]:
    """The agent's sentences that never change within a tenant: cached before the first call."""
    from spotfunnel.conversation.agent import PHRASE_FIELDS

    out = [agent.say(name) for name, fields in PHRASE_FIELDS.items() if not fields]
    out += [agent.say("greeting", business=agent.profile.name), agent.say("goodbye", business=agent.profile.name)]
    return out
