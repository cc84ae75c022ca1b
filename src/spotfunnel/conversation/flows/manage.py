"""Managing an existing booking: find it by phone, confirm which one, then cancel it or move it."""
from __future__ import annotations

import re
from typing import AsyncIterator

from spotfunnel.conversation.context import CallContext, NotUnderstood
from spotfunnel.conversation.extract.dates import When
from spotfunnel.conversation.extract.intents import yes_or_no
from spotfunnel.conversation.extract.phones import parse_phone
from spotfunnel.conversation.extract.services import match_service
from spotfunnel.conversation.extract.text import fold
from spotfunnel.conversation.flows.booking import BookingFlow
from spotfunnel.conversation.policy import AgentReply
from spotfunnel.conversation.state import Ask, Task
from spotfunnel.store.ledger import BookingRecord

_ORDINALS = (
    (re.compile(r"\b(?:first|earlier|earliest|sooner|1st)\b"), 0),
    (re.compile(r"\b(?:second|2nd)\b"), 1),
    (re.compile(r"\b(?:third|3rd)\b"), 2),
    (re.compile(r"\b(?:last|later|latest)\b"), -1),
)


class ManageFlow:
    """Cancel and reschedule: the booking is found by caller ID or by the number it was booked under."""

    def __init__(self, ctx: CallContext, booking: BookingFlow) -> None:
        self.ctx = ctx
        self.booking = booking
        self._requested = When()

    async def start(self, task: Task, text: str, *before: str) -> AsyncIterator[AgentReply]:
        """Begin a cancel or reschedule; a day in the request picks the booking, "to <day>" the new slot."""
        state = self.ctx.state
        state.new_task(task)
        self._requested = self.ctx.when(text)
        state.hint_day = self._requested.day
        if task == "reschedule" and " to " in fold(text):
            before_to, _, after_to = fold(text).rpartition(" to ")
            earlier = self.ctx.when(before_to)
            if earlier.day is not None:
                state.hint_day = earlier.day
                self._requested = self.ctx.when(after_to)
                self._propose(self._requested)
        phone = self.ctx.caller_phone
        if phone is None:
            yield self.ctx.ask(Ask.LOOKUP_PHONE, self.ctx.say("ask_lookup_phone"), *before)
            return
        async for reply in self._lookup(phone, *before):
            yield reply

    async def handle(self, text: str) -> AsyncIterator[AgentReply]:
        """The caller's answer to the open question about their existing booking."""
        state = self.ctx.state
        if state.ask is Ask.LOOKUP_PHONE:
            phone = parse_phone(text)
            if phone is None:
                raise NotUnderstood("phone_not_understood")
            state.lookup_phone = phone
            async for reply in self._lookup(phone):
                yield reply
        elif state.ask is Ask.WHICH_BOOKING:
            chosen = self._choose(text)
            if chosen is None:
                raise NotUnderstood()
            async for reply in self._found(chosen):
                yield reply
        elif state.ask is Ask.CONFIRM_CANCEL:
            async for reply in self._confirm_cancel(text):
                yield reply
        else:
            async for reply in self._confirm_move(text):
                yield reply

    async def _lookup(self, phone: str, *before: str) -> AsyncIterator[AgentReply]:
        ctx, state = self.ctx, self.ctx.state
        call = ctx.tool(ctx.ledger.find_upcoming(phone), "filler_lookup")
        async for filler in call.fillers():
            yield filler
        records = call.result()
        if not records:
            missing = ctx.say("no_bookings_found")
            if state.lookup_phone is None:
                state.lookup_phone = phone
                yield ctx.ask(Ask.LOOKUP_PHONE, ctx.say("ask_lookup_phone"), *before, missing)
            else:
                yield ctx.ask(Ask.ANYTHING_ELSE, ctx.say("anything_else"), *before, missing)
            return
        tz = ctx.agent.profile.tz
        on_day = [r for r in records if state.hint_day and r.start.astimezone(tz).date() == state.hint_day]
        if state.hint_day and not on_day and state.task == "reschedule":
            self._propose(self._requested)
        matches = on_day or records
        if len(matches) == 1:
            async for reply in self._found(matches[0], *before):
                yield reply
            return
        state.candidates = matches
        items = [self._describe(r, "booking_item") for r in matches]
        question = ctx.say("found_bookings", count=len(matches), items=ctx.speaker.join(items))
        yield ctx.ask(Ask.WHICH_BOOKING, question, *before)

    async def _found(self, record: BookingRecord, *before: str) -> AsyncIterator[AgentReply]:
        state = self.ctx.state
        state.target, state.candidates = record, []
        if state.task == "cancel":
            yield self.ctx.ask(Ask.CONFIRM_CANCEL, self._describe(record, "found_booking_cancel"), *before)
        elif state.ask is Ask.WHICH_BOOKING:
            state.draft.service_id = record.service_id
            async for reply in self.booking.advance(*before):
                yield reply
        else:
            yield self.ctx.ask(Ask.CONFIRM_MOVE, self._describe(record, "found_booking_move"), *before)

    def _choose(self, text: str) -> BookingRecord | None:
        candidates, spoken = self.ctx.state.candidates, fold(text)
        for pattern, index in _ORDINALS:
            if pattern.search(spoken) and len(candidates) > max(index, -index - 1):
                return candidates[index]
        tz = self.ctx.agent.profile.tz
        day = self.ctx.when(text).day
        service = match_service(text, self.ctx.services)
        matching = [
            r for r in candidates
            if (day is None or r.start.astimezone(tz).date() == day) and (service is None or r.service_id == service.id)
        ]
        return matching[0] if len(matching) == 1 and (day or service) else None

    async def _confirm_cancel(self, text: str) -> AsyncIterator[AgentReply]:
        ctx, state = self.ctx, self.ctx.state
        answer = yes_or_no(text)
        if answer is None:
            raise NotUnderstood()
        if answer is False or state.target is None:
            yield ctx.ask(Ask.ANYTHING_ELSE, ctx.say("anything_else"), ctx.say("keep_booking"))
            return
        call = ctx.tool(ctx.ledger.cancel(state.target.id, call_id=ctx.call_id, trace_id=ctx.trace_id), "filler_update")
        async for filler in call.fillers():
            yield filler
        record = call.result()
        state.booking = record
        state.settle("cancelled")
        yield ctx.ask(Ask.ANYTHING_ELSE, ctx.say("anything_else"), self._describe(record, "cancelled"))

    async def _confirm_move(self, text: str) -> AsyncIterator[AgentReply]:
        ctx, state = self.ctx, self.ctx.state
        answer = yes_or_no(text)
        if answer is False:
            yield ctx.ask(Ask.ANYTHING_ELSE, ctx.say("anything_else"), ctx.say("keep_booking"))
            return
        if answer is None and not self._propose(ctx.when(text)):
            raise NotUnderstood()
        assert state.target is not None
        state.draft.service_id = state.target.service_id
        self._propose(ctx.when(text, context_day=state.draft.day))
        async for reply in self.booking.advance():
            yield reply

    def _propose(self, when: When) -> bool:
        """Take a new day and/or time for the move; True when the caller gave one."""
        draft = self.ctx.state.draft
        if when.day is not None:
            draft.day, draft.slot_ok = when.day, False
        if when.time is not None:
            draft.time, draft.meridiem_given, draft.slot_ok = when.time, when.meridiem_given, False
        return not when.empty

    def _describe(self, record: BookingRecord, phrase: str) -> str:
        service = self.ctx.service_name(record.service_id)
        return self.ctx.say(phrase, service=service, when=self.ctx.speaker.when(record.start))
