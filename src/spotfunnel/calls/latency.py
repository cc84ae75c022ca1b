"""Per-turn latency of a call: the wall time from the end of the caller's speech to the agent's first audio, by stage."""
from __future__ import annotations

from dataclasses import dataclass

from spotfunnel.voice.playout import SpeechHandle
from spotfunnel.voice.session import VoiceTurn

__all__ = ["TurnLatency", "split_latency"]


@dataclass
class TurnLatency:
    """Wall-clock split of one caller turn, ms: from the end of speech to the agent's first audio."""

    total: float
    endpointing: float
    stt: float
    policy: float
    tts: float
    transport: float
    early: bool


def split_latency(turn: VoiceTurn, first_reply: float, handle: SpeechHandle) -> TurnLatency:
    """Cut the wall time from the end of the caller's speech to the first agent frame into stages."""
    t = turn.timing
    speech_end = t.speech_end or t.stt_start
    first = handle.first_audio_wall or first_reply
    tts_ready = handle.tts_ready_wall or first
    heard_by = max(t.committed, t.stt_end)  # the turn is recognised and decided
    return TurnLatency(
        total=(first - speech_end) * 1000,
        endpointing=max(0.0, min(t.stt_start, t.committed) - speech_end) * 1000,
        stt=max(0.0, t.stt_end - max(t.stt_start, speech_end)) * 1000,
        policy=max(0.0, first_reply - heard_by) * 1000,
        tts=max(0.0, tts_ready - first_reply) * 1000,
        transport=max(0.0, first - tts_ready) * 1000,
        early=turn.early,
    )
