"""The deterministic receptionist policy: routes each caller turn to the flow that owns the open question."""
from __future__ import annotations

import logging
import re
from collections import OrderedDict
from typing import AsyncIterator

from spotfunnel.clock import Clock
from spotfunnel.conversation.agent import AgentConfig
from spotfunnel.conversation.answers import answer_questions
from spotfunnel.conversation.context import CallContext, NotUnderstood
from spotfunnel.conversation.extract.intents import QUESTIONS, Intent, detect_intents, yes_or_no
from spotfunnel.conversation.extract.names import extract_name
from spotfunnel.conversation.extract.phones import spoken_digits, spoken_phone
from spotfunnel.conversation.extract.services import match_service
from spotfunnel.conversation.extract.text import FILLERS, fold, is_noise
from spotfunnel.conversation.flows.booking import BookingFlow
from spotfunnel.conversation.flows.manage import ManageFlow
from spotfunnel.conversation.policy import AgentReply, HistoryEntry, Outcome, UserTurn
from spotfunnel.conversation.state import MANAGE_ASKS, OPEN_ASKS, YES_NO_ASKS, Ask, Task
from spotfunnel.conversation.tools import Ledger
from spotfunnel.conversation.understand import understand
from spotfunnel.store.ledger import BookingRecord

log = logging.getLogger(__name__)

# A partial transcript ending in one of these is still going somewhere ("Thursday at ...").
_MAX_VERDICTS = 16  # a turn has a few distinct partials; older ones are never asked again
_UNFINISHED = frozenset(FILLERS | set("and at on for the a an to in of my is it's or with like so but around about by".split()))
# A whole turn ending on one of these stopped mid-sentence ("I was wondering if I could").
_TRAILS_OFF = _UNFINISHED | set("could can would will want wanted need hoping wondering if maybe get basically".split())


class ReceptionistPolicy:
    """Books, moves and cancels appointments and answers questions, from the agent's data alone."""

    def __init__(
        self, agent: AgentConfig, ledger: Ledger, clock: Clock, caller_id: str, call_id: str, trace_id: str = ""
    ) -> None:
        self.ctx = CallContext(agent, ledger, clock, caller_id, call_id, trace_id)
        self.booking_flow = BookingFlow(self.ctx)
        self.manage_flow = ManageFlow(self.ctx, self.booking_flow)
        self.history: list[HistoryEntry] = []
        self._verdicts: OrderedDict[tuple[object, ...], bool] = OrderedDict()  # completes_answer's memo

    # ---- the Policy protocol ---------------------------------------------------------------------

    @property
    def outcome(self) -> Outcome | None:
        return self.ctx.state.outcome

    @property
    def booking(self) -> BookingRecord | None:
        """The booking this call made, moved or cancelled (for the end-of-call report)."""
        return self.ctx.state.booking

    @property
    def ask(self) -> Ask:
        """The open question: what the caller's next turn should answer."""
        return self.ctx.state.ask

    def greeting(self) -> AgentReply:
        return self.ctx.ask(Ask.HELP, self.ctx.say("greeting", business=self.ctx.agent.profile.name))

    def outbound_opening(self) -> AgentReply:
        """The first words of an outbound call once a person has answered."""
        return self.ctx.ask(Ask.OFFER_BOOKING, self.ctx.say("outbound_opening", business=self.ctx.agent.profile.name))

    def voicemail(self) -> AgentReply:
        """The message left on an answering machine; the call ends after it."""
        agent = self.ctx.agent
        self.ctx.state.settle("voicemail")
        self.ctx.state.ask = Ask.ENDED
        return AgentReply(text=agent.voicemail(phone=spoken_phone(agent.profile.phone)), end_call=True)

    def completes_keys(self, keys: str) -> bool:
        """Whether the keys pressed so far answer the open question (a number waits for "#" or a pause)."""
        if self.ctx.state.ask in (Ask.PHONE, Ask.LOOKUP_PHONE):
            return False
        if self.ctx.state.ask is Ask.CALLER_ID:
            return keys in ("1", "2") or len(keys) >= 11
        return True

    def _keys_as_words(self, keys: str) -> str:
        """Keypad answers: 1 is yes and 2 is no where a yes or no is asked; digits are digits."""
        keys = keys.rstrip("#")
        if self.ctx.state.ask in YES_NO_ASKS and keys in ("1", "2"):
            return "yes" if keys == "1" else "no"
        return keys

    def no_input_reply(self) -> AgentReply:
        """The reprompt after the caller stayed silent for `turn_taking.no_input_ms`."""
        return AgentReply(text=self.ctx.say("no_input", question=self.ctx.state.question), reprompt=True)

    async def respond(self, turn: UserTurn) -> AsyncIterator[AgentReply]:
        text = self._keys_as_words(turn.dtmf) if turn.dtmf is not None else turn.text.strip()
        self.history.append(HistoryEntry(role="caller", text=turn.text))
        if self.ctx.state.ask is Ask.ENDED:
            return
        if is_noise(text):
            yield self._misunderstood("not_understood")
            return
        intents = detect_intents(text)
        if Intent.HANDOFF in intents:
            yield self._transfer("handoff")
            return
        if self.ctx.state.question_unheard and self.ctx.state.ask in YES_NO_ASKS:
            # A yes or no here would answer a question the caller never heard: ask it again.
            yield self.ctx.ask(self.ctx.state.ask, self.ctx.state.question)
            return
        try:
            async for reply in self._route(text, intents):
                yield reply
        except NotUnderstood as exc:
            if exc.phrase == "not_understood" and self._trails_off(text):
                # The open question stands; the caller only needs to go on.
                yield AgentReply(text=self.ctx.say("take_your_time"), reprompt=True)
                return
            yield self._misunderstood(exc.phrase)
            return
        except Exception:
            log.exception("tool failed during call %s (trace %s)", self.ctx.call_id, self.ctx.trace_id)
            yield self._transfer("tool_failed")
            return
        self.ctx.state.misunderstandings = self.ctx.state.trailing_off = 0

    def completes_answer(self, partial_text: str) -> bool:
        """Whether `partial_text` answers the open question; judged once per distinct partial.

        The voice loop asks again on every 20 ms frame until the turn ends, and judging a date
        runs dateparser (8-13 ms): the verdict is kept per text and everything it depends on."""
        state = self.ctx.state
        key = (partial_text, state.ask, state.draft.day, state.draft.time, self.ctx.today())
        verdict = self._verdicts.get(key)
        if verdict is None:
            verdict = self._judge_partial(partial_text)
            self._verdicts[key] = verdict
            while len(self._verdicts) > _MAX_VERDICTS:
                self._verdicts.popitem(last=False)
        return verdict

    def _judge_partial(self, partial_text: str) -> bool:
        spoken = fold(partial_text)
        tokens = spoken.split()
        if not tokens or tokens[-1] in _UNFINISHED or partial_text.rstrip().endswith(","):
            return False
        state = self.ctx.state
        if state.ask in YES_NO_ASKS and yes_or_no(partial_text) is not None:
            return True
        if state.ask is Ask.SERVICE:
            return match_service(partial_text, self.ctx.services) is not None
        if state.ask in (Ask.WHEN, Ask.PICK_SLOT):
            return self._completes_when(partial_text)
        if state.ask in (Ask.NAME, Ask.LAST_NAME):
            name = extract_name(partial_text)
            return name is not None and (name.is_full or name.explicit or state.ask is Ask.LAST_NAME)
        if state.ask in (Ask.PHONE, Ask.LOOKUP_PHONE, Ask.CALLER_ID):
            return len(spoken_digits(partial_text)) >= 10
        return False

    def record_heard(self, reply: AgentReply, heard_text: str, interrupted: bool) -> None:
        question = self.ctx.state.question
        if interrupted and question and reply.text.endswith(question) and not _heard_enough(heard_text, reply.text):
            # The caller heard it, or it did not happen: a confirmation nobody heard is not asked yet.
            self.ctx.state.question_unheard = True
        if heard_text.strip():
            self.history.append(
                HistoryEntry(role="agent", text=heard_text.strip(), interrupted=interrupted, reprompt=reply.reprompt)
            )

    # ---- routing ---------------------------------------------------------------------------------

    async def _route(self, text: str, intents: set[Intent]) -> AsyncIterator[AgentReply]:
        ask = self.ctx.state.ask
        switching = bool(intents & {Intent.CANCEL, Intent.RESCHEDULE}) and ask not in MANAGE_ASKS
        if ask in OPEN_ASKS or switching:
            async for reply in self._open_request(text, intents):
                yield reply
            return
        try:
            flow = self.manage_flow.handle(text) if ask in MANAGE_ASKS else self.booking_flow.handle(text, intents)
            async for reply in flow:
                yield reply
        except NotUnderstood:
            questions = intents & QUESTIONS
            if questions:
                yield self.ctx.ask(ask, self.ctx.state.question, answer_questions(self.ctx, questions, text))
            elif Intent.GOODBYE in intents and Intent.AFFIRM not in intents:
                yield self._goodbye()
            else:
                raise

    async def _open_request(self, text: str, intents: set[Intent]) -> AsyncIterator[AgentReply]:
        """A new request: at the start, after a task is done, or after a question was answered."""
        ctx, ask = self.ctx, self.ctx.state.ask
        questions = intents & QUESTIONS
        if Intent.CANCEL in intents or Intent.RESCHEDULE in intents:
            task: Task = "cancel" if Intent.CANCEL in intents else "reschedule"
            async for reply in self.manage_flow.start(task, text):
                yield reply
            return
        if self._wants_booking(text, intents, questions):
            answers = [answer_questions(ctx, questions, text)] if questions else []
            async for reply in self.booking_flow.start(text, *answers):
                yield reply
            return
        if questions:
            if ctx.state.task is None:
                # The day and hour asked about are kept for the booking the caller may ask for next;
                # a service asked about among others ("how much is a trim?") is not a choice yet.
                heard = understand(ctx, text).model_copy(update={"service_id": None, "name": None})
                ctx.state.draft.merge(heard, ctx.opening)
            ctx.state.settle("answered")
            yield ctx.ask(Ask.OFFER_BOOKING, ctx.say("offer_booking"), answer_questions(ctx, questions, text))
        elif Intent.GOODBYE in intents or (Intent.DENY in intents and ask is Ask.ANYTHING_ELSE):
            yield self._goodbye()
        elif Intent.DENY in intents and ask is Ask.OFFER_BOOKING:
            yield ctx.ask(Ask.ANYTHING_ELSE, ctx.say("anything_else"))
        elif Intent.AFFIRM in intents and ask is Ask.ANYTHING_ELSE:
            yield ctx.ask(Ask.HELP, ctx.say("ask_how_to_help"))
        elif ctx.state.task is None and ctx.state.draft.merge(understand(ctx, text), ctx.opening) & {"name", "phone"}:
            # "Hi, this is Sam Lee": kept for what comes next, acknowledged, and the caller asked on.
            first = (ctx.state.draft.name or ctx.state.draft.first_name or "").split()
            thanks = [ctx.say("ack_name", first_name=first[0])] if first else []
            yield ctx.ask(Ask.HELP, ctx.say("ask_how_to_help"), *thanks)
        else:
            raise NotUnderstood()

    def _wants_booking(self, text: str, intents: set[Intent], questions: set[Intent]) -> bool:
        if Intent.BOOK in intents:
            return True
        if self.ctx.state.ask is Ask.OFFER_BOOKING and Intent.AFFIRM in intents and Intent.GOODBYE not in intents:
            return True
        if questions or Intent.GOODBYE in intents:
            return False
        return match_service(text, self.ctx.services) is not None or not self.ctx.when(text).empty

    def _completes_when(self, partial_text: str) -> bool:
        state = self.ctx.state
        if state.ask is Ask.PICK_SLOT and re.search(r"\b(?:first|second|earlier|later|last)\b", fold(partial_text)):
            return True
        draft = state.draft
        when = self.ctx.when(partial_text, context_day=draft.day, bare_time=draft.day is not None)
        has_day = when.day is not None or draft.day is not None
        has_time = when.time is not None or (draft.time is not None and when.day is not None)
        return has_day and has_time

    def _trails_off(self, text: str) -> bool:
        """A turn that stopped mid-sentence ("I was hoping to, um, maybe...") is no misunderstanding:
        the caller is asked on gently, at most twice running, then it counts like any other."""
        tokens = fold(text).split()
        unfinished = text.rstrip().endswith(("...", ",", "-")) or (bool(tokens) and tokens[-1] in _TRAILS_OFF)
        state = self.ctx.state
        if not unfinished or state.trailing_off >= 2:
            return False
        state.trailing_off += 1
        return True

    # ---- endings ---------------------------------------------------------------------------------

    def _misunderstood(self, phrase: str) -> AgentReply:
        state = self.ctx.state
        state.misunderstandings += 1
        if state.misunderstandings >= self.ctx.agent.turn_taking.max_misunderstandings:
            return self._transfer("handoff_after_trouble")
        text = self.ctx.say(phrase, question=state.question) if phrase == "not_understood" else self.ctx.say(phrase)
        return AgentReply(text=text, reprompt=True)

    def _transfer(self, phrase: str) -> AgentReply:
        return self.ctx.transfer(phrase)

    def _goodbye(self) -> AgentReply:
        # A call the agent closed without a task still counts as handled ("answered"); never overrides one.
        self.ctx.state.settle("answered")
        self.ctx.state.ask = Ask.ENDED
        return AgentReply(text=self.ctx.say("goodbye", business=self.ctx.agent.profile.name), end_call=True)


def _heard_enough(heard: str, said: str) -> bool:
    """The caller heard the reply up to (nearly) its last words, so its closing question counts as asked."""
    said_words = said.split()
    return len(heard.split()) >= len(said_words) - 2
