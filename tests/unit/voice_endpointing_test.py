"""End-of-turn and barge-in decisions on a scripted timeline of speech probabilities."""
from __future__ import annotations

from spotfunnel.audio.frames import SILENCE_FRAME
from spotfunnel.voice.endpointing import TurnDetector, TurnSignal, TurnTaking


def run(detector: TurnDetector, probs: list[float], agent_speaking: bool = False) -> list[tuple[int, TurnSignal]]:
    out = []
    for p in probs:
        for s in detector.push(SILENCE_FRAME, p, agent_speaking):
            out.append((detector.frame_index, s))
    return out


def test_turn_ends_after_full_silence_window_counted_in_frames() -> None:
    d = TurnDetector(TurnTaking(silence_ms=600, early_pause_ms=240))
    signals = run(d, [1.0] * 25 + [0.0] * 40)
    kinds = [s for _, s in signals]
    assert kinds == [TurnSignal.SPEECH_STARTED, TurnSignal.EARLY_PAUSE, TurnSignal.END_OF_TURN]
    frames = dict((s, f) for f, s in signals)
    assert frames[TurnSignal.EARLY_PAUSE] == 25 + 12  # 240 ms = 12 frames of silence
    assert frames[TurnSignal.END_OF_TURN] == 25 + 30  # 600 ms = 30 frames


def test_resuming_after_early_pause_cancels_the_speculation() -> None:
    d = TurnDetector(TurnTaking())
    kinds = [s for _, s in run(d, [1.0] * 20 + [0.0] * 14 + [1.0] * 10 + [0.0] * 31)]
    assert kinds == [TurnSignal.SPEECH_STARTED, TurnSignal.EARLY_PAUSE, TurnSignal.RESUMED,
                     TurnSignal.EARLY_PAUSE, TurnSignal.END_OF_TURN]


def test_short_sound_is_noise_not_a_turn() -> None:
    d = TurnDetector(TurnTaking(min_speech_ms=160))
    kinds = [s for _, s in run(d, [1.0] * 4 + [0.0] * 40)]
    assert TurnSignal.END_OF_TURN not in kinds
    assert kinds[-1] is TurnSignal.NOISE


def test_barge_in_needs_sustained_speech_over_the_agent() -> None:
    d = TurnDetector(TurnTaking(barge_in_ms=140))
    click = run(d, [1.0] * 3 + [0.0] * 40, agent_speaking=True)
    assert TurnSignal.BARGE_IN not in [s for _, s in click]
    d = TurnDetector(TurnTaking(barge_in_ms=140))
    talk = run(d, [1.0] * 20, agent_speaking=True)
    barge = [f for f, s in talk if s is TurnSignal.BARGE_IN]
    assert barge == [7]  # 140 ms of speech = 7 frames


def test_no_barge_in_when_agent_is_quiet() -> None:
    d = TurnDetector(TurnTaking())
    assert TurnSignal.BARGE_IN not in [s for _, s in run(d, [1.0] * 30)]


def test_turn_audio_includes_preroll_and_commit_resets() -> None:
    d = TurnDetector(TurnTaking(preroll_ms=100, start_ms=60))
    run(d, [0.0] * 10 + [1.0] * 10)
    audio = d.take_audio()
    assert len(audio) == 640 * (5 + 10)  # 100 ms before the onset, then all 10 speech frames
    d.commit()
    assert not d.in_turn and d.take_audio() == b""
