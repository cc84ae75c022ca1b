"""The four example scenarios, turn by turn, against the receptionist and the real ledger, clock frozen."""
from __future__ import annotations

from datetime import datetime

import pytest

from conversation_support import Call, load_scenario


async def _call(name: str) -> tuple[Call, dict]:  # type: ignore[type-arg]
    scenario = load_scenario(name)
    call = Call(scenario["now"], scenario["caller_id"])
    await call.ledger.seed(scenario.get("existing_bookings", []))
    return call, scenario


async def _bookings(call: Call) -> set[tuple[str, str, str, datetime]]:
    return {(b.name, b.phone, b.service_id, b.start) for b in await call.active()}


def _expected(scenario: dict) -> set[tuple[str, str, str, datetime]]:  # type: ignore[type-arg]
    return {(b["name"], b["phone"], b["service"], datetime.fromisoformat(b["start"])) for b in scenario["expect"]["bookings"]}


async def test_new_booking_basic() -> None:
    call, scenario = await _call("new-booking-basic")
    assert "Maple Street Salon" in call.said[0]
    assert "day and time" in await call.text("Hi there, I'd like to book a haircut.")
    assert "full name" in await call.text("Thursday at eleven in the morning.")
    assert await call.text("Maria Lopez.") == "Is the number you're calling from the best one to reach you?"
    assert await call.text("Yes, that number is good.") == (
        "Just to confirm: a haircut on Thursday, December 10 at 11 AM for Maria Lopez. Is that right?"
    )
    done = await call.text("Yes, that's right.")
    assert "all set" in done and done.endswith("Is there anything else I can help you with?")
    last = await call.say("No, that's all. Thanks!")
    assert last[-1].end_call and "Goodbye" in last[-1].text
    assert call.policy.outcome == scenario["expect"]["outcome"] == "booked"
    assert await _bookings(call) == _expected(scenario)
    assert await call.sms_to() == scenario["expect"]["sms_to"]
    assert call.policy.booking is not None and call.policy.booking.name == "Maria Lopez"


async def test_taken_slot_alternative() -> None:
    call, scenario = await _call("taken-slot-alternative")
    declined = await call.text("Can I come in for a blowout on Friday at two?")
    assert declined == (
        "Sorry, Friday, December 11 at 2 PM is taken. The nearest free times are 2:30 PM and 2:45 PM. "
        "Would one of those work?"
    )
    assert "full name" in await call.text("Okay, what about four o'clock?")
    assert "calling from" in await call.text("John Carter.")
    readback = await call.text("No, send it to four one five, five five five, zero one three three.")
    assert readback == "Just to confirm: a blowout on Friday, December 11 at 4 PM for John Carter. Is that right?"
    assert "0 1 3 3" in await call.text("Yes.")
    assert (await call.say("Nope, that's it."))[-1].end_call
    assert call.policy.outcome == "booked"
    assert await _bookings(call) == _expected(scenario)
    assert await call.sms_to() == ["+14155550133"]


async def test_cancel_by_caller_id() -> None:
    call, scenario = await _call("cancel-by-caller-id")
    found = await call.text("Hi, I have to cancel my appointment on Saturday.")
    assert found == "I found your haircut on Saturday, December 12 at 10 AM. Shall I cancel it?"
    done = await call.text("Yes, please cancel it.")
    assert "cancelled" in done and "text" in done and done.endswith("anything else I can help you with?")
    assert (await call.say("No, that's all."))[-1].end_call
    assert call.policy.outcome == "cancelled"
    assert await _bookings(call) == set() == _expected(scenario)
    assert await call.sms_to() == ["+14155550144"]


async def test_hours_question() -> None:
    call, scenario = await _call("hours-question")
    answer = await call.text("Are you open on Mondays?")
    assert "closed" in answer.lower() and "9 AM to 6 PM" in answer and "9 AM to 4 PM" in answer
    assert answer.endswith("Would you like to book an appointment?")
    bye = await call.say("Okay, thank you. Bye.")
    assert bye[-1].end_call
    assert call.policy.outcome == "answered"
    assert await _bookings(call) == set()
    for phrase in scenario["expect"]["agent_said"]:
        assert any(phrase.lower() in said.lower() for said in call.said)


@pytest.mark.parametrize("name", ["new-booking-basic", "taken-slot-alternative", "cancel-by-caller-id", "hours-question"])
async def test_example_scenario_turns_need_no_reprompt_and_meet_every_expectation(name: str) -> None:
    call, scenario = await _call(name)
    for turn in scenario["turns"]:
        replies = await call.say(turn["say"])
        assert replies and not any(r.reprompt for r in replies), (turn["say"], [r.text for r in replies])
    expect = scenario["expect"]
    assert call.policy.outcome == expect["outcome"]
    assert await _bookings(call) == _expected(scenario)
    assert sorted(await call.sms_to()) == sorted(expect.get("sms_to", []))
    for phrase in expect.get("agent_said", []):
        assert any(phrase.lower() in said.lower() for said in call.said), phrase
