"""One call's conversation: the voice session and the agent's policy side by side, to an outcome and a report."""
from __future__ import annotations

import asyncio
import time
from typing import Any

import structlog

from spotfunnel.calls.bounds import (
    CONTROL_DEADLINE_S,
    ENDING_GRACE_S,
    SETTLE_DEADLINE_S,
    SPEECH_DEADLINE_S,
    within,
)
from spotfunnel.calls.journal import CallJournal
from spotfunnel.calls.latency import split_latency
from spotfunnel.calls.outbound import OutboundAnswer
from spotfunnel.calls.record import (
    ABANDONED,
    ENDED,
    FAILED,
    FAX,
    HANDOFF,
    HANDOFF_FAILED,
    NO_INPUT,
    WEAK_OUTCOMES,
    CallRecord,
    CallSetup,
    stt_prompt_terms,
)
from spotfunnel.calls.services import CallServices
from spotfunnel.conversation.extract.phones import spoken_phone
from spotfunnel.conversation.policy import AgentReply, UserTurn
from spotfunnel.conversation.receptionist import ReceptionistPolicy
from spotfunnel.store.calls import HEARD_MAX_ENTRIES
from spotfunnel.store.ledger import BookingLedger
from spotfunnel.transports.base import Transport
from spotfunnel.voice.endpointing import TurnTaking
from spotfunnel.voice.playout import SpeechHandle
from spotfunnel.voice.session import VoiceSession, VoiceTurn
from spotfunnel.voice.vad import FrameVad

__all__ = ["Conversation"]

log = structlog.get_logger(__name__)

Replies = list[tuple[AgentReply, SpeechHandle]]


class Conversation:
    """Runs the voice session and the policy side by side for one call; always ends with an outcome and a report."""

    def __init__(self, transport: Transport, services: CallServices, setup: CallSetup, record: CallRecord,
                 vad: FrameVad, outbound: bool = False, *, trace_id: str, journal: CallJournal) -> None:
        agent = setup.agent
        tt = agent.turn_taking
        self.transport, self.setup, self.record = transport, setup, record
        self.trace_id, self.journal = trace_id, journal
        ledger = BookingLedger(setup.db, agent.profile, setup.clock)
        self.policy = ReceptionistPolicy(agent, ledger, setup.clock, caller_id=record.caller_id,
                                         call_id=record.call_id, trace_id=trace_id)
        settings = TurnTaking(silence_ms=tt.silence_ms, early_pause_ms=tt.early_pause_ms)
        self.session = VoiceSession(transport, services.stt, services.tts, vad, settings,
                                    vocabulary=stt_prompt_terms(agent), events=record.events, no_input_ms=tt.no_input_ms)
        self.session.completes_answer = self.policy.completes_answer
        self.session.completes_keys = self.policy.completes_keys
        self.outbound = OutboundAnswer(self.session) if outbound else None
        self._heard_tasks: set[asyncio.Task[None]] = set()
        self._no_inputs = 0
        self._ending = False
        self._handing_off = False  # the agent passes the call to a person because it cannot understand
        self._call_outcome: str | None = None  # how the call ended when the policy settled nothing stronger

    async def run(self) -> None:
        wall0 = time.perf_counter()
        voice = asyncio.create_task(self.session.run(), name="voice")
        talk = asyncio.create_task(self._converse(), name="conversation")
        try:
            await asyncio.wait({voice, talk}, return_when=asyncio.FIRST_COMPLETED)
            if talk.done() and not talk.cancelled() and talk.exception() is not None:
                raise talk.exception()  # type: ignore[misc]
            if voice.done():
                if self._ending:  # the agent's own hang-up or transfer closed the line: let its request finish
                    await asyncio.wait({talk}, timeout=ENDING_GRACE_S)
            else:  # the agent has closed the call: the line goes once the provider confirms
                self.session.close_conversation()
                await asyncio.wait({voice}, timeout=ENDING_GRACE_S)
        except Exception as exc:  # a bug must not leave the caller in dead air: hand off cleanly
            log.exception("call.failed", call_id=self.record.call_id)
            self.record.error = f"{type(exc).__name__}: {exc}"
            self._call_outcome = FAILED
            if not await within("transfer", self.transport.transfer(self.setup.agent.profile.handoff_phone),
                                CONTROL_DEADLINE_S, False):
                await within("hangup", self.transport.hangup(), CONTROL_DEADLINE_S, None)
        finally:
            await self._wind_down(voice, talk)
            self._settle_record(wall0, voice)
            await self.journal.finish(self.record.report(self.trace_id))

    async def _wind_down(self, voice: asyncio.Task[None], talk: asyncio.Task[None]) -> None:
        """Stop both sides and wait, bounded, until every speech is settled (unheard once the line is gone)."""
        for task in (voice, talk):
            task.cancel()
        await asyncio.wait({voice, talk}, timeout=SETTLE_DEADLINE_S)
        if self._heard_tasks:
            _done, late = await asyncio.wait(set(self._heard_tasks), timeout=SETTLE_DEADLINE_S)
            for task in late:  # cannot happen once the session has ended; never wait forever if it does
                log.warning("call.speech_unsettled", call_id=self.record.call_id, task=task.get_name())
                task.cancel()

    def _settle_record(self, wall0: float, voice: asyncio.Task[None]) -> None:
        r = self.record
        if voice.done() and not voice.cancelled() and voice.exception() is not None:
            r.error = r.error or f"voice loop: {voice.exception()!r}"
            self._call_outcome = self._call_outcome or FAILED
        r.duration_s = round(time.perf_counter() - wall0, 3)
        r.max_loop_lag_ms = self.session.max_loop_lag_ms
        r.outcome = self._outcome()
        r.transcript = [h.model_dump() for h in self.policy.history]

    def _outcome(self) -> str:
        """A settled task (booked, cancelled, ...) first, then how the call ended, then answered/transferred."""
        settled = self.policy.outcome
        if settled is not None and settled not in WEAK_OUTCOMES:
            return settled
        return self._call_outcome or settled or (ENDED if self._ending else ABANDONED)

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
                self._journal_heard()
            if replies:
                await self._finish_if_last(replies)

    async def _open(self) -> bool:
        """Greet an inbound caller; on an outbound call wait for who answers. False: the call is over."""
        if self.outbound is None:
            self._say_all([self.policy.greeting()])
            return True
        first = await self.outbound.first_words(self.policy)
        if first is None:  # a fax machine: nobody to talk to
            self._ending, self._call_outcome = True, FAX
            self.record.events.emit("agent_hangup")
            await within("hangup", self.transport.hangup(), CONTROL_DEADLINE_S, None)
            return False
        if first.end_call:
            self.session.barge_in_enabled = False  # the voicemail message goes on over a talking machine
        await self._finish_if_last(self._say_all([first]))
        return not self._ending

    async def _leave_voicemail(self) -> None:
        self.session.interrupt_speech("answering machine beep")
        self.session.barge_in_enabled = False  # the machine records; nothing it plays stops the message
        await self._finish_if_last(self._say_all([self.policy.voicemail()]))

    async def _answer(self, turn: VoiceTurn) -> Replies:
        if turn.kind == "no_input":
            return await self._no_input()
        self._no_inputs = 0
        if turn.kind == "stt_failed":
            self._handing_off = True
            phrase = self.setup.agent.say("handoff_after_trouble")
            return self._say_all([AgentReply(text=phrase, transfer_to=self.setup.agent.profile.handoff_phone,
                                             end_call=True)])
        user = UserTurn(text=turn.text, dtmf=turn.text if turn.kind == "dtmf" else None,
                        confidence=turn.confidence)
        out: Replies = []
        async for reply in self.policy.respond(user):
            out.extend(self._say_all([reply]))
            if len(out) == 1 and turn.kind == "speech":
                self._spawn_latency(turn, out[0][1])
        return out

    async def _no_input(self) -> Replies:
        """Silence on the line: ask again twice (the policy repeats its question), then say goodbye."""
        self._no_inputs += 1
        agent = self.setup.agent
        if self._no_inputs >= 3:
            self._call_outcome = NO_INPUT
            return self._say_all([AgentReply(text=agent.say("goodbye", business=agent.profile.name), end_call=True)])
        return [pair async for reply in self.policy.respond(UserTurn(text="")) for pair in self._say_all([reply])]

    def _say_all(self, replies: list[AgentReply]) -> Replies:
        out = []
        for reply in replies:
            handle = self.session.say(reply.text, reprompt=reply.reprompt, filler=reply.filler)
            self._track(self._record_heard(reply, handle), "heard")
            out.append((reply, handle))
        return out

    def _track(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._heard_tasks.add(task)
        task.add_done_callback(self._heard_tasks.discard)

    async def _record_heard(self, reply: AgentReply, handle: SpeechHandle) -> None:
        result = await handle.result()  # settles in audio time, or at once (unheard) when the line has gone
        self.policy.record_heard(reply, result.heard, result.interrupted)
        self._journal_heard()

    def _journal_heard(self) -> None:
        self.journal.heard([h.model_dump() for h in self.policy.history[-HEARD_MAX_ENTRIES:]])

    async def _spoken(self, handle: SpeechHandle) -> None:
        """Until the speech has played or is settled unheard; the deadline is a backstop, audio time rules."""
        await within("speech", handle.result(), SPEECH_DEADLINE_S, None)
        await asyncio.sleep(0)  # let its heard-task record it first

    async def _finish_if_last(self, replies: Replies) -> None:
        last, handle = replies[-1]
        if not (last.end_call or last.transfer_to):
            return
        self._ending = True
        self.session.close_conversation()
        await self._spoken(handle)
        if last.transfer_to:
            self.record.events.emit("transfer", to=last.transfer_to)
            if await within("transfer", self.transport.transfer(last.transfer_to), CONTROL_DEADLINE_S, False):
                if self._handing_off:
                    self._call_outcome = HANDOFF
                return
            await self._transfer_failed(last.transfer_to)
        self.record.events.emit("agent_hangup")
        await within("hangup", self.transport.hangup(), CONTROL_DEADLINE_S, None)

    async def _transfer_failed(self, to: str) -> None:
        """The provider refused the transfer: the caller is still here, so give them the number, not dead air."""
        self._call_outcome = HANDOFF_FAILED
        self.record.events.emit("transfer_failed", to=to)
        text = self.setup.agent.say("transfer_failed", phone=spoken_phone(to))
        _reply, handle = self._say_all([AgentReply(text=text, end_call=True)])[0]
        await self._spoken(handle)

    def _spawn_latency(self, turn: VoiceTurn, handle: SpeechHandle) -> None:
        first_reply = time.perf_counter()

        async def measure() -> None:
            await handle.audible.wait()  # set at the first frame, or when the speech settles
            if handle.first_audio_wall is not None:
                self.record.latencies.append(split_latency(turn, first_reply, handle))

        self._track(measure(), "latency")
