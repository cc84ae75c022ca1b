"""The realtime loop of one call: frames in, VAD and turn detection, STT, speech out, barge-in."""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import structlog

from spotfunnel.audio.frames import FRAME_MS, SILENCE_FRAME
from spotfunnel.transports.base import AnsweredBy, AudioIn, Dtmf, Hangup, MarkPlayed, ProtocolIssue, Transport
from spotfunnel.voice.endpointing import TurnDetector, TurnSignal, TurnTaking
from spotfunnel.voice.events import EventLog
from spotfunnel.voice.playout import PlayoutClock, SpeechHandle
from spotfunnel.voice.speech_io import SpeechToText, TextToSpeech, split_sentences
from spotfunnel.voice.vad import FrameVad, frame_probability
from spotfunnel.voice.voicemail import AnswerDetector, Answerer, provider_verdict

log = structlog.get_logger(__name__)

MAX_PENDING_TURNS = 32  # turns (or answerer verdicts) handed over and not yet read by the conversation


@dataclass
class TurnTiming:
    """Wall-clock stamps (perf_counter seconds) of one caller turn, for latency metrics."""

    speech_end: float = 0.0
    stt_start: float = 0.0
    stt_end: float = 0.0
    committed: float = 0.0
    speech_end_frame: int = 0
    committed_frame: int = 0


@dataclass
class VoiceTurn:
    """A finished caller turn, or a call event the conversation must answer."""

    kind: str  # "speech" | "dtmf" | "no_input" | "stt_failed"
    text: str = ""
    confidence: float | None = None
    early: bool = False
    timing: TurnTiming = field(default_factory=TurnTiming)
    detail: str = ""


@dataclass(frozen=True)
class AnswerVerdict:
    """Who answered an outbound call, from the agent's own detector or the provider's AMD."""

    kind: Answerer
    source: str  # "agent" | "provider"
    frame: int  # audio time of the verdict
    detail: str = ""


@dataclass
class _Speculation:
    task: asyncio.Task[Any]
    start_frame: int
    ready_frame: int | None = None  # audio time at which its result may be used


class VoiceSession:
    """Owns one call's audio loop. The conversation reads `turns` and answers with `say`."""

    def __init__(
        self,
        transport: Transport,
        stt: SpeechToText,
        tts: TextToSpeech,
        vad: FrameVad,
        settings: TurnTaking | None = None,
        vocabulary: list[str] | None = None,
        events: EventLog | None = None,
        no_input_ms: int = 7000,
    ) -> None:
        self.transport = transport
        self.stt, self.tts, self.vad = stt, tts, vad
        self.settings = settings or TurnTaking()
        self.vocabulary = vocabulary or []
        self.events = events or EventLog()
        self.detector = TurnDetector(self.settings)
        # Transports whose far end echoes marks (local, Twilio) confirm playout; others are trusted on send.
        self.playout = PlayoutClock(echoes_marks=bool(getattr(transport, "echoes_marks", False)))
        # Capped: a conversation that stopped reading must not let a talking line grow memory.
        self.turns: asyncio.Queue[VoiceTurn] = asyncio.Queue(maxsize=MAX_PENDING_TURNS)
        self.completes_answer: Callable[[str], bool] = lambda _text: False
        # Keys pressed are one turn once the conversation says they form an answer, on "#", or after
        # `dtmf_gap_ms` without a key; by default each key is a turn of its own.
        self.completes_keys: Callable[[str], bool] = lambda _keys: True
        self.dtmf_gap_frames = 3000 // FRAME_MS
        self._keys = ""
        self._keys_quiet = 0
        self.answers: asyncio.Queue[AnswerVerdict] = asyncio.Queue(maxsize=MAX_PENDING_TURNS)  # outbound: who answered
        self.answer_detector: AnswerDetector | None = None
        self.barge_in_enabled = True  # off while leaving a voicemail message over a talking machine
        self.no_input_frames = max(1, no_input_ms // FRAME_MS)
        self.frame = 0
        self.ended = asyncio.Event()
        self._work: set[asyncio.Task[Any]] = set()
        self._turns_open = 0  # turns handed to the conversation and not yet answered
        self._spec: _Speculation | None = None
        self._speech_end_wall = 0.0
        self._quiet_frames = 0
        self._synth: dict[int, asyncio.Task[None]] = {}
        self.max_loop_lag_ms = 0.0
        self._conversation_closed = False

    # ---- the conversation's side ----
    def say(self, text: str, **meta: object) -> SpeechHandle:
        """Queue speech; it plays after whatever is already queued. Returns at once.

        After the line has gone (the loop ended) nothing can play: the speech settles at once, unheard.
        """
        handle = SpeechHandle(text, dict(meta))
        if self.ended.is_set():
            handle.settle_unheard()
            self.events.emit("agent_speech_unheard", id=handle.id, text=text, reason="the call has ended", **meta)
            return handle
        self.playout.enqueue(handle)
        self._synth[handle.id] = self._spawn(self._synthesize(handle))
        self.events.emit("agent_speech_queued", id=handle.id, text=text, **meta)
        return handle

    def turn_answered(self) -> None:
        """The conversation has queued everything it will say for the last turn."""
        self._turns_open = max(0, self._turns_open - 1)

    def close_conversation(self) -> None:
        """The conversation has ended (hang-up or transfer under way): no more turns are owed."""
        self._conversation_closed = True
        self._turns_open = 0

    def interrupt_speech(self, reason: str) -> None:
        results = self.playout.interrupt()
        for task in self._synth.values():
            task.cancel()
        self._synth.clear()
        if results:
            self._spawn(self.transport.clear())
            self.events.emit("agent_interrupted", reason=reason, heard=[r.heard for r in results])

    # ---- the loop ----
    async def run(self) -> None:
        """Process inbound items until the caller hangs up or the transport closes."""
        try:
            while True:
                if self.transport.lockstep:
                    await self.settled()
                item = await self.transport.receive()
                if isinstance(item, AudioIn):
                    await self._on_frame(item.pcm)
                elif isinstance(item, Dtmf):
                    self._on_key(item.digit)
                elif isinstance(item, MarkPlayed):
                    self._on_mark(item.name)
                elif isinstance(item, AnsweredBy):
                    self._on_answered_by(item)
                elif isinstance(item, ProtocolIssue):
                    log.warning("transport.protocol_issue", detail=item.message)
                    self.events.emit("protocol_issue", message=item.message)
                elif isinstance(item, Hangup):
                    self.events.emit("hangup", reason=item.reason)
                    break
        finally:
            self.ended.set()  # first: speech offered from here on settles at once (say)
            self.playout.interrupt()  # the line is gone: settle every speech with what was heard
            for task in list(self._work):
                task.cancel()
            self._synth.clear()

    async def settled(self) -> None:
        """Wait until no recognition, answer or synthesis is in flight (lockstep pacing)."""
        while True:
            busy = [t for t in self._work if not t.done()]
            if self._turns_open == 0 and not busy:
                return
            if busy:
                await asyncio.wait(busy, timeout=0.05)
            else:
                await asyncio.sleep(0.002)

    async def _on_frame(self, pcm: bytes) -> None:
        # A model VAD runs off the event loop; awaited before the frame counts, so whatever runs
        # meanwhile (a finished speculation) sees the call exactly as it was between two frames.
        prob = await frame_probability(self.vad, pcm)
        started = time.perf_counter()
        self.frame += 1
        self.events.frame = self.frame
        if self.answer_detector is not None:
            for kind in self.answer_detector.push(pcm, prob):
                self._answered(AnswerVerdict(kind, "agent", self.frame))
        self._track_keys()
        for signal in self.detector.push(pcm, prob, agent_speaking=self.playout.busy):
            self._on_signal(signal)
        self._maybe_end_early()
        await self._play_one()
        self._track_no_input()
        self.max_loop_lag_ms = max(self.max_loop_lag_ms, (time.perf_counter() - started) * 1000)

    async def _play_one(self) -> None:
        tick = self.playout.tick()
        if tick.frame is not None:
            current = tick.sent_all or self.playout.current
            if current is not None and current.first_audio_wall is None:
                current.first_audio_wall = time.perf_counter()
                current.audible.set()
                self.events.emit("agent_audio_started", id=current.id, **current.meta)
            await self.transport.send_audio(tick.frame)
        elif self.transport.lockstep:
            await self.transport.send_audio(SILENCE_FRAME)
        for name in tick.marks:
            await self.transport.send_mark(name)
        if tick.sent_all is not None:
            self._synth.pop(tick.sent_all.id, None)
        self._report_played(tick.settled)

    def _report_played(self, handles: list[SpeechHandle]) -> None:
        for handle in handles:
            self.events.emit("agent_speech_done", id=handle.id, text=handle.text, **handle.meta)

    def _on_mark(self, name: str) -> None:
        played = self.playout.mark_played(name)
        if played is None:  # echoed by a clear (barge-in) or unknown: proves nothing was played
            self.events.emit("mark_discarded", name=name)
            return
        self.events.emit("mark_played", name=name)
        self._report_played(played)

    def _on_key(self, key: str) -> None:
        self.events.emit("dtmf", digit=key)
        if key == "#" and self._keys:
            self._flush_keys()
            return
        self._keys += key
        self._keys_quiet = 0
        if key == "#" or self.completes_keys(self._keys):
            self._flush_keys()

    def _track_keys(self) -> None:
        if self._keys:
            self._keys_quiet += 1
            if self._keys_quiet >= self.dtmf_gap_frames:
                self._flush_keys()

    def _flush_keys(self) -> None:
        keys, self._keys = self._keys, ""
        self._emit_turn(VoiceTurn(kind="dtmf", text=keys))

    def listen_for_answerer(self, detector: AnswerDetector | None = None) -> None:
        """An outbound call: judge the first seconds of audio (human, machine, beep) into `answers`."""
        self.answer_detector = detector or AnswerDetector()

    def _on_answered_by(self, item: AnsweredBy) -> None:
        kind = provider_verdict(item.kind, item.detail)
        self.events.emit("answered_by", kind=item.kind, detail=item.detail)
        if kind is not None:
            self._answered(AnswerVerdict(kind, "provider", self.frame, item.detail or item.kind))

    def _answered(self, verdict: AnswerVerdict) -> None:
        self.events.emit("answerer", kind=verdict.kind.value, source=verdict.source, detail=verdict.detail)
        if self.answers.full():  # nobody is reading verdicts any more: the first ones decided
            self.events.emit("answerer_dropped", kind=verdict.kind.value)
            return
        self.answers.put_nowait(verdict)

    def _track_no_input(self) -> None:
        if self.playout.busy or self.detector.in_turn or self._turns_open or self._busy_recognising():
            self._quiet_frames = 0
            return
        self._quiet_frames += 1
        if self._quiet_frames >= self.no_input_frames:
            self._quiet_frames = 0
            self._emit_turn(VoiceTurn(kind="no_input"))

    def _busy_recognising(self) -> bool:
        return any(not t.done() for t in self._work if t.get_name().startswith("turn"))

    # ---- turn signals ----
    def _on_signal(self, signal: TurnSignal) -> None:
        if signal is TurnSignal.SPEECH_STARTED:
            self.events.emit("caller_speech_started")
        elif signal is TurnSignal.BARGE_IN and self.barge_in_enabled:
            self.interrupt_speech("caller barged in")
        elif signal is TurnSignal.EARLY_PAUSE:
            self._speech_end_wall = time.perf_counter() - self.detector.silence_ms / 1000
            self._speculate()
        elif signal is TurnSignal.RESUMED:
            self._drop_speculation()
        elif signal is TurnSignal.END_OF_TURN:
            self._end_turn()
        elif signal is TurnSignal.NOISE:
            self._drop_speculation()
            self.events.emit("noise_ignored")

    def _speculate(self) -> None:
        audio = self.detector.take_audio()
        self.events.emit("speculation_started")
        task = self._spawn(self._recognise(audio, speculative=True), name="speculation")
        self._spec = _Speculation(task, self.frame)
        task.add_done_callback(self._on_speculation_done)

    def _drop_speculation(self) -> None:
        if self._spec is not None:
            self._spec.task.cancel()
            self._spec = None
            self.events.emit("speculation_dropped")

    def _on_speculation_done(self, task: asyncio.Task[Any]) -> None:
        spec = self._spec
        if spec is None or spec.task is not task or task.cancelled() or task.exception() is not None:
            return
        # In lockstep audio time stands still while recognition runs; charge the engine's typical
        # duration in frames, so a fast simulated call decides as a real-time one would, and the
        # same way on every run (charging the measured time made results depend on machine load).
        typical = self.stt.typical_latency_ms
        cost = self.settings.frames(typical) if self.transport.lockstep and typical > 0 else 0
        spec.ready_frame = spec.start_frame + cost
        self._maybe_end_early()

    def _maybe_end_early(self) -> None:
        spec = self._spec
        if spec is None or spec.ready_frame is None or self.frame < spec.ready_frame:
            return
        transcript, t0, t1 = spec.task.result()
        if self.detector.in_turn and self.detector.early_sent and self.completes_answer(transcript.text):
            timing = self._timing(t0, t1)
            self.detector.commit()
            self._spec = None
            self.events.emit("early_end_of_turn", text=transcript.text)
            self._emit_turn(VoiceTurn(kind="speech", text=transcript.text, confidence=transcript.confidence,
                                      early=True, timing=timing))

    def _end_turn(self) -> None:
        if self._speech_end_wall == 0.0 or not self.detector.early_sent:
            self._speech_end_wall = time.perf_counter() - self.detector.silence_ms / 1000
        audio = self.detector.take_audio()
        spec = self._spec
        self._spec = None
        self._turns_open += 1  # the conversation owes an answer from here on
        self._spawn(self._finish_turn(audio, spec), name="turn")

    async def _finish_turn(self, audio: bytes, spec: _Speculation | None) -> None:
        committed = time.perf_counter()
        try:
            # A speculation the engine refused (busy) or that failed is no answer: decode the turn.
            if spec is not None and not spec.task.cancelled() and await _succeeded(spec.task):
                transcript, t0, t1 = spec.task.result()
            else:
                transcript, t0, t1 = await self._recognise(audio)
        except Exception as exc:  # all STT providers failed: the conversation says so politely
            log.error("stt.failed", error=str(exc))
            self._turns_open -= 1
            self._emit_turn(VoiceTurn(kind="stt_failed", detail=str(exc)))
            return
        self._turns_open -= 1
        if not transcript.text.strip():
            self.events.emit("empty_transcript")
            return
        timing = self._timing(t0, t1)
        timing.committed = committed
        self._emit_turn(VoiceTurn(kind="speech", text=transcript.text, confidence=transcript.confidence,
                                  timing=timing))

    async def _recognise(self, audio: bytes, speculative: bool = False) -> tuple[Any, float, float]:
        t0 = time.perf_counter()
        if speculative:
            transcript = await self.stt.transcribe(audio, vocabulary=self.vocabulary, speculative=True)
        else:
            transcript = await self.stt.transcribe(audio, vocabulary=self.vocabulary)
        return transcript, t0, time.perf_counter()

    def _timing(self, t0: float, t1: float) -> TurnTiming:
        return TurnTiming(speech_end=self._speech_end_wall, stt_start=t0, stt_end=t1,
                          committed=time.perf_counter(), speech_end_frame=self.detector.last_speech_frame,
                          committed_frame=self.frame)

    def _emit_turn(self, turn: VoiceTurn) -> None:
        if self._conversation_closed:
            self.events.emit("turn_after_close", kind=turn.kind, text=turn.text)
            return
        if self.turns.full():  # the conversation stopped reading: shed, never grow without bound
            self.events.emit("turn_dropped", kind=turn.kind, text=turn.text)
            return
        self._turns_open += 1
        self._speech_end_wall = 0.0
        self.events.emit("caller_turn", kind=turn.kind, text=turn.text, early=turn.early)
        self.turns.put_nowait(turn)

    # ---- speech synthesis ----
    async def _synthesize(self, handle: SpeechHandle) -> None:
        try:
            for sentence in split_sentences(handle.text):
                handle.begin_sentence(sentence)
                async for chunk in self.tts.synthesize(sentence):
                    handle.add_audio(chunk)
                handle.end_sentence()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # every TTS provider failed: end this speech, report it
            log.error("tts.failed", error=str(exc), speech=handle.id)  # the words are call content: not logged
            self.events.emit("tts_failed", id=handle.id, error=str(exc))
        finally:
            handle.finish_synthesis()

    def _spawn(self, coro: Any, name: str = "work") -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._work.add(task)
        task.add_done_callback(self._work.discard)
        return task


async def _succeeded(task: asyncio.Task[Any]) -> bool:
    """Wait for a speculative recognition; True when it produced a transcript."""
    await asyncio.wait([task])
    return not task.cancelled() and task.exception() is None
