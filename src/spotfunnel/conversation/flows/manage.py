"""Managing an existing booking: find it, confirm which one, then cancel it or move it.

Bookings under the caller's own number (the call's caller ID) are found and read out as asked.
A booking under any other number, or asked for on a call without caller ID, is found only by
proof: the name on it and its day, matched by the ledger. Until then the caller hears nothing
about that number's bookings, not even whether it has any, and a wrong proof ends the attempt
for the rest of the call with the offer of a person."""
from __future__ import annotations

import re
from typing import AsyncIterator

from spotfunnel.conversation.context import CallContext, NotUnderstood
from spotfunnel.conversation.extract.dates import When
from spotfunnel.conversation.extract.intents import yes_or_no
from spotfunnel.conversation.extract.names import extract_name
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
    """Cancel and reschedule: the caller's own bookings by caller ID, anyone else's only with proof."""

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
        if task == "cancel":
            state.booked_day_said = self._requested.day
        if task == "reschedule" and " to " in fold(text):
            before_to, _, after_to = fold(text).rpartition(" to ")
            earlier = self.ctx.when(before_to)
            if earlier.day is not None:
                state.hint_day = state.booked_day_said = earlier.day
                self._requested = self.ctx.when(after_to)
                self._propose(self._requested)
        if self.ctx.caller_phone is None:
            yield self.ctx.ask(Ask.LOOKUP_PHONE, self.ctx.say("ask_lookup_phone"), *before)
            return
        async for reply in self._lookup_own(*before):
            yield reply

    async def handle(self, text: str) -> AsyncIterator[AgentReply]:
        """The caller's answer to the open question about their existing booking."""
        ask = self.ctx.state.ask
        if ask is Ask.LOOKUP_PHONE:
            replies = self._take_lookup_phone(text)
        elif ask is Ask.PROOF_NAME:
            replies = self._take_proof_name(text)
        elif ask is Ask.PROOF_DAY:
            replies = self._take_proof_day(text)
        elif ask is Ask.OFFER_HANDOFF:
            replies = self._answer_handoff(text)
        elif ask is Ask.WHICH_BOOKING:
            chosen = self._choose(text)
            if chosen is None:
                raise NotUnderstood()
            replies = self._found(chosen)
        elif ask is Ask.CONFIRM_CANCEL:
            replies = self._confirm_cancel(text)
        else:
            replies = self._confirm_move(text)
        async for reply in replies:
            yield reply

    # ---- finding the booking -------------------------------------------------------------------

    async def _take_lookup_phone(self, text: str) -> AsyncIterator[AgentReply]:
        phone = parse_phone(text)
        if phone is None:
            raise NotUnderstood("phone_not_understood")
        state = self.ctx.state
        if phone == self.ctx.caller_phone:
            async for reply in self._lookup_own():
                yield reply
            return
        state.lookup_phone = phone
        if state.proof_failed:
            yield self._refuse("proof_refused_again")
            return
        yield self.ctx.ask(Ask.PROOF_NAME, self.ctx.say("ask_proof_name"))

    async def _lookup_own(self, *before: str) -> AsyncIterator[AgentReply]:
        """The bookings under the caller's own number; none found asks once for another number."""
        ctx, state = self.ctx, self.ctx.state
        call = ctx.tool(ctx.ledger.find_own(ctx.requester()), "filler_lookup")
        async for filler in call.fillers():
            yield filler
        records = call.result()
        if records:
            async for reply in self._offer(records, *before):
                yield reply
            return
        missing = ctx.say("no_bookings_found")
        if state.lookup_phone is None:
            state.lookup_phone = ctx.caller_phone
            yield ctx.ask(Ask.LOOKUP_PHONE, ctx.say("ask_lookup_phone"), *before, missing)
        else:
            yield ctx.ask(Ask.ANYTHING_ELSE, ctx.say("anything_else"), *before, missing)

    async def _take_proof_name(self, text: str) -> AsyncIterator[AgentReply]:
        name = extract_name(text)
        if name is None:
            raise NotUnderstood()
        if not name.is_full:
            raise NotUnderstood("proof_full_name")
        state = self.ctx.state
        state.proof_name = name.text
        if state.booked_day_said is None:
            yield self.ctx.ask(Ask.PROOF_DAY, self.ctx.say("ask_proof_day"))
            return
        state.proof_day = state.booked_day_said
        async for reply in self._verify():
            yield reply

    async def _take_proof_day(self, text: str) -> AsyncIterator[AgentReply]:
        day = self.ctx.when(text).day
        if day is None:
            raise NotUnderstood()
        self.ctx.state.proof_day = day
        async for reply in self._verify():
            yield reply

    async def _verify(self) -> AsyncIterator[AgentReply]:
        """The ledger matches the proof; a miss sounds the same whether or not the number has bookings."""
        ctx, state = self.ctx, self.ctx.state
        assert state.lookup_phone is not None and state.proof_name is not None and state.proof_day is not None
        found = ctx.ledger.find_proven(state.lookup_phone, name=state.proof_name, day=state.proof_day)
        call = ctx.tool(found, "filler_lookup")
        async for filler in call.fillers():
            yield filler
        records = call.result()
        if not records:
            state.proof_failed = True
            state.proof_name = state.proof_day = None
            yield self._refuse("proof_refused")
            return
        async for reply in self._offer(records):
            yield reply

    def _refuse(self, phrase: str) -> AgentReply:
        return self.ctx.ask(Ask.OFFER_HANDOFF, self.ctx.say(phrase))

    async def _answer_handoff(self, text: str) -> AsyncIterator[AgentReply]:
        answer = yes_or_no(text)
        if answer is None:
            raise NotUnderstood()
        if answer:
            yield self.ctx.transfer("handoff")
            return
        yield self.ctx.ask(Ask.ANYTHING_ELSE, self.ctx.say("anything_else"), self.ctx.say("keep_booking"))

    async def _offer(self, records: list[BookingRecord], *before: str) -> AsyncIterator[AgentReply]:
        """Bookings the caller may hear about: the one meant, or a question which."""
        ctx, state = self.ctx, self.ctx.state
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
        cancel = ctx.ledger.cancel(state.target.id, by=ctx.requester(), call_id=ctx.call_id, trace_id=ctx.trace_id)
        call = ctx.tool(cancel, "filler_update")
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
