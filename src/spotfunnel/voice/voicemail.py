"""Who answered an outbound call: a person or an answering machine, and when its beep sounded (audio time)."""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from spotfunnel.audio.frames import FRAME_BYTES, FRAME_MS, SAMPLE_RATE


class Answerer(str, Enum):
    """A verdict on the far end of an outbound call."""

    HUMAN = "human"  # a short greeting ("Hello?") then silence, or the provider said so
    MACHINE = "machine"  # a long uninterrupted greeting: wait for the beep before speaking
    BEEP = "beep"  # the machine is recording: leave the message now
    GREETING_OVER = "greeting-over"  # a machine went quiet without a beep (or time ran out): speak now
    FAX = "fax"  # nothing to say to it


#: Verdicts after which the agent leaves its voicemail message at once.
MESSAGE_NOW = frozenset({Answerer.BEEP, Answerer.GREETING_OVER})


@dataclass(frozen=True)
class AnswerSettings:
    """Thresholds of the answering-machine detector; every duration is audio time."""

    speech_threshold: float = 0.5
    long_greeting_ms: int = 3600  # speech this long without a real pause is a recorded greeting
    pause_ms: int = 700  # a pause this long ends a greeting
    min_greeting_ms: int = 120  # voiced audio shorter than this is a click, not a greeting
    quiet_start_ms: int = 5000  # nobody spoke this long after the answer: treat as a person
    machine_silence_ms: int = 1500  # a machine quiet this long without a beep: speak anyway
    give_up_ms: int = 20_000  # hard bound after the answer for the beep to come
    beep_min_ms: int = 160  # a tone must last this long to be a beep
    beep_max_ms: int = 1500  # a tone this long is decided without waiting for its end
    beep_low_hz: float = 380.0
    beep_high_hz: float = 2100.0
    beep_purity: float = 0.85  # share of the window's energy within +-75 Hz of its peak
    beep_drift_hz: float = 60.0  # the peak may wander this much from frame to frame
    floor_rms: float = 8.0  # below this (about -72 dBFS) a frame is digital silence, not a tone

    def frames(self, ms: int) -> int:
        return max(1, -(-ms // FRAME_MS))


def tone_peak(pcm: bytes, low_hz: float, high_hz: float) -> tuple[float, float, float]:
    """(peak frequency, share of the energy around that peak, RMS) of a window (Hann-windowed FFT)."""
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    rms = float(np.sqrt(np.mean(samples * samples))) if samples.size else 0.0
    if samples.size < 16 or rms == 0.0:
        return 0.0, 0.0, rms
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(samples.size))) ** 2
    spectrum[0] = 0.0  # DC says nothing about a tone
    total = float(spectrum.sum())
    hz_per_bin = SAMPLE_RATE / samples.size
    lo, hi = int(low_hz / hz_per_bin), int(high_hz / hz_per_bin) + 1
    peak = lo + int(np.argmax(spectrum[lo:hi]))
    # A Hann window spreads a pure tone over its main lobe (+-2 bins); +-3 tolerates a tone between bins.
    share = float(spectrum[max(0, peak - 3) : peak + 4].sum()) / total if total > 0 else 0.0
    return peak * hz_per_bin, share, rms


@dataclass
class _Tone:
    """The narrowband tone running now, if any."""

    frames: int = 0
    hz: float = 0.0

    def push(self, hz: float | None, drift_hz: float) -> bool:
        """Extend the run with this frame's peak (None: no tone); True when the run just ended."""
        if hz is not None and (self.frames == 0 or abs(hz - self.hz) <= drift_hz):
            self.hz = hz if self.frames == 0 else (self.hz * self.frames + hz) / (self.frames + 1)
            self.frames += 1
            return False
        ended = self.frames > 0
        self.frames, self.hz = (1, hz) if hz is not None else (0, 0.0)
        return ended


@dataclass
class AnswerDetector:
    """Fed every caller frame and its VAD probability from the answer on; returns new verdicts.

    A person says "Hello?" and waits; a machine talks for seconds, then beeps. Human and machine are
    exclusive and decided once; after "machine" it keeps listening for the beep (or the greeting's
    end), and a beep is reported whenever it is heard within `give_up_ms` of the answer.
    """

    settings: AnswerSettings = field(default_factory=AnswerSettings)
    frame: int = 0
    verdict: Answerer | None = None  # human or machine, once decided
    message_due: bool = False  # a MESSAGE_NOW verdict was given
    _greeting_frames: int = 0  # from the first voiced frame to the last one, pauses included
    _voiced_frames: int = 0
    _quiet_frames: int = 0
    _beep_hz: float = 0.0
    _tone: _Tone = field(default_factory=_Tone)
    _previous: bytes = bytes(FRAME_BYTES)

    @property
    def listening(self) -> bool:
        """Whether frames can still change anything."""
        return not self.message_due and self.frame < self.settings.frames(self.settings.give_up_ms)

    def push(self, pcm: bytes, speech_prob: float) -> list[Answerer]:
        if not self.listening or len(pcm) != FRAME_BYTES:
            return []
        s = self.settings
        self.frame += 1
        out: list[Answerer] = []
        if self._beep_heard(pcm):
            out.extend(self._decide(Answerer.BEEP))
            return out
        voiced = speech_prob >= s.speech_threshold and self._tone.frames == 0
        if voiced:
            self._greeting_frames += self._quiet_frames + 1 if self._voiced_frames else 1
            self._voiced_frames += 1
            self._quiet_frames = 0
        else:
            self._quiet_frames += 1
        out.extend(self._greeting_verdicts())
        if self.frame >= s.frames(s.give_up_ms) and not self.message_due:
            # Time is up: a machine still talking gets its message; noise that never settled into a
            # greeting (clicks, a hiss) is treated as a person, so the agent never stays silent for good.
            if self.verdict is Answerer.MACHINE:
                out.extend(self._decide(Answerer.GREETING_OVER))
            elif self.verdict is None:
                out.extend(self._decide(Answerer.HUMAN))
        return out

    def _greeting_verdicts(self) -> list[Answerer]:
        s = self.settings
        if self.verdict is None:
            if self._greeting_frames >= s.frames(s.long_greeting_ms):
                return self._decide(Answerer.MACHINE)
            spoke = self._voiced_frames >= s.frames(s.min_greeting_ms)
            if spoke and self._quiet_frames >= s.frames(s.pause_ms):
                return self._decide(Answerer.HUMAN)
            if not self._voiced_frames and self._quiet_frames >= s.frames(s.quiet_start_ms):
                return self._decide(Answerer.HUMAN)
            if self._voiced_frames and not spoke and self._quiet_frames >= s.frames(s.pause_ms):
                self._greeting_frames = self._voiced_frames = 0  # a click or a breath: start again
        elif self.verdict is Answerer.MACHINE and self._quiet_frames >= s.frames(s.machine_silence_ms):
            return self._decide(Answerer.GREETING_OVER)
        return []

    def _beep_heard(self, pcm: bytes) -> bool:
        """True on the frame a beep is complete: its tone just stopped, or has lasted `beep_max_ms`."""
        s = self.settings
        # 40 ms windows (25 Hz bins): at 20 ms (50 Hz bins) a voiced vowel's harmonic looks as pure
        # as a tone for up to 8 frames in a row; at 40 ms speech never holds it for 2.
        window, self._previous = self._previous + pcm, pcm
        hz, share, rms = tone_peak(window, s.beep_low_hz, s.beep_high_hz)
        tonal = rms >= s.floor_rms and share >= s.beep_purity and s.beep_low_hz <= hz <= s.beep_high_hz
        run_frames, run_hz = self._tone.frames, self._tone.hz
        ended = self._tone.push(hz if tonal else None, s.beep_drift_hz)
        if ended and run_frames >= s.frames(s.beep_min_ms):
            self._beep_hz = run_hz
            return True
        if self._tone.frames >= s.frames(s.beep_max_ms):
            self._beep_hz = self._tone.hz
            self._tone = _Tone()
            return True
        return False

    @property
    def beep_hz(self) -> float:
        """The frequency of the beep heard (0 when none was)."""
        return self._beep_hz

    def adopt(self, kind: Answerer) -> None:
        """Take a verdict reached elsewhere (the provider's AMD), so the greeting's end is judged from it."""
        if kind in (Answerer.HUMAN, Answerer.MACHINE) and not self.message_due:
            self.verdict = kind

    def _decide(self, kind: Answerer) -> list[Answerer]:
        if kind in MESSAGE_NOW:
            self.message_due = True
            return [kind]
        self.verdict = kind
        return [kind]


def provider_verdict(kind: str, detail: str) -> Answerer | None:
    """The provider's answering-machine detection (Twilio AnsweredBy) as a verdict; None for a label it never sends."""
    label = (detail or kind).lower()
    if label.startswith("machine_end") or label == "machine_end_beep":
        return Answerer.BEEP if label == "machine_end_beep" else Answerer.GREETING_OVER
    if label.startswith("machine") or kind == "machine":
        return Answerer.MACHINE
    if label == "human" or kind == "human":
        return Answerer.HUMAN
    if label == "fax" or kind == "fax":
        return Answerer.FAX
    if label == "unknown" or kind == "unknown":
        # Twilio could not tell (often silence on the line): speak, as to a person who has not spoken yet.
        return Answerer.HUMAN
    return None
