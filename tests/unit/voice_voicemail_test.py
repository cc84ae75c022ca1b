"""The answering-machine detector on synthesized audio: beeps at any level, noise, greeting lengths (audio time)."""
from __future__ import annotations

import numpy as np

from spotfunnel.audio.frames import SAMPLE_RATE, split_frames
from spotfunnel.voice.voicemail import AnswerDetector, Answerer, provider_verdict

from voice_fakes import tone


def silence(ms: int) -> bytes:
    return bytes(SAMPLE_RATE * ms // 1000 * 2)


def noise(ms: int, level: float = 3000.0, seed: int = 1) -> bytes:
    rng = np.random.default_rng(seed)
    return rng.normal(0.0, level, SAMPLE_RATE * ms // 1000).clip(-32768, 32767).astype("<i2").tobytes()


def run(segments: list[tuple[bytes, float]]) -> tuple[AnswerDetector, list[tuple[Answerer, int]]]:
    """Feed (audio, VAD probability) segments; the verdicts with their audio time in ms."""
    detector = AnswerDetector()
    verdicts: list[tuple[Answerer, int]] = []
    for audio, prob in segments:
        for frame in split_frames(audio):
            verdicts.extend((v, detector.frame * 20) for v in detector.push(frame, prob))
    return detector, verdicts


def test_a_1_khz_beep_is_heard_when_it_ends() -> None:
    detector, verdicts = run([(silence(300), 0.0), (tone(400, 1000.0), 0.0), (silence(500), 0.0)])
    assert [v for v, _ in verdicts] == [Answerer.BEEP]
    assert 700 <= verdicts[0][1] <= 760  # the tone stopped at 700 ms
    assert abs(detector.beep_hz - 1000.0) <= 25.0


def test_a_quiet_440_hz_beep_counts_at_any_level() -> None:
    _, verdicts = run([(silence(200), 0.0), (tone(250, 440.0, amp=0.003), 0.0), (silence(300), 0.0)])
    assert [v for v, _ in verdicts] == [Answerer.BEEP]


def test_a_click_shorter_than_a_beep_is_not_one() -> None:
    _, verdicts = run([(silence(200), 0.0), (tone(100, 1000.0), 0.0), (silence(600), 0.0)])
    assert Answerer.BEEP not in [v for v, _ in verdicts]


def test_noise_is_not_a_beep() -> None:
    _, verdicts = run([(noise(3000), 0.0)])
    assert verdicts == []


def test_a_tone_outside_the_beep_band_is_not_a_beep() -> None:
    _, verdicts = run([(tone(500, 200.0), 0.0), (silence(300), 0.0)])
    assert verdicts == []


def test_a_short_greeting_then_silence_is_a_person() -> None:
    # "Hello?" (0.5 s of voice) then the caller waits: decided after the 700 ms pause.
    _, verdicts = run([(silence(300), 0.0), (noise(500), 0.9), (silence(2000), 0.0)])
    assert verdicts == [(Answerer.HUMAN, 1500)]


def test_a_long_greeting_is_a_machine_then_its_beep_says_leave_the_message() -> None:
    speech = [(noise(900, seed=i), 0.9) for i in range(5)]
    pauses = [(silence(300), 0.0)] * 5  # short breaths between phrases do not end a greeting
    greeting = [seg for pair in zip(speech, pauses) for seg in pair]
    _, verdicts = run([(silence(200), 0.0), *greeting, (tone(500, 1000.0), 0.0), (silence(1000), 0.0)])
    kinds = [v for v, _ in verdicts]
    assert kinds == [Answerer.MACHINE, Answerer.BEEP]
    # 3.6 s into the greeting; a breath counts only once the voice resumes, so it is decided on the
    # first voiced frame after the 3.6 s mark fell into a pause.
    assert verdicts[0][1] == 200 + 3600 + 20
    assert verdicts[1][1] >= 200 + 6000 + 500  # after the beep ended


def test_a_machine_without_a_beep_gets_the_message_when_it_goes_quiet() -> None:
    _, verdicts = run([(noise(4000), 0.9), (silence(2000), 0.0)])
    assert verdicts == [(Answerer.MACHINE, 3600), (Answerer.GREETING_OVER, 4000 + 1500)]


def test_nobody_speaking_counts_as_a_person_after_five_seconds() -> None:
    _, verdicts = run([(silence(6000), 0.0)])
    assert verdicts == [(Answerer.HUMAN, 5000)]


def test_provider_labels() -> None:
    assert provider_verdict("human", "human") is Answerer.HUMAN
    assert provider_verdict("machine", "machine_start") is Answerer.MACHINE
    assert provider_verdict("machine", "machine_end_beep") is Answerer.BEEP
    assert provider_verdict("machine", "machine_end_silence") is Answerer.GREETING_OVER
    assert provider_verdict("fax", "fax") is Answerer.FAX
    assert provider_verdict("unknown", "unknown") is Answerer.HUMAN  # Twilio could not tell: speak
    assert provider_verdict("", "something-new") is None


def test_clicks_that_never_become_a_greeting_end_as_a_person_when_time_is_up() -> None:
    # A click every 3 s keeps resetting both the greeting and the quiet-start timer; the hard bound
    # still decides, so an outbound call never stays silent.
    click = (noise(60, seed=3), 0.9)
    detector, verdicts = run([click, (silence(3000), 0.0)] * 8)
    assert verdicts == [(Answerer.HUMAN, 20_000)]
    assert not detector.listening
