"""End-of-turn and barge-in detection, counted in 20 ms frames of audio time (never wall time)."""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from spotfunnel.audio.frames import FRAME_MS


@dataclass(frozen=True)
class TurnTaking:
    """Turn-taking thresholds; every duration is audio time."""

    speech_threshold: float = 0.5
    silence_threshold: float = 0.35
    start_ms: int = 60  # speech this long opens a caller turn
    min_speech_ms: int = 160  # less voiced audio than this is noise, not a turn
    early_pause_ms: int = 240  # a pause this long starts speculative recognition
    silence_ms: int = 600  # a pause this long ends the turn whatever was said
    barge_in_ms: int = 140  # sustained speech over the agent this long stops the agent
    preroll_ms: int = 300  # audio kept from before the speech started
    max_turn_ms: int = 30_000  # a turn this long is cut and recognised

    def frames(self, ms: int) -> int:
        return max(1, -(-ms // FRAME_MS))


class TurnSignal(Enum):
    SPEECH_STARTED = "speech_started"
    EARLY_PAUSE = "early_pause"  # start recognising speculatively
    RESUMED = "resumed"  # caller went on after an early pause: drop the speculative result
    END_OF_TURN = "end_of_turn"
    BARGE_IN = "barge_in"  # caller is really talking over the agent
    NOISE = "noise"  # a short sound that was not a turn


@dataclass
class TurnDetector:
    """Feeds on (frame, speech probability) pairs and says when a caller turn starts and ends."""

    settings: TurnTaking = field(default_factory=TurnTaking)
    frame_index: int = 0
    in_turn: bool = False
    speech_frames: int = 0
    silence_run: int = 0
    voiced_run: int = 0
    last_speech_frame: int = -1
    early_sent: bool = False
    barge_sent: bool = False
    _preroll: list[bytes] = field(default_factory=list)
    _audio: list[bytes] = field(default_factory=list)

    def push(self, frame: bytes, prob: float, agent_speaking: bool) -> list[TurnSignal]:
        s = self.settings
        self.frame_index += 1
        voiced = prob >= (s.silence_threshold if self.in_turn else s.speech_threshold)
        self.voiced_run = self.voiced_run + 1 if prob >= s.speech_threshold else 0
        if not agent_speaking:
            self.barge_sent = False
        if not self.in_turn:
            return self._idle(frame, voiced)
        return self._in_turn(frame, voiced, agent_speaking)

    def _idle(self, frame: bytes, voiced: bool) -> list[TurnSignal]:
        s = self.settings
        self._preroll.append(frame)
        if len(self._preroll) > s.frames(s.preroll_ms) + s.frames(s.start_ms):  # onset frames are speech
            self._preroll.pop(0)
        if voiced and self.voiced_run >= s.frames(s.start_ms):
            self.in_turn = True
            self._audio = list(self._preroll)
            self._preroll = []
            self.speech_frames = self.voiced_run
            self.silence_run = 0
            self.early_sent = False
            self.last_speech_frame = self.frame_index
            return [TurnSignal.SPEECH_STARTED]
        return []

    def _in_turn(self, frame: bytes, voiced: bool, agent_speaking: bool) -> list[TurnSignal]:
        s = self.settings
        self._audio.append(frame)
        out: list[TurnSignal] = []
        if voiced:
            self.speech_frames += 1
            self.last_speech_frame = self.frame_index
            self.silence_run = 0
            if self.early_sent and self.voiced_run >= 2:  # one voiced frame is a click, not speech
                self.early_sent = False
                out.append(TurnSignal.RESUMED)
        else:
            self.silence_run += 1
        if agent_speaking and not self.barge_sent and self.voiced_run >= s.frames(s.barge_in_ms):
            self.barge_sent = True
            out.append(TurnSignal.BARGE_IN)
        if self.silence_run >= s.frames(s.silence_ms) or len(self._audio) >= s.frames(s.max_turn_ms):
            out.append(self._close())
        elif self.silence_run >= s.frames(s.early_pause_ms) and not self.early_sent:
            if self.speech_frames >= s.frames(s.min_speech_ms):
                self.early_sent = True
                out.append(TurnSignal.EARLY_PAUSE)
        return out

    def _close(self) -> TurnSignal:
        s = self.settings
        self.in_turn = False
        self.early_sent = False
        self._preroll = []
        if self.speech_frames < s.frames(s.min_speech_ms):
            self._audio = []
            return TurnSignal.NOISE
        return TurnSignal.END_OF_TURN

    def take_audio(self) -> bytes:
        """The turn's audio so far (pre-roll, speech and pauses)."""
        return b"".join(self._audio)

    def commit(self) -> bytes:
        """End the current turn now (an early end of turn) and hand over its audio."""
        audio = self.take_audio()
        self.in_turn = False
        self.early_sent = False
        self.silence_run = 0
        self._audio = []
        return audio

    @property
    def silence_ms(self) -> int:
        return self.silence_run * FRAME_MS
