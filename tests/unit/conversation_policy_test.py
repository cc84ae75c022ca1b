"""The receptionist beyond the examples: phrasings, corrections, closed days, hand-offs, moves, fillers."""
from __future__ import annotations

import asyncio
from datetime import date, datetime

from conversation_support import Call, local

from spotfunnel.conversation.agent import load_agent
from spotfunnel.conversation.policy import AgentReply, UserTurn
from spotfunnel.conversation.state import Ask

NOW = "2026-12-08T10:00:00-08:00"  # Tuesday
FRI, SAT = date(2026, 12, 11), date(2026, 12, 12)


async def test_everything_in_one_sentence() -> None:
    call = Call(NOW, "+14155550166")
    assert "full name" in await call.text("yeah book me a beard trim saturday at noon")
    assert "calling from" in await call.text("My name is Nina Patel.")
    assert await call.text("Yes, that's fine.") == (
        "Just to confirm: a beard trim on Saturday, December 12 at 12 PM for Nina Patel. Is that right?"
    )
    await call.text("Yes")
    assert call.policy.outcome == "booked"
    assert [(b.service_id, b.start) for b in await call.active()] == [("beard-trim", local(SAT, 12))]


async def test_tomorrow_at_three_fills_service_day_and_time() -> None:
    call = Call(NOW)
    assert "full name" in await call.text("Hi, I'd like to book a haircut for tomorrow at 3 pm.")
    assert call.policy.ctx.state.draft.start(call.agent.profile.tz) == local(date(2026, 12, 9), 15)


async def test_asks_service_then_day_then_time() -> None:
    call = Call(NOW)
    assert "Which service" in await call.text("I'd like to make an appointment")
    assert "day and time" in await call.text("a hair cut")
    assert "What time on Friday, December 11" in await call.text("Friday")
    assert "full name" in await call.text("four thirty")
    assert call.policy.ctx.state.draft.start(call.agent.profile.tz) == local(FRI, 16, 30)


async def test_correction_at_read_back() -> None:
    call = Call(NOW)
    for turn in ("I'd like a haircut on Friday at 2", "Maria Lopez", "yes"):
        await call.text(turn)
    assert call.policy.ask is Ask.READ_BACK
    again = await call.text("No, make it 4:30.")
    assert again == "Just to confirm: a haircut on Friday, December 11 at 4:30 PM for Maria Lopez. Is that right?"
    await call.text("Yes, that's right.")
    assert [b.start for b in await call.active()] == [local(FRI, 16, 30)]


async def test_correction_at_read_back_with_whisper_compact_time() -> None:
    call = Call(NOW)
    for turn in ("I'd like a haircut on Friday at 3pm.", "Thomas Anderson.", "Yes, that number is good."):
        await call.text(turn)
    again = await call.text("No, make it 430.")
    assert again == "Just to confirm: a haircut on Friday, December 11 at 4:30 PM for Thomas Anderson. Is that right?"
    await call.text("Yes.")
    assert [b.start for b in await call.active()] == [local(FRI, 16, 30)]


async def test_bare_no_time_at_read_back_still_asks_what_to_change() -> None:
    call = Call(NOW)
    for turn in ("I'd like a haircut on Friday at 3pm.", "Thomas Anderson.", "Yes."):
        await call.text(turn)
    assert "What should I change" in await call.text("No, that's not right.")


async def test_pick_an_offered_time_said_as_a_compact_number() -> None:
    call = Call(NOW)
    reply = await call.text("I'd like to book hair color on Thursday at 5 p.m.")
    assert "past our closing time" in reply and "4:30 PM" in reply
    assert "full name" in await call.text("430 is fine.")
    assert call.policy.ctx.state.draft.start(call.agent.profile.tz) == local(date(2026, 12, 10), 16, 30)


async def test_need_someone_to_trim_my_beard_books() -> None:
    call = Call(NOW)
    assert "What day and time" in await call.text("Hi, I need someone to trim my beard.")
    assert call.policy.outcome is None and call.policy.ctx.state.draft.service_id == "beard-trim"


async def test_plain_no_at_read_back_asks_what_to_change() -> None:
    call = Call(NOW)
    for turn in ("I'd like a haircut on Friday at 2", "Maria Lopez", "yes"):
        await call.text(turn)
    assert "What should I change" in await call.text("No.")
    assert "full name" in await call.text("the name")
    assert "Maria Lopes" in await call.text("Maria Lopes")


async def test_closed_day_offers_open_times() -> None:
    call = Call(NOW)
    reply = await call.text("Can I get a haircut on Monday at 10?")
    assert reply == (
        "Sorry, we're closed on Mondays. The nearest free times are Tuesday, December 15 at 9 AM and "
        "Tuesday, December 15 at 9:15 AM. Would one of those work?"
    )
    assert "full name" in await call.text("the first one")
    assert call.policy.ctx.state.draft.start(call.agent.profile.tz) == local(date(2026, 12, 15), 9)


async def test_pick_an_offered_time_by_its_time_or_order() -> None:
    call = Call(NOW)
    await call.seed("Paul Adams", "+14155550199", "color", local(FRI, 13))
    await call.text("a blowout on Friday at two")
    assert "full name" in await call.text("2:30 works")
    assert call.policy.ctx.state.draft.start(call.agent.profile.tz) == local(FRI, 14, 30)
    other = Call(NOW)
    await other.seed("Paul Adams", "+14155550199", "color", local(FRI, 13))
    # The ledger offers the two free starts nearest to 2 PM (the color runs 1 to 2:30), not one each side.
    offer = await other.text("a blowout on Friday at two")
    assert "The nearest free times are 2:30 PM and 2:45 PM." in offer
    await other.text("the later one")
    assert other.policy.ctx.state.draft.start(other.agent.profile.tz) == local(FRI, 14, 45)


async def test_three_misunderstandings_transfer() -> None:
    call = Call(NOW)
    first = await call.say("")
    assert first[0].reprompt and "How can I help" in first[0].text
    second = await call.say("uh")
    assert second[0].reprompt
    third = await call.say("blorp flibber")
    assert third[0].transfer_to == "+14155550199" and third[0].end_call
    assert call.policy.outcome == "transferred"


async def test_understood_turn_resets_misunderstandings() -> None:
    call = Call(NOW)
    await call.say("uh")
    await call.say("mm")
    assert "Which service" in await call.text("I want to book")
    reply = await call.say("flibber")
    assert reply[0].reprompt and not reply[0].end_call


async def test_asking_for_a_person_transfers() -> None:
    call = Call(NOW)
    await call.text("I'd like a haircut")
    reply = (await call.say("Can I talk to a person?"))[0]
    assert reply.transfer_to == "+14155550199" and reply.end_call
    assert call.policy.outcome == "transferred"


async def test_reschedule_end_to_end() -> None:
    call = Call(NOW, "+14155550144")
    await call.seed("Grace Kim", "+14155550144", "haircut", local(SAT, 10))
    found = await call.text("I'd like to move my appointment")
    assert found == "I found your haircut on Saturday, December 12 at 10 AM. Is that the one you'd like to move?"
    assert await call.text("Yes.") == "What day and time would you like instead?"
    readback = await call.text("Friday at 4")
    assert readback == (
        "Just to confirm: I'll move your haircut from Saturday, December 12 at 10 AM to Friday, December 11 at 4 PM. "
        "Is that right?"
    )
    done = await call.text("yes")
    assert "now on Friday, December 11 at 4 PM" in done
    assert call.policy.outcome == "rescheduled"
    assert [b.start for b in await call.active()] == [local(FRI, 16)]
    assert await call.sms_to() == ["+14155550144"]


async def test_reschedule_under_another_number_needs_name_and_day_first() -> None:
    call = Call(NOW, "+14155550111")
    await call.seed("Grace Kim", "+14155550144", "haircut", local(SAT, 10))
    ask = await call.text("Can I reschedule my haircut on Saturday to Friday at 11?")
    assert "couldn't find" in ask and "booked under" in ask
    proof = await call.text("four one five five five five zero one four four")
    assert "full name on the appointment" in proof and "Saturday" not in proof  # nothing read out yet
    found = await call.text("Grace Kim")  # the day, Saturday, was in the request
    assert found.startswith("I found your haircut on Saturday, December 12 at 10 AM.")
    readback = await call.text("yes, that one")
    assert "to Friday, December 11 at 11 AM" in readback
    await call.text("yes")
    assert call.policy.outcome == "rescheduled"
    assert [(b.phone, b.start) for b in await call.active()] == [("+14155550144", local(FRI, 11))]


async def test_questions_are_answered_from_the_profile() -> None:
    call = Call(NOW)
    assert "1200 Maple Street, San Francisco" in await call.text("Where are you located?")
    prices = await call.text("How much is a beard trim?")
    assert "20 dollars" in prices and "20 minutes" in prices
    services = await call.text("what services do you offer")
    assert all(name in services for name in ("haircut", "hair color", "beard trim", "blowout"))
    assert call.policy.ask is Ask.OFFER_BOOKING and call.policy.outcome == "answered"
    assert "Which service" in await call.text("yes please")


async def test_slow_ledger_gets_a_filler_first() -> None:
    call = Call(NOW, gated=True)  # the slot check does not answer until the gate opens
    replies = call.policy.respond(UserTurn(text="a haircut on Friday at 2"))
    filler = await anext(replies)
    assert filler.filler and filler.text == "One moment while I check that."
    call.ledger.gate.set()
    rest = [r async for r in replies]
    assert len(rest) == 1 and not rest[0].filler and "full name" in rest[0].text


async def test_a_tool_past_its_deadline_hands_the_caller_to_a_person() -> None:
    agent = load_agent("maple-street-salon")
    timing = agent.turn_taking.model_copy(update={"tool_filler_ms": 0, "tool_deadline_ms": 100})
    call = Call(NOW, agent=agent.model_copy(update={"turn_taking": timing}), gated=True)  # the check never answers
    async with asyncio.timeout(30):  # a bound for the test itself: before the deadline existed this hung
        filler, handed = await call.say("a haircut on Friday at 2")
    assert filler.filler
    assert handed.transfer_to == "+14155550199" and handed.end_call and "someone from our team" in handed.text
    assert call.policy.outcome == "transferred" and await call.active() == []


async def test_fast_ledger_needs_no_filler() -> None:
    call = Call(NOW)
    replies = await call.say("a haircut on Friday at 2")
    assert len(replies) == 1 and not replies[0].filler and "full name" in replies[0].text


async def test_history_keeps_only_heard_words() -> None:
    call = Call(NOW)
    policy = call.policy
    greeting = policy.greeting()
    policy.record_heard(greeting, greeting.text, interrupted=False)
    reply = (await call.say("I'd like a haircut"))[0]
    policy.record_heard(reply, "What day and time", interrupted=True)
    policy.record_heard(AgentReply(text="never played"), "", interrupted=True)
    assert [(h.role, h.text, h.interrupted) for h in policy.history] == [
        ("agent", greeting.text, False),
        ("caller", "I'd like a haircut", False),
        ("agent", "What day and time", True),
    ]


async def test_completes_answer_follows_the_open_question() -> None:
    call = Call(NOW)
    policy = call.policy
    await call.text("I'd like to book")
    assert policy.completes_answer("a haircut") and not policy.completes_answer("a um")
    await call.text("a haircut")
    assert policy.completes_answer("Thursday at eleven")
    assert not policy.completes_answer("Thursday at") and not policy.completes_answer("Thursday")
    await call.text("Thursday")
    assert policy.completes_answer("at eleven") and not policy.completes_answer("at eleven and")
    await call.text("at eleven")
    assert policy.completes_answer("Maria Lopez") and policy.completes_answer("my name is Maria")
    assert not policy.completes_answer("Maria") and not policy.completes_answer("Maria and")
    await call.text("Maria Lopez")
    assert policy.completes_answer("yes") and policy.completes_answer("No.")
    await call.text("no")
    assert policy.completes_answer("four one five five five five zero one three three")
    assert not policy.completes_answer("four one five five five")


async def test_goodbye_ends_call_and_silence_reprompts() -> None:
    call = Call(NOW)
    assert call.policy.no_input_reply().reprompt
    reply = (await call.say("No thanks, bye"))[-1]
    assert reply.end_call and call.policy.outcome == "answered"
    assert await call.say("hello?") == []


async def test_dst_booking_lands_on_the_right_instant() -> None:
    call = Call("2026-03-07T10:00:00-08:00")
    await call.text("a haircut tomorrow at 3 pm")
    reply = await call.text("Is Tuesday at 3 pm open?")
    assert "full name" in reply
    start = call.policy.ctx.state.draft.start(call.agent.profile.tz)
    assert start == datetime.fromisoformat("2026-03-10T15:00:00-07:00")
