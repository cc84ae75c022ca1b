"""Mixed initiative: whatever was asked, every slot a turn carries is kept and only what is missing is asked."""
from __future__ import annotations

from datetime import date, time

import pytest
from conversation_support import Call, local

from spotfunnel.conversation.state import Ask

NOW = "2026-12-08T10:00:00-08:00"  # Tuesday
FRI, SAT = date(2026, 12, 11), date(2026, 12, 12)
NOT_CAUGHT = "didn't quite catch"


def _start(call: Call):  # type: ignore[no-untyped-def]
    return call.policy.ctx.state.draft.start(call.agent.profile.tz)


@pytest.mark.parametrize("said, name", [("Sam Lee.", "Sam Lee"), ("It's Priya Shah.", "Priya Shah"),
                                        ("Oh, my name is Tom O'Neil.", "Tom O'Neil"), ("This is Ana de la Cruz", "Ana de la Cruz")])
async def test_a_name_given_when_a_day_was_asked_is_kept(said: str, name: str) -> None:
    call = Call(NOW)
    assert "day and time" in await call.text("I'd like to book a haircut")
    reply = await call.text(said)
    assert NOT_CAUGHT not in reply and reply.startswith(f"Thanks, {name.split()[0]}.") and "day and time" in reply
    assert call.policy.ask is Ask.WHEN and call.policy.ctx.state.draft.name == name
    # The name is not asked again: the next question is the number.
    assert call.policy.ask is Ask.WHEN
    await call.text("Friday at two")
    assert call.policy.ask is Ask.CALLER_ID


@pytest.mark.parametrize("said", ["Sam Lee", "It's Sam Lee.", "My name is Sam Lee."])
async def test_a_name_given_when_offered_times_were_asked_keeps_the_offer(said: str) -> None:
    call = Call(NOW)
    offer = await call.text("Can I get a haircut on Monday at 10?")
    assert call.policy.ask is Ask.PICK_SLOT
    reply = await call.text(said)
    assert NOT_CAUGHT not in reply and reply.startswith("Thanks, Sam.") and reply.endswith("Would one of those work?")
    assert offer.endswith(reply.removeprefix("Thanks, Sam. "))
    await call.text("the earlier one")
    assert call.policy.ask is Ask.CALLER_ID and _start(call) == local(date(2026, 12, 15), 9)


@pytest.mark.parametrize("question", ["Are you open Saturday at ten?", "Do you have anything open on Saturday at 10 am?",
                                      "What time do you open on Saturday? Could I come at ten?"])
async def test_the_day_and_hour_asked_about_before_the_service_are_kept(question: str) -> None:
    call = Call(NOW)
    await call.text(question)
    reply = await call.text("Yes, a haircut please.")
    assert "full name" in reply and _start(call) == local(SAT, 10)


@pytest.mark.parametrize("said, service, name, start", [
    ("Hi, this is Sam Lee, I need a haircut Friday at 3.", "haircut", "Sam Lee", local(FRI, 15)),
    ("I'm Ana Ruiz and I'd like a blowout on Saturday at 11 am.", "blowout", "Ana Ruiz", local(SAT, 11)),
    ("Beard trim Friday at two, my name is Jordan Reid.", "beard-trim", "Jordan Reid", local(FRI, 14)),
])
async def test_service_day_time_and_name_in_one_breath(said: str, service: str, name: str, start: object) -> None:
    call = Call(NOW)
    assert await call.text(said) == "Is the number you're calling from the best one to reach you?"
    draft = call.policy.ctx.state.draft
    assert (draft.service_id, draft.name, _start(call)) == (service, name, start)


@pytest.mark.parametrize("question, answer", [("How much is a haircut?", "45 dollars"),
                                              ("What time do you close on Friday?", "6 PM")])
async def test_a_question_mid_booking_is_answered_and_the_booking_resumes(question: str, answer: str) -> None:
    call = Call(NOW)
    await call.text("a haircut on Friday at two")
    assert call.policy.ask is Ask.NAME
    reply = await call.text(question)
    assert answer in reply and reply.endswith("Can I have your full name, please?") and call.policy.ask is Ask.NAME
    await call.text("Sam Lee")
    assert call.policy.ask is Ask.CALLER_ID and _start(call) == local(FRI, 14)


async def _at_read_back(call: Call) -> None:
    await call.text("a haircut on Friday at three pm")
    await call.text("Sam Lee")
    await call.text("yes")
    assert call.policy.ask is Ask.READ_BACK


@pytest.mark.parametrize("said, read_back", [
    # the service changes and the time stays
    ("Actually, make it a blowout, same time.", "a blowout on Friday, December 11 at 3 PM for Sam Lee"),
    ("Oh wait, can it be a blowout instead?", "a blowout on Friday, December 11 at 3 PM for Sam Lee"),
    ("Sorry, I meant a blow dry.", "a blowout on Friday, December 11 at 3 PM for Sam Lee"),
    # a time blurted over the read-back
    ("No, wait, five fifteen.", "a haircut on Friday, December 11 at 5:15 PM for Sam Lee"),
    ("no wait 515", "a haircut on Friday, December 11 at 5:15 PM for Sam Lee"),
    ("Sorry, five fifteen.", "a haircut on Friday, December 11 at 5:15 PM for Sam Lee"),
    # the name
    ("No, the name is Sam Leigh.", "at 3 PM for Sam Leigh. Is that right?"),
    ("Actually, my name is Sam Leigh.", "at 3 PM for Sam Leigh. Is that right?"),
    ("No, it's Sam Leigh.", "at 3 PM for Sam Leigh. Is that right?"),
])
async def test_a_correction_at_the_read_back_is_read_back_at_once(said: str, read_back: str) -> None:
    call = Call(NOW)
    await _at_read_back(call)
    assert read_back in await call.text(said) and call.policy.ask is Ask.READ_BACK


@pytest.mark.parametrize("said, minute", [("a quarter past two", 15), ("The later one.", 30), ("the earlier one", 15),
                                          ("two thirty please", 30)])
async def test_an_offered_time_named_in_words(said: str, minute: int) -> None:
    call = Call(NOW)
    await call.seed("Paul Adams", "+14155550199", "haircut", local(FRI, 13, 30))  # 1:30 to 2:15 is taken
    offer = await call.text("a haircut on Friday at two")
    assert "2:15 PM and 2:30 PM" in offer
    await call.text(said)
    assert call.policy.ask is Ask.NAME and _start(call) == local(FRI, 14, minute)


@pytest.mark.parametrize("said, day, at", [
    ("a haircut at midday on Friday", FRI, time(12)), ("a haircut a week from Friday at a quarter to eleven",
                                                        date(2026, 12, 18), time(10, 45)),
    ("a haircut in two days at a quarter past two", date(2026, 12, 10), time(14, 15)),
    ("a haircut on Friday at ten pm", FRI, time(10)),  # a salon open 9 to 6: "pm" was heard wrong
    ("a haircut on Friday at 1115", FRI, time(11, 15)), ("a haircut Friday at 4", FRI, time(16)),
])
async def test_days_and_times_in_natural_words_resolve_to_open_hours(said: str, day: date, at: time) -> None:
    call = Call(NOW)
    await call.text(said)
    assert call.policy.ask is Ask.NAME and _start(call) == local(day, at.hour, at.minute)


@pytest.mark.parametrize("said", ["I'd like it to be quick", "the blowout", "sounds good to me",
                                  "Highlights.", "Styling", "Blow Dry."])  # the tenant's service words
async def test_a_phrase_or_a_service_is_not_taken_as_a_name(said: str) -> None:
    call = Call(NOW)
    await call.text("a haircut on Friday at two")
    await call.text(said)
    assert call.policy.ctx.state.draft.name is None and call.policy.ctx.state.draft.first_name is None


@pytest.mark.parametrize("said", ["Jordan Reid, that's R, E, I, D.", "Jordan Reed, R-E-I-D.",
                                  "It's Jordan Read, spelled R E I D"])
async def test_a_spelled_name_wins_and_is_spelled_back(said: str) -> None:
    call = Call(NOW)
    await call.text("a haircut on Friday at two")
    reply = await call.text(said)
    assert reply.startswith("Thanks. That's Jordan Reid, spelled R E I D.") and call.policy.ask is Ask.CALLER_ID
    assert call.policy.ctx.state.draft.name == "Jordan Reid"


@pytest.mark.parametrize("said", ["It's, uh, Maria, Maria Lopez.", "Um, Maria, uh, Maria Lopez", "uh it's Maria Lopez"])
async def test_fillers_and_a_restarted_name(said: str) -> None:
    call = Call(NOW)
    await call.text("a haircut on Friday at two")
    await call.text(said)
    assert call.policy.ctx.state.draft.name == "Maria Lopez"


@pytest.mark.parametrize("said", ["Uh, so, basically, I was hoping to, um, maybe get a haircut on Friday at two?",
                                  "Um, yeah, so, like, could I, uh, book a haircut, Friday, at two?"])
async def test_fillers_around_a_request(said: str) -> None:
    call = Call(NOW)
    assert "full name" in await call.text(said) and _start(call) == local(FRI, 14)


@pytest.mark.parametrize("said, name", [("Hi, this is Sam Lee.", "Sam Lee"), ("Hello, my name is Priya Shah.", "Priya Shah"),
                                        ("Hi there, it's Ana Ruiz calling.", "Ana Ruiz")])
async def test_a_caller_who_starts_with_their_name_is_not_asked_for_it_again(said: str, name: str) -> None:
    call = Call(NOW)
    reply = await call.text(said)
    assert NOT_CAUGHT not in reply and reply.startswith(f"Thanks, {name.split()[0]}.") and call.policy.ask is Ask.HELP
    await call.text("I'd like a haircut on Friday at two.")
    assert call.policy.ask is Ask.CALLER_ID and call.policy.ctx.state.draft.name == name


@pytest.mark.parametrize("said", ["Sam Lee, and my number is 415 555 0177.", "It's Sam Lee, four one five, five five five, "
                                  "zero one seven seven"])
async def test_a_number_given_with_the_name_is_not_asked_for(said: str) -> None:
    call = Call(NOW)
    await call.text("a haircut on Friday at two")
    reply = await call.text(said)
    assert "Just to confirm: a haircut on Friday, December 11 at 2 PM for Sam Lee." in reply
    assert call.policy.ctx.state.draft.phone == "+14155550177"


async def test_a_spelled_last_name_joins_the_first_name() -> None:
    call = Call(NOW)
    await call.text("a haircut on Friday at two")
    assert "last name" in await call.text("Jordan")
    reply = await call.text("Reed, that's R, E, I, D.")
    assert reply.startswith("Thanks. That's Jordan Reid, spelled R E I D.") and call.policy.ctx.state.draft.name == "Jordan Reid"


async def test_a_spelled_first_name_alone_still_asks_for_the_last_name() -> None:
    call = Call(NOW)
    await call.text("a haircut on Friday at two")
    reply = await call.text("It's Kate, K, A, T, E.")
    assert reply.startswith("Thanks. That's Kate, spelled K A T E.") and call.policy.ask is Ask.LAST_NAME


@pytest.mark.parametrize("said", ["Uh, so, basically, I was hoping to, um, maybe...", "So I wanted to, uh,",
                                  "Hi, yes, I was wondering if I could"])
async def test_a_turn_that_trails_off_is_asked_on_gently_not_misunderstood(said: str) -> None:
    call = Call(NOW)
    first = await call.say(said)
    assert first[0].text == "Sure, take your time." and first[0].reprompt and call.policy.ask is Ask.HELP
    assert NOT_CAUGHT not in first[0].text and call.policy.ctx.state.misunderstandings == 0
    assert "full name" in await call.text("a haircut on Friday at two")


async def test_trailing_off_again_and_again_still_ends_in_a_hand_off() -> None:
    call = Call(NOW)
    replies = [await call.say("I was hoping to, um...") for _ in range(5)]
    assert replies[-1][0].end_call and replies[-1][0].transfer_to


@pytest.mark.parametrize("said", ["i'm flexible", "I'm flexible.", "It's whenever.", "Sam."])
async def test_no_name_is_read_into_an_unasked_phrase(said: str) -> None:
    call = Call(NOW)
    await call.text("I'd like to book a haircut")
    await call.text(said)
    assert call.policy.ctx.state.draft.name is None and call.policy.ctx.state.draft.first_name is None


async def test_a_question_about_another_day_does_not_move_the_booking() -> None:
    call = Call(NOW)
    await call.text("a haircut on Friday at two")
    await call.text("Sam Lee")
    reply = await call.text("What are your hours on Saturday?")
    assert "4 PM" in reply and call.policy.ask is Ask.CALLER_ID and _start(call) == local(FRI, 14)
