"""An outbound call's first seconds: stay quiet until a person or a machine has answered, then open or leave a message."""
from __future__ import annotations

import asyncio
from typing import Callable

import structlog

from spotfunnel.conversation.policy import AgentReply
from spotfunnel.conversation.receptionist import ReceptionistPolicy
from spotfunnel.voice.session import AnswerVerdict, VoiceSession, VoiceTurn
from spotfunnel.voice.voicemail import MESSAGE_NOW, AnswerDetector, Answerer

log = structlog.get_logger(__name__)


class OutboundAnswer:
    """Combines the agent's own answering-machine detection with the provider's: the first verdict wins.

    While undecided the agent says nothing and the caller's turns (a person's "Hello?") are taken off
    the queue unanswered; the opening line answers them. After "machine" the agent waits for the beep
    (or the greeting's end, bounded in audio time by the detector) and leaves the voicemail message.
    After "human" the detector still listens for a beep until it gives up: a machine whose greeting
    paused like a person ("Hi! ... You've reached Sam") is caught by its beep, and a provider's
    "human" does not override a beep heard.
    """

    def __init__(self, session: VoiceSession, detector: AnswerDetector | None = None) -> None:
        self.session = session
        self.detector = detector or AnswerDetector()
        self.decided_frame = 0
        self.watching_beep = False

    async def first_words(self, policy: ReceptionistPolicy) -> AgentReply | None:
        """The reply that opens the call: the opening line, the voicemail message, or None (a fax)."""
        self.session.listen_for_answerer(self.detector)
        drain = asyncio.create_task(self._drain_turns(), name="outbound-drain")
        try:
            verdict = await self._next(lambda v: True)
            if verdict.kind is Answerer.MACHINE:
                self.detector.adopt(Answerer.MACHINE)
                verdict = await self._next(lambda v: v.kind in MESSAGE_NOW or v.kind is Answerer.FAX)
        finally:
            drain.cancel()
        self.decided_frame = self.session.frame
        self.watching_beep = verdict.kind is Answerer.HUMAN
        if not self.watching_beep:
            self.session.answer_detector = None  # decided for good
        log.info("outbound.answered", verdict=verdict.kind.value, source=verdict.source, frame=verdict.frame)
        if verdict.kind is Answerer.HUMAN:
            return policy.outbound_opening()
        if verdict.kind is Answerer.FAX:
            return None
        return policy.voicemail()

    async def next_turn(self) -> VoiceTurn | None:
        """The caller's next turn, or None when the agent's detector heard a beep after all."""
        if not self.watching_beep:
            return await self.session.turns.get()
        turn = asyncio.ensure_future(self.session.turns.get())
        beep = asyncio.ensure_future(self._beep())
        await asyncio.wait({turn, beep}, return_when=asyncio.FIRST_COMPLETED)
        if not beep.done():  # a queue get cancelled while waiting loses nothing
            beep.cancel()
            return turn.result()
        # The beep wins even when a turn completed in the same step: its verdict is off the queue now.
        if turn.done():  # what the machine said just before its beep: closed unanswered
            self.session.events.emit("turn_before_answer", kind=turn.result().kind, text=turn.result().text)
            self.session.turn_answered()
        else:
            turn.cancel()
        self.watching_beep = False
        self.session.answer_detector = None
        log.info("outbound.beep_after_human", frame=self.session.frame)
        return None

    async def _beep(self) -> None:
        # The agent's own beep, or the provider's machine_end_beep (its AMD heard one too). Not the
        # provider's machine_end_other/silence: that arrives late and is often a person who talked at length.
        await self._next(lambda v: v.kind is Answerer.BEEP)

    def stale(self, turn: VoiceTurn) -> bool:
        """A turn spoken before the verdict (the "Hello?" the opening line already answers)."""
        return turn.kind == "speech" and 0 < turn.timing.speech_end_frame <= self.decided_frame

    async def _next(self, wanted: Callable[[AnswerVerdict], bool]) -> AnswerVerdict:
        while True:
            verdict = await self.session.answers.get()
            if wanted(verdict):
                return verdict

    async def _drain_turns(self) -> None:
        """Undecided: whatever the far end says gets no answer yet (lockstep needs each turn closed)."""
        while True:
            turn = await self.session.turns.get()
            self.session.events.emit("turn_before_answer", kind=turn.kind, text=turn.text)
            self.session.turn_answered()
