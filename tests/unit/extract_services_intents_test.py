"""Services by name, synonym and fuzzy match; intents from Whisper-style punctuated transcripts."""
from __future__ import annotations

import pytest

from spotfunnel.conversation.agent import load_agent
from spotfunnel.conversation.extract.intents import Intent, detect_intents, is_goodbye, yes_or_no
from spotfunnel.conversation.extract.services import match_service

SERVICES = load_agent("maple-street-salon").profile.services


@pytest.mark.parametrize(
    "text, service_id",
    [
        ("Hi there, I'd like to book a haircut.", "haircut"),
        ("a hair cut please", "haircut"),
        ("I just need a cut", "haircut"),
        ("Can I come in for a blowout on Friday at two?", "blowout"),
        ("a blow dry", "blowout"),
        ("I'd like a beer trim", "beard-trim"),
        ("yeah book me a beard trim saturday at noon", "beard-trim"),
        ("can you trim my beard", "beard-trim"),
        ("hair colouring", "color"),
        ("I want to dye my hair", "color"),
        ("Colour, please.", "color"),
        ("HAIRCUT", "haircut"),
        ("beard-trim", "beard-trim"),
        ("a blowot", "blowout"),
    ],
)
def test_service(text: str, service_id: str) -> None:
    found = match_service(text, SERVICES)
    assert found is not None and found.id == service_id


@pytest.mark.parametrize("text", ["Maria Lopez", "Yes, that's right.", "I'd like to book", "Thursday at eleven", ""])
def test_no_service(text: str) -> None:
    assert match_service(text, SERVICES) is None


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Hi there, I'd like to book a haircut.", {Intent.BOOK}),
        ("I'd like to make an appointment", {Intent.BOOK}),
        ("I'd like to move my appointment", {Intent.RESCHEDULE}),
        ("Can I reschedule?", {Intent.RESCHEDULE}),
        ("Hi, I have to cancel my appointment on Saturday.", {Intent.CANCEL}),
        ("Are you open on Mondays?", {Intent.HOURS}),
        ("What are your hours", {Intent.HOURS}),
        ("Where are you located?", {Intent.ADDRESS}),
        ("What's your address?", {Intent.ADDRESS}),
        ("What services do you offer?", {Intent.SERVICES}),
        ("How much is a beard trim?", {Intent.PRICES}),
        ("Can I talk to a person?", {Intent.HANDOFF}),
        ("A human, please.", {Intent.HANDOFF, Intent.AFFIRM}),
        ("representative", {Intent.HANDOFF}),
        ("No, that's all. Thanks!", {Intent.DENY, Intent.GOODBYE}),
        ("Nope, that's it.", {Intent.DENY, Intent.GOODBYE}),
        ("Okay, thank you. Bye.", {Intent.AFFIRM, Intent.GOODBYE}),
        ("Yes, that's fine.", {Intent.AFFIRM}),
        ("Yes, that number is good.", {Intent.AFFIRM}),
        ("That's not right.", {Intent.DENY}),
    ],
)
def test_intents(text: str, expected: set[Intent]) -> None:
    assert detect_intents(text) == expected


@pytest.mark.parametrize(
    "text", ["yes", "Yeah.", "Sure!", "That's right.", "Correct.", "Sounds good.", "that number is good", "Yep, 11 is fine", "OK"]
)
def test_affirm(text: str) -> None:
    assert yes_or_no(text) is True


@pytest.mark.parametrize("text", ["no", "Nope.", "No, send it to 415 555 0133", "nah", "That's wrong.", "No, make it 4:30."])
def test_deny(text: str) -> None:
    assert yes_or_no(text) is False


@pytest.mark.parametrize("text", ["Maria Lopez", "", "Thursday at eleven"])
def test_neither_yes_nor_no(text: str) -> None:
    assert yes_or_no(text) is None


@pytest.mark.parametrize("text", ["bye", "Goodbye!", "no, that's all", "Nope that's it", "I'm all set, thanks"])
def test_goodbye(text: str) -> None:
    assert is_goodbye(text)


@pytest.mark.parametrize(
    "text, service_id",
    [
        ("Can I get a beer turn this Saturday at noon?", "beard-trim"),  # Whisper on "beard trim"
        ("a bird trim please", "beard-trim"),
        ("Could I book a blow drive for Thursday afternoon?", "blowout"),
        ("I'd like it blow dried", "blowout"),
    ],
)
def test_service_misheard_word_by_word(text: str, service_id: str) -> None:
    service = match_service(text, SERVICES)
    assert service is not None and service.id == service_id


@pytest.mark.parametrize(
    "text", ["I'd like a beer tonight", "I was bored today", "Brian Turner", "bear that in mind", "blow my mind"]
)
def test_sound_alike_needs_both_words_close(text: str) -> None:
    assert match_service(text, SERVICES) is None


@pytest.mark.parametrize(
    "text", ["Hi, I need someone to trim my beard.", "Can I get someone for a haircut?", "I need somebody to cut my hair"]
)
def test_someone_to_do_a_service_is_not_a_handoff(text: str) -> None:
    assert Intent.HANDOFF not in detect_intents(text)


@pytest.mark.parametrize(
    "text", ["I need someone to talk to", "I want someone to help me", "I need a person", "Can I talk to a person?"]
)
def test_asking_for_someone_still_hands_off(text: str) -> None:
    assert Intent.HANDOFF in detect_intents(text)
