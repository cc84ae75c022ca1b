"""Phone numbers (digits and spoken digits) and callers' names from Whisper-style transcripts."""
from __future__ import annotations

import pytest

from spotfunnel.conversation.extract.names import extract_name
from spotfunnel.conversation.extract.phones import is_valid_e164, last_digits, parse_phone, spoken_digits


@pytest.mark.parametrize(
    "text, e164",
    [
        ("four one five, five five five, zero one three three", "+14155550133"),
        ("No, send it to four one five, five five five, zero one three three.", "+14155550133"),
        ("four one five double five five oh one three three", "+14155550133"),
        ("415-555-0133", "+14155550133"),
        ("(415) 555 0133", "+14155550133"),
        ("It's 415 555 0133, thanks.", "+14155550133"),
        ("one four one five five five five zero one hundred", "+14155550100"),
        ("+1 212 555 1234", "+12125551234"),
        ("Four-one-five, triple five, zero one four four.", "+14155550144"),
    ],
)
def test_phone_to_e164(text: str, e164: str) -> None:
    assert parse_phone(text) == e164


@pytest.mark.parametrize("text", ["five five five", "yes", "", "four one five five five five", "000 000 0000"])
def test_not_a_phone(text: str) -> None:
    assert parse_phone(text) is None


def test_spoken_digits_and_helpers() -> None:
    assert spoken_digits("double five, oh one") == "5501"
    assert spoken_digits("for the zero") == "0"
    assert last_digits("+14155550133") == "0 1 3 3"
    assert is_valid_e164("+14155550111") and not is_valid_e164("anonymous")


@pytest.mark.parametrize(
    "text, name, explicit",
    [
        ("Maria Lopez.", "Maria Lopez", False),
        ("my name is María López", "Maria Lopez", True),
        ("It's John Carter, thanks.", "John Carter", False),
        ("this is jean-luc o'brien", "Jean-Luc O'Brien", False),
        ("Um, Nina Patel.", "Nina Patel", False),
        ("Sure, it's Omar Hassan.", "Omar Hassan", False),
        ("yeah its Ana de la Cruz", "Ana de la Cruz", False),
        ("MY NAME IS GRACE KIM", "Grace Kim", True),
        ("I'm Zoë Ångström", "Zoe Angstrom", False),
        ("Grace", "Grace", False),
    ],
)
def test_name(text: str, name: str, explicit: bool) -> None:
    found = extract_name(text)
    assert found is not None and (found.text, found.explicit) == (name, explicit)


@pytest.mark.parametrize("text", ["Yes.", "I'd like a haircut", "", "Thursday at 11", "uh", "no thanks"])
def test_not_a_name(text: str) -> None:
    assert extract_name(text) is None


def test_full_name_needs_two_words() -> None:
    assert extract_name("Maria Lopez").is_full  # type: ignore[union-attr]
    assert not extract_name("Maria").is_full  # type: ignore[union-attr]
