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
