"""Who may change a booking: a caller on another number (or with none) needs the name and day first."""
from __future__ import annotations

from datetime import date

import pytest

from conversation_support import Call, local

from spotfunnel.conversation.state import Ask

NOW = "2026-12-08T10:00:00-08:00"  # Tuesday
SAT = date(2026, 12, 12)
OWNER, STRANGER = "+14155550144", "+14155550177"
OWNER_SPOKEN = "four one five, five five five, zero one four four"
SECRETS = ("Grace", "Kim", "Saturday", "December 12", "10 AM", "haircut")  # what only proof may unlock


async def _graces_call(caller_id: str = STRANGER) -> Call:
    call = Call(NOW, caller_id)
    await call.seed("Grace Kim", OWNER, "haircut", local(SAT, 10))
    return call


async def _to_the_proof(call: Call, request: str = "I need to cancel my appointment.") -> None:
    asked = await call.text(request)
    assert "booked under" in asked
    proof = await call.text(OWNER_SPOKEN)
    assert "full name on the appointment" in proof and call.policy.ask is Ask.PROOF_NAME


def _leaks(call: Call) -> list[str]:
    spoken = " ".join(call.said[1:])
    return [secret for secret in SECRETS if secret.lower() in spoken.lower()]


@pytest.mark.parametrize(("name", "day"), [("John Smith", "Saturday"), ("Grace Kim", "Friday"), ("Grace Lee", "Saturday")])
async def test_wrong_proof_changes_nothing_and_reveals_nothing(name: str, day: str) -> None:
    call = await _graces_call()
    await _to_the_proof(call)
    assert "what day" in (await call.text(name)).lower()
    refused = await call.text(day)
    assert "can't change that appointment on this call" in refused and "connect you" in refused
    assert call.policy.ask is Ask.OFFER_HANDOFF
    assert "leave it as it is" in await call.text("No, thanks.")
    assert _leaks(call) == [], call.said
    assert [(b.name, b.start, b.status) for b in await call.active()] == [("Grace Kim", local(SAT, 10), "active")]
    assert await call.sms_to() == []
    assert call.policy.outcome != "cancelled"


async def test_a_number_without_bookings_sounds_exactly_like_a_wrong_proof() -> None:
    graces, empty = await _graces_call(), Call(NOW, STRANGER)  # the same words; only one number has a booking
    for call in (graces, empty):
        await _to_the_proof(call)
        await call.text("John Smith")
        await call.text("Saturday")
    assert graces.said == empty.said


async def test_one_attempt_per_call_then_only_a_person_can_help() -> None:
    call = await _graces_call()
    await _to_the_proof(call)
    await call.text("Grace Kim")
    await call.text("Friday")  # wrong day
    await call.text("No.")
    assert "booked under" in await call.text("I'd like to cancel an appointment.")
    again = await call.text(OWNER_SPOKEN)
    assert "can't change an appointment booked under another number on this call" in again  # no second guess
    handed = (await call.say("Yes, please."))[-1]
    assert handed.transfer_to == "+14155550199" and handed.end_call
    assert call.policy.outcome == "transferred" and len(await call.active()) == 1


async def test_right_name_and_day_cancel_and_the_booked_number_is_told_from_which_line() -> None:
    call = await _graces_call()
    await _to_the_proof(call)
    await call.text("It's under Grace Kim.")
    found = await call.text("This Saturday.")
    assert found == "I found your haircut on Saturday, December 12 at 10 AM. Shall I cancel it?"
    assert "cancelled" in await call.text("Yes.")
    assert call.policy.outcome == "cancelled" and await call.active() == []
    [text] = await call.texts_sent()
    assert text.to == OWNER
    assert "is cancelled" in text.body and "a call from a number ending in 0177" in text.body


async def test_the_day_said_in_the_request_counts_as_the_proof_day() -> None:
    call = await _graces_call()
    await _to_the_proof(call, "Hi, I have to cancel my appointment on Saturday.")
    assert "Shall I cancel it?" in await call.text("Grace Kim")


async def test_reschedule_from_another_number_with_proof_moves_it_and_warns_the_owner() -> None:
    call = await _graces_call()
    await _to_the_proof(call, "I need to move my appointment.")
    await call.text("Grace Kim")
    assert "Is that the one you'd like to move?" in await call.text("Saturday")
    await call.text("Yes.")
    await call.text("Friday at 4")
    assert "now on Friday, December 11 at 4 PM" in await call.text("Yes.")
    [text] = await call.texts_sent()
    assert text.to == OWNER and "moved to Fri Dec 11 at 4:00 PM" in text.body and "ending in 0177" in text.body


async def test_a_call_without_caller_id_needs_proof_even_for_its_own_booking() -> None:
    call = await _graces_call(caller_id="")  # a browser call: no caller ID at all
    await _to_the_proof(call)
    assert _leaks(call) == []
    await call.text("Grace Kim")
    assert "Shall I cancel it?" in await call.text("Saturday")
    await call.text("Yes.")
    [text] = await call.texts_sent()
    assert "a number that was not shown" in text.body


async def test_a_first_name_alone_is_not_proof() -> None:
    call = await _graces_call()
    await _to_the_proof(call)
    reply = (await call.say("Grace"))[-1]
    assert reply.reprompt and "first and last" in reply.text and call.policy.ask is Ask.PROOF_NAME
    assert _leaks(call) == []
