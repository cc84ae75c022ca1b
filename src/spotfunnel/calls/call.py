"""One call's lifecycle: wires a transport, a voice session, the agent's policy and the outbox."""
from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable

import structlog

from spotfunnel.calls.outbound import OutboundAnswer
from spotfunnel.calls.services import CallServices
from spotfunnel.clock import Clock
from spotfunnel.conversation.agent import AgentConfig
from spotfunnel.conversation.extract.phones import spoken_phone
from spotfunnel.conversation.policy import AgentReply, UserTurn
from spotfunnel.conversation.receptionist import ReceptionistPolicy
from spotfunnel.store.db import Database
from spotfunnel.store.ledger import BookingLedger
from spotfunnel.store.outbox import enqueue_now
from spotfunnel.transports.base import CallStarted, Hangup, Transport
from spotfunnel.voice.endpointing import TurnTaking
from spotfunnel.voice.events import CallEvent, EventLog
from spotfunnel.voice.playout import SpeechHandle
from spotfunnel.voice.session import VoiceSession, VoiceTurn
from spotfunnel.voice.vad import FrameVad

log = structlog.get_logger(__name__)

ENDING_GRACE_S = 10.0  # how long a closing call waits for the provider to confirm the hang-up or transfer


@dataclass
class CallSetup:
    """Everything a call needs besides its transport: the tenant's agent, its store and its clock."""

    agent: AgentConfig
    db: Database
    clock: Clock


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


@dataclass
class CallRecord:
    call_id: str
    tenant_id: str = ""
    caller_id: str = ""
    started_at: datetime | None = None
    outcome: str | None = None
    transcript: list[dict[str, Any]] = field(default_factory=list)
    latencies: list[TurnLatency] = field(default_factory=list)
    events: EventLog = field(default_factory=EventLog)
    duration_s: float = 0.0
    max_loop_lag_ms: float = 0.0
    error: str | None = None
    finished: asyncio.Event = field(default_factory=asyncio.Event)  # set when the agent side is done


def stt_prompt_terms(agent: AgentConfig) -> list[str]:
    """Business name first, then the canonical service names and the tenant's extra terms."""
    return [agent.profile.name, *(s.name for s in agent.profile.services), *agent.vocabulary.extra]


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


class CallSetupError(Exception):
    """The call cannot start (unknown tenant, bad configuration); the message says why."""


async def _await_start(transport: Transport, events: EventLog) -> CallStarted | None:
    while True:
        item = await transport.receive()
        if isinstance(item, CallStarted):
            return item
        if isinstance(item, Hangup):
            return None
        events.emit("pre_start_item", item=type(item).__name__)


async def run_call(
    transport: Transport,
    services: CallServices,
    resolve: Callable[[CallStarted], CallSetup],
    record_for: Callable[[CallStarted], CallRecord | None] = lambda _s: None,
) -> CallRecord:
    """Run one call to its end and enqueue its report. Never raises for caller-side trouble."""
    started = await _await_start(transport, EventLog())
    if started is None:
        return CallRecord(call_id="", error="hung up before the call started")
    record = record_for(started) or CallRecord(call_id="")
    try:
        await _run_started(transport, services, resolve, record, started)
    finally:
        record.finished.set()
    return record


async def _run_started(transport: Transport, services: CallServices, resolve: Callable[[CallStarted], CallSetup],
                       record: CallRecord, started: CallStarted) -> None:
    record.call_id = started.call_id or f"call-{uuid.uuid4().hex[:12]}"
    record.caller_id = started.caller_id
    try:
        setup = resolve(started)
    except CallSetupError as exc:
        log.warning("call.rejected", call_id=record.call_id, reason=str(exc))
        record.error = str(exc)
        await transport.hangup()
        return
    record.tenant_id = setup.agent.profile.id
    record.started_at = setup.clock.now()
    vad = await asyncio.to_thread(services.vad_factory)  # loading the VAD model takes ~75 ms: off the loop
    bound = log.bind(call_id=record.call_id, tenant=record.tenant_id)
    record.events.subscribe(lambda ev: _log_event(bound, ev))
    outbound = started.params.get("direction") == "outbound"
    await Conversation(transport, services, setup, record, vad, outbound=outbound).run()
    bound.info("call.ended", outcome=record.outcome, duration_s=record.duration_s,
               turn_latency_ms=[round(x.total) for x in record.latencies], error=record.error)


def _log_event(bound: Any, ev: CallEvent) -> None:
    """The live transcript in the server log: what the caller said, what the agent said or was cut off."""
    if ev.kind == "caller_turn" and ev.data.get("text"):
        bound.info("call.caller", text=ev.data["text"], early=ev.data.get("early", False))
    elif ev.kind == "agent_speech_queued":
        bound.info("call.agent", text=ev.data.get("text"))
    elif ev.kind == "agent_interrupted":
        bound.info("call.agent_interrupted", heard=ev.data.get("heard"))


class Conversation:
    """Runs the voice session and the policy side by side for one call."""

    def __init__(self, transport: Transport, services: CallServices, setup: CallSetup, record: CallRecord,
                 vad: FrameVad, outbound: bool = False) -> None:
        agent = setup.agent
        tt = agent.turn_taking
        self.transport, self.setup, self.record = transport, setup, record
        self.trace_id = uuid.uuid4().hex
        ledger = BookingLedger(setup.db, agent.profile, setup.clock)
        self.policy = ReceptionistPolicy(agent, ledger, setup.clock, caller_id=record.caller_id,
                                         call_id=record.call_id, trace_id=self.trace_id)
        settings = TurnTaking(silence_ms=tt.silence_ms, early_pause_ms=tt.early_pause_ms)
        self.session = VoiceSession(transport, services.stt, services.tts, vad, settings,
                                    vocabulary=stt_prompt_terms(agent), events=record.events, no_input_ms=tt.no_input_ms)
        self.session.completes_answer = self.policy.completes_answer
        self.session.completes_keys = self.policy.completes_keys
        self.outbound = OutboundAnswer(self.session) if outbound else None
        self._heard_tasks: list[asyncio.Task[None]] = []
        self._no_inputs = 0
        self._ending = False

    async def run(self) -> None:
        wall0 = time.perf_counter()
        voice = asyncio.create_task(self.session.run(), name="voice")
        talk = asyncio.create_task(self._converse(), name="conversation")
        try:
            await asyncio.wait({voice, talk}, return_when=asyncio.FIRST_COMPLETED)
            if talk.done() and talk.exception() is not None:
                raise talk.exception()  # type: ignore[misc]
            if voice.done():
                if self._ending:  # the agent's own hang-up or transfer closed the line: let its request finish
                    await asyncio.wait({talk}, timeout=ENDING_GRACE_S)
                talk.cancel()
            else:
                self.session.close_conversation()
                await voice
        except Exception as exc:  # a bug must not leave the caller in dead air: hand off cleanly
            log.exception("call.failed", call_id=self.record.call_id)
            self.record.error = f"{type(exc).__name__}: {exc}"
            if not await self.transport.transfer(self.setup.agent.profile.handoff_phone):
                await self.transport.hangup()
        finally:
            for task in (voice, talk):
                task.cancel()
            await asyncio.gather(*self._heard_tasks, return_exceptions=True)
            self.record.duration_s = round(time.perf_counter() - wall0, 3)
            self.record.max_loop_lag_ms = self.session.max_loop_lag_ms
            self.record.outcome = self.policy.outcome or ("abandoned" if not self._ending else None)
            self.record.transcript = [h.model_dump() for h in self.policy.history]
            await self._enqueue_report()

    async def _converse(self) -> None:
        if not await self._open():
            return
        while not self._ending:
            turn = await self.session.turns.get() if self.outbound is None else await self.outbound.next_turn()
            if turn is None:  # outbound: an answering machine's beep after all
                await self._leave_voicemail()
                return
            if self.outbound is not None and self.outbound.stale(turn):
                self.session.turn_answered()  # the opening line already answered it
                continue
            try:
                replies = await self._answer(turn)
            finally:
                self.session.turn_answered()
            if replies:
                await self._finish_if_last(replies)

    async def _open(self) -> bool:
        """Greet an inbound caller; on an outbound call wait for who answers. False: the call is over."""
        if self.outbound is None:
            self._say_all([self.policy.greeting()])
            return True
        first = await self.outbound.first_words(self.policy)
        if first is None:  # a fax machine: nobody to talk to
            self._ending = True
            self.record.events.emit("agent_hangup")
            await self.transport.hangup()
            return False
        if first.end_call:
            self.session.barge_in_enabled = False  # the voicemail message goes on over a talking machine
        await self._finish_if_last(self._say_all([first]))
        return not self._ending

    async def _leave_voicemail(self) -> None:
        self.session.interrupt_speech("answering machine beep")
        self.session.barge_in_enabled = False  # the machine records; nothing it plays stops the message
        await self._finish_if_last(self._say_all([self.policy.voicemail()]))

    async def _answer(self, turn: VoiceTurn) -> list[tuple[AgentReply, SpeechHandle]]:
        if turn.kind == "no_input":
            return await self._no_input()
        self._no_inputs = 0
        if turn.kind == "stt_failed":
            phrase = self.setup.agent.say("handoff_after_trouble")
            return self._say_all([AgentReply(text=phrase, transfer_to=self.setup.agent.profile.handoff_phone,
                                             end_call=True)])
        user = UserTurn(text=turn.text, dtmf=turn.text if turn.kind == "dtmf" else None,
                        confidence=turn.confidence)
        out: list[tuple[AgentReply, SpeechHandle]] = []
        async for reply in self.policy.respond(user):
            out.extend(self._say_all([reply]))
            if len(out) == 1 and turn.kind == "speech":
                self._spawn_latency(turn, out[0][1])
        return out

    async def _no_input(self) -> list[tuple[AgentReply, SpeechHandle]]:
        """Silence on the line: ask again twice (the policy repeats its question), then say goodbye."""
        self._no_inputs += 1
        agent = self.setup.agent
        if self._no_inputs >= 3:
            return self._say_all([AgentReply(text=agent.say("goodbye", business=agent.profile.name), end_call=True)])
        return [pair async for reply in self.policy.respond(UserTurn(text="")) for pair in self._say_all([reply])]

    def _say_all(self, replies: list[AgentReply]) -> list[tuple[AgentReply, SpeechHandle]]:
        out = []
        for reply in replies:
            handle = self.session.say(reply.text, reprompt=reply.reprompt, filler=reply.filler)
            self._heard_tasks.append(asyncio.create_task(self._record_heard(reply, handle)))
            out.append((reply, handle))
        return out

    async def _record_heard(self, reply: AgentReply, handle: SpeechHandle) -> None:
        result = await handle.result()
        self.policy.record_heard(reply, result.heard, result.interrupted)

    async def _finish_if_last(self, replies: list[tuple[AgentReply, SpeechHandle]]) -> None:
        last, handle = replies[-1]
        if not (last.end_call or last.transfer_to):
            return
        self._ending = True
        self.session.close_conversation()
        await handle.result()
        await asyncio.sleep(0)
        if last.transfer_to:
            self.record.events.emit("transfer", to=last.transfer_to)
            if await self.transport.transfer(last.transfer_to):
                return
            await self._transfer_failed(last.transfer_to)
        self.record.events.emit("agent_hangup")
        await self.transport.hangup()

    async def _transfer_failed(self, to: str) -> None:
        """The provider refused the transfer: the caller is still here, so give them the number, not dead air."""
        self.record.events.emit("transfer_failed", to=to)
        text = self.setup.agent.say("transfer_failed", phone=spoken_phone(to))
        _reply, handle = self._say_all([AgentReply(text=text, end_call=True)])[0]
        await handle.result()
        await asyncio.sleep(0)

    def _spawn_latency(self, turn: VoiceTurn, handle: SpeechHandle) -> None:
        first_reply = time.perf_counter()

        async def measure() -> None:
            await handle.audible.wait()
            if handle.first_audio_wall is not None:
                self.record.latencies.append(split_latency(turn, first_reply, handle))

        self._heard_tasks.append(asyncio.create_task(measure()))

    async def _enqueue_report(self) -> None:
        r = self.record
        payload = {
            "call_id": r.call_id, "tenant_id": r.tenant_id, "caller_id": r.caller_id, "outcome": r.outcome,
            "started_at": r.started_at.isoformat() if r.started_at else None, "duration_s": r.duration_s,
            "transcript": r.transcript, "turn_latencies_ms": [round(x.total) for x in r.latencies],
        }
        try:
            await enqueue_now(self.setup.db, tenant_id=r.tenant_id, kind="call.report", payload=payload,
                              idempotency_key=f"report:{r.call_id}", trace_id=self.trace_id)
        except Exception:
            log.exception("call.report_enqueue_failed", call_id=r.call_id)

