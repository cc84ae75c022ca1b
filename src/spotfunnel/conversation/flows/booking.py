"""Taking a slot: service, day and time, name, phone, read-back, then booking (or moving) it."""
from __future__ import annotations

import logging
import re
from datetime import datetime, timedelta
from typing import AsyncIterator

from spotfunnel.conversation.context import CallContext, NotUnderstood
from spotfunnel.conversation.extract.dates import settle_meridiem
from spotfunnel.conversation.extract.intents import QUESTIONS, Intent, yes_or_no
from spotfunnel.conversation.extract.names import extract_name, looks_like_person
from spotfunnel.conversation.extract.phones import last_digits, parse_phone, spoken_digits
from spotfunnel.conversation.extract.services import match_service
from spotfunnel.conversation.extract.text import fold
from spotfunnel.conversation.policy import AgentReply
from spotfunnel.conversation.speech import speak_time, weekday_name
from spotfunnel.conversation.state import Ask, Draft
from spotfunnel.conversation.understand import names_a_service, understand
from spotfunnel.conversation.update import DialogueUpdate
from spotfunnel.store.ledger import BookingRecord, SlotCheck, SlotUnavailable

log = logging.getLogger(__name__)

_FIRST = re.compile(r"\b(?:first|earlier|earliest|former|sooner|1st)\b")
_SECOND = re.compile(r"\b(?:second|later|latest|last|latter|other|2nd)\b")
_EITHER = re.compile(r"\b(?:either|any|whichever|doesn't matter|don't mind)\b")


class BookingFlow:
    """Fills the booking objectives in order, skipping what the caller already said."""

    def __init__(self, ctx: CallContext) -> None:
        self.ctx = ctx
        self.heard: DialogueUpdate | None = None  # the last turn's understanding, for acknowledging it
        self.changed: set[str] = set()

    @property
    def draft(self) -> Draft:
        return self.ctx.state.draft

    async def start(self, text: str, *before: str) -> AsyncIterator[AgentReply]:
        """Begin a new booking from the caller's request (which may already hold service, day, time)."""
        self.ctx.state.new_task("book")
        self.absorb(text)
        async for reply in self.advance(*before):
            yield reply

    async def handle(self, text: str, intents: set[Intent]) -> AsyncIterator[AgentReply]:
        """The caller's turn while a booking question is open: the answer to it, or, when it answers
        something else (a name when a time was asked), what it said is kept and only what is still
        missing is asked, never "I didn't catch that" for a clear answer."""
        answered, self.changed = False, set()
        try:
            async for reply in self._answer(text, intents):
                answered = True
                yield reply
        except NotUnderstood:
            # A question ("are you open Friday?") is answered by the policy and changes nothing here.
            asked = bool(intents & QUESTIONS)
            if answered or asked or not self.absorb(text, bare_time=self.ctx.state.ask is Ask.PICK_SLOT, any_name=True):
                raise
            async for reply in self.advance(*self._acknowledgment()):
                yield reply

    async def _answer(self, text: str, intents: set[Intent]) -> AsyncIterator[AgentReply]:
        """The caller's answer to the open booking question."""
        ask = self.ctx.state.ask
        if ask is Ask.PICK_SLOT:
            clarify = self.pick_slot(text, intents)
            if clarify is not None:
                yield clarify
                return
        elif ask in (Ask.NAME, Ask.LAST_NAME):
            self.take_name(text)
        elif ask in (Ask.CALLER_ID, Ask.PHONE):
            reply = self.take_phone(text)
            if reply is not None:
                yield reply
                return
        elif ask is Ask.READ_BACK:
            # "No, make it 4:30" (Whisper: "no make it 430") corrects the slot without another question.
            if not self.absorb(text, bare_time=yes_or_no(text) is not True):
                answer = yes_or_no(text)
                if answer is True:
                    async for reply in self.commit():
                        yield reply
                    return
                if answer is False:
                    yield self.ctx.ask(Ask.CORRECTION, self.ctx.say("ask_correction"))
                    return
                raise NotUnderstood()
        elif ask is Ask.CORRECTION:
            self.correct(text)
        elif not self.absorb(text, bare_time=ask is Ask.WHEN):
            raise NotUnderstood()
        async for reply in self.advance(*self._acknowledgment()):
            yield reply

    # ---- understanding answers ------------------------------------------------------------------

    def absorb(self, text: str, bare_time: bool = False, any_name: bool = False) -> bool:
        """Take every service, day, time and introduced name in `text` (any name-like answer when
        `any_name`); True when something changed. A move keeps its service and the booking's name."""
        draft = self.draft
        bare = bare_time or draft.day is not None and draft.time is None
        update = understand(self.ctx, text, bare_time=bare)
        if self.ctx.state.task != "book":
            update = update.model_copy(update={"service_id": None, "name": None})
        self.heard = update
        self.changed = draft.merge(update, self.ctx.opening, any_name=any_name)
        return bool(self.changed)

    def _acknowledgment(self) -> tuple[str, ...]:
        """"Thanks, Sam." for a name given out of turn; a spelled name is spelled back."""
        if "name" not in self.changed or self.heard is None or self.heard.name is None:
            return ()
        first = self.heard.name.split()[0]
        if self.heard.spelling:
            return (self.ctx.say("ack_spelled_name", name=self.heard.name, spelling=self.heard.spelling),)
        return (self.ctx.say("ack_name", first_name=first),)

    def pick_slot(self, text: str, intents: set[Intent]) -> AgentReply | None:
        """The caller's choice among the offered free starts, or a new proposal; a reply if ambiguous."""
        draft, spoken = self.draft, fold(text)
        offered = draft.alternatives
        index = 0 if _FIRST.search(spoken) else 1 if _SECOND.search(spoken) else None
        if index is not None and offered:
            draft.take_slot(offered[min(index, len(offered) - 1)], self.ctx.agent.profile.tz)
            return None
        when = self.ctx.when(text, context_day=draft.day, bare_time=True)
        if when.time is not None:
            for start in offered:
                local = start.astimezone(self.ctx.agent.profile.tz)
                wanted = when.time if when.meridiem_given else settle_meridiem(when.time, local.date(), self.ctx.opening)
                if wanted == local.time().replace(tzinfo=None) and when.day in (None, local.date()):
                    draft.take_slot(start, self.ctx.agent.profile.tz)
                    return None
        if self.absorb(text, bare_time=True):
            return None
        if Intent.AFFIRM in intents and offered and (len(offered) == 1 or _EITHER.search(spoken)):
            draft.take_slot(offered[0], self.ctx.agent.profile.tz)
            return None
        if Intent.AFFIRM in intents and len(offered) > 1:
            first, second = (self.ctx.speaker.slot(alt, same_day_as=draft.day) for alt in offered[:2])
            return self.ctx.ask(Ask.PICK_SLOT, self.ctx.say("ask_which_alternative", first=first, second=second))
        if Intent.DENY in intents:
            draft.time, draft.alternatives = None, []
            return None
        raise NotUnderstood()

    def take_name(self, text: str) -> None:
        draft = self.draft
        update = understand(self.ctx, text, name_expected=True)
        if update.spelling and update.name:
            # A spelled name wins over the recognizer's spelling and is spelled back.
            words = update.name.split()
            if self.ctx.state.ask is Ask.LAST_NAME and draft.first_name and len(words) == 1:
                words = [draft.first_name, *words]
            if len(words) >= 2:
                draft.name, draft.first_name = " ".join(words), None
            else:
                draft.first_name = words[0]
            draft.phone = update.phone or draft.phone
            self.heard, self.changed = update.model_copy(update={"name": " ".join(words)}), {"name"}
            return
        if update.phone is not None:  # "Sam Lee, and my number is ..."
            draft.phone = update.phone
        name = extract_name(text)
        plausible = name is not None and (name.explicit or looks_like_person(name, text))
        if name is not None and (not plausible or names_a_service(self.ctx, name.text)):
            name = None
        if name is None:
            if self.absorb(text):
                return
            raise NotUnderstood()
        if self.ctx.state.ask is Ask.LAST_NAME and draft.first_name:
            words = name.words if name.words[0] == draft.first_name else [draft.first_name, *name.words]
            draft.name = " ".join(words)
        elif name.is_full or name.explicit:
            draft.name = name.text
        else:
            draft.first_name = name.text

    def take_phone(self, text: str) -> AgentReply | None:
        """The confirmation number: the caller ID on yes, a number given, or a question for one."""
        draft = self.draft
        phone = parse_phone(text)
        if phone is not None:
            draft.phone = phone
            return None
        answer = yes_or_no(text) if self.ctx.state.ask is Ask.CALLER_ID else None
        if answer is True and self.ctx.caller_phone:
            draft.phone = self.ctx.caller_phone
            return None
        if answer is False:
            return self.ctx.ask(Ask.PHONE, self.ctx.say("ask_phone"))
        if self.ctx.state.ask is Ask.PHONE or len(spoken_digits(text)) >= 3:
            raise NotUnderstood("phone_not_understood")
        raise NotUnderstood()

    def correct(self, text: str) -> None:
        """What to change after a "no" at the read-back."""
        draft, spoken = self.draft, fold(text)
        if self.absorb(text, bare_time=True):
            return
        if "name" in spoken:
            name = extract_name(re.split(r"\bname\b", text, maxsplit=1)[-1])
            draft.name, draft.first_name = (name.text if name and name.is_full else None), None
        elif re.search(r"\b(?:time|day|date|when)\b", spoken):
            draft.day, draft.time, draft.slot_ok = None, None, False
        elif "service" in spoken:
            draft.service_id, draft.slot_ok = None, False
        elif re.search(r"\b(?:number|phone)\b", spoken):
            draft.phone = None
        elif yes_or_no(text) is not True:
            name = extract_name(text)
            if name is None or not name.is_full:
                raise NotUnderstood()
            draft.name = name.text

    # ---- asking the next question ---------------------------------------------------------------

    async def advance(self, *before: str) -> AsyncIterator[AgentReply]:
        """Ask for the first missing objective, checking the slot as soon as it is known."""
        ctx, draft = self.ctx, self.draft
        rescheduling = ctx.state.task == "reschedule"
        if draft.service_id is None:
            names = ctx.speaker.join([s.name for s in ctx.services])
            yield ctx.ask(Ask.SERVICE, ctx.say("ask_service", services=names), *before)
            return
        if draft.day is None or draft.time is None:
            yield ctx.ask(Ask.WHEN, self._when_question(rescheduling), *before)
            return
        if not draft.slot_ok and draft.alternatives and ctx.state.ask is Ask.PICK_SLOT:
            # The offer still stands (the turn gave a name, say): ask for a choice again.
            yield ctx.ask(Ask.PICK_SLOT, ctx.state.question, *before)
            return
        if not draft.slot_ok:
            start = draft.start(ctx.agent.profile.tz)
            assert start is not None
            declined: AgentReply | None = None
            async for reply in self._check(start):
                if reply.filler:
                    yield reply
                else:
                    declined = reply
            if declined is not None:
                yield AgentReply(text=" ".join([*before, declined.text]))
                return
        yield self._next_detail(rescheduling, *before)

    def _when_question(self, rescheduling: bool) -> str:
        ctx, draft = self.ctx, self.draft
        if draft.day is None and draft.time is None:
            if rescheduling:
                return ctx.say("ask_new_day_time")
            return ctx.say("ask_day_time", service=ctx.service_name(draft.service_id or ""))
        if draft.day is None:
            return ctx.say("ask_day")
        return ctx.say("ask_time", day=ctx.speaker.date(draft.day))

    def _next_detail(self, rescheduling: bool, *before: str) -> AgentReply:
        ctx, draft = self.ctx, self.draft
        start = draft.start(ctx.agent.profile.tz)
        assert start is not None and draft.service_id is not None
        service = ctx.service_name(draft.service_id)
        if rescheduling and ctx.state.target is not None:
            old = ctx.speaker.when(ctx.state.target.start)
            text = ctx.say("read_back_move", service=service, old_when=old, when=ctx.speaker.when(start))
            return ctx.ask(Ask.READ_BACK, text, *before)
        if draft.name is None and draft.first_name:
            return ctx.ask(Ask.LAST_NAME, ctx.say("ask_last_name", first_name=draft.first_name), *before)
        if draft.name is None:
            return ctx.ask(Ask.NAME, ctx.say("ask_name"), *before)
        if draft.phone is None:
            if ctx.caller_phone:
                return ctx.ask(Ask.CALLER_ID, ctx.say("offer_caller_id"), *before)
            return ctx.ask(Ask.PHONE, ctx.say("ask_phone"), *before)
        text = ctx.say("read_back", service=service, when=ctx.speaker.when(start), name=draft.name)
        return ctx.ask(Ask.READ_BACK, text, *before)

    async def _check(self, start: datetime) -> AsyncIterator[AgentReply]:
        """Check the slot with the ledger; yields a filler if slow, and the decline if it is not free."""
        ctx, draft = self.ctx, self.draft
        assert draft.service_id is not None
        call = ctx.tool(ctx.ledger.check(draft.service_id, start), "filler_check")
        async for filler in call.fillers():
            yield filler
        check = call.result()
        if check.ok or self._only_own_booking_in_the_way(check, start):
            draft.slot_ok, draft.alternatives = True, []
            return
        yield self.decline(check, start)

    def _only_own_booking_in_the_way(self, check: SlotCheck, start: datetime) -> bool:
        target = self.ctx.state.target
        if check.reason != "taken" or target is None or self.ctx.state.task != "reschedule":
            return False
        minutes = self.ctx.agent.profile.service(target.service_id).minutes
        return start < target.end and target.start < start + timedelta(minutes=minutes)

    def decline(self, check: SlotCheck, start: datetime) -> AgentReply:
        """Why the slot is not free and the nearest free starts, as one question."""
        ctx, draft = self.ctx, self.draft
        draft.slot_ok, draft.alternatives = False, list(check.alternatives[:2])
        local = start.astimezone(ctx.agent.profile.tz)
        reason = self._reason(check, local)
        spoken = [ctx.speaker.slot(alt, same_day_as=local.date()) for alt in draft.alternatives]
        if len(spoken) >= 2:
            question = ctx.say("offer_alternatives", first=spoken[0], second=spoken[1])
        elif spoken:
            question = ctx.say("offer_alternative", first=spoken[0])
        else:
            question = ctx.say("ask_other_time")
        return ctx.ask(Ask.PICK_SLOT if spoken else Ask.WHEN, question, reason)

    def _reason(self, check: SlotCheck, local: datetime) -> str:
        ctx = self.ctx
        hours = ctx.opening(local.date())
        weekday = weekday_name(local.date())
        if check.reason == "closed" or (hours is None and check.reason != "past"):
            if hours is None:
                return ctx.say("slot_closed_day", weekday=weekday)
            return ctx.say(
                "slot_closed_time", time=speak_time(local.time()), weekday=weekday,
                open=speak_time(hours.open), close=speak_time(hours.close),
            )
        if check.reason == "past":
            return ctx.say("slot_past", when=ctx.speaker.when(local))
        if check.reason == "ends-after-closing" and hours is not None:
            service = ctx.service_name(self.draft.service_id or "")
            return ctx.say("slot_after_closing", service=service, time=speak_time(local.time()), close=speak_time(hours.close))
        if check.reason == "off-grid":
            return ctx.say("slot_off_grid")
        return ctx.say("slot_taken", when=ctx.speaker.when(local))

    # ---- writing it ------------------------------------------------------------------------------

    async def commit(self) -> AsyncIterator[AgentReply]:
        """Book (or move) the read-back slot; confirm, or decline with alternatives if it was taken."""
        ctx, draft = self.ctx, self.draft
        start = draft.start(ctx.agent.profile.tz)
        assert start is not None and draft.service_id is not None
        call = ctx.tool(self._write(start), "filler_book" if ctx.state.task == "book" else "filler_update")
        async for filler in call.fillers():
            yield filler
        try:
            record = call.result()
        except SlotUnavailable as exc:
            yield self.decline(exc.check, start)
            return
        ctx.state.booking = record
        service, when = ctx.service_name(record.service_id), ctx.speaker.when(record.start)
        if ctx.state.task == "reschedule":
            ctx.state.settle("rescheduled")
            done = ctx.say("rescheduled", service=service, when=when)
        else:
            ctx.state.settle("booked")
            done = ctx.say("booked", service=service, when=when, name=record.name, phone_last4=last_digits(record.phone))
        yield ctx.ask(Ask.ANYTHING_ELSE, ctx.say("anything_else"), done)

    async def _write(self, start: datetime) -> BookingRecord:
        ctx, draft = self.ctx, self.draft
        if ctx.state.task == "reschedule" and ctx.state.target is not None:
            return await ctx.ledger.reschedule(
                ctx.state.target.id, start, by=ctx.requester(), call_id=ctx.call_id, trace_id=ctx.trace_id
            )
        assert draft.name is not None and draft.phone is not None and draft.service_id is not None
        return await ctx.ledger.book(
            name=draft.name, phone=draft.phone, service_id=draft.service_id, start=start,
            call_id=ctx.call_id, trace_id=ctx.trace_id,
        )
