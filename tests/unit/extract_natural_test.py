"""Times, days and names as people say them and recognizers write them: words, restarts, spellings."""
from __future__ import annotations

from datetime import date, datetime, time
from zoneinfo import ZoneInfo

import pytest

from spotfunnel.business import OpeningHours
from spotfunnel.conversation.extract.dates import parse_when, plausible_time
from spotfunnel.conversation.extract.names import PersonName, extract_name, looks_like_person, spelled_word

LA = ZoneInfo("America/Los_Angeles")
NOW = datetime(2026, 12, 8, 10, tzinfo=LA)  # a Tuesday
SALON = OpeningHours(open=time(9), close=time(18))


@pytest.mark.parametrize("said, at", [
    ("ten past two", time(14, 10)), ("twenty to three pm", time(14, 40)), ("a quarter to eleven", time(10, 45)),
    ("five past eleven am", time(11, 5)), ("at midday", time(12)), ("1115", time(11, 15)), ("at 4", time(16)),
])
def test_times_in_words_and_as_whisper_writes_them(said: str, at: time) -> None:
    assert parse_when(said, NOW, LA, lambda day: SALON, bare_time=True).time == at


def test_from_ten_to_two_is_not_ten_to_two() -> None:
    assert parse_when("from 10 to 2", NOW, LA, lambda day: SALON).time == time(10)


@pytest.mark.parametrize("said, day", [
    ("a week from Friday", date(2026, 12, 18)), ("one week on Friday", date(2026, 12, 18)),
    ("in two days", date(2026, 12, 10)), ("in a week", date(2026, 12, 15)),
])
def test_days_counted_from_today_or_a_weekday(said: str, day: date) -> None:
    assert parse_when(said, NOW, LA).day == day


@pytest.mark.parametrize("at, expected", [
    (time(22), time(10)), (time(23, 30), time(11, 30)), (time(19), time(19)), (time(15), time(15)), (time(6), time(6)),
])
def test_an_am_pm_outside_the_hours_flips_only_to_an_open_reading(at: time, expected: time) -> None:
    assert plausible_time(at, date(2026, 12, 11), lambda day: SALON) == expected


def test_no_hours_that_day_keeps_the_time() -> None:
    assert plausible_time(time(22), date(2026, 12, 14), lambda day: None) == time(22)


@pytest.mark.parametrize("said, name", [
    ("It's, uh, Maria, Maria Lopez.", "Maria Lopez"), ("Maria, Maria Lopez", "Maria Lopez"),
    ("No, it's Sam Lee", "Sam Lee"), ("Actually, Sam Lee", "Sam Lee"), ("It's a Nina, Nina Patel.", "Nina Patel"),
])
def test_restarts_and_lead_ins_are_left_out_of_names(said: str, name: str) -> None:
    found = extract_name(said)
    assert found is not None and found.text == name


@pytest.mark.parametrize("said, word", [
    ("Reid, that's R, E, I, D", "Reid"), ("R-E-I-D", "Reid"), ("spelled K A T E", "Kate"), ("It's Lee, L. E. E.", "Lee"),
])
def test_spelled_words(said: str, word: str) -> None:
    spelled = spelled_word(said)
    assert spelled is not None and spelled[0] == word


@pytest.mark.parametrize("said", ["I want a haircut", "OK I see", "Maria Lopez"])
def test_no_spelling_without_three_capital_letters_in_a_row(said: str) -> None:
    assert spelled_word(said) is None


@pytest.mark.parametrize("name, source, ok", [
    ("Sam Lee", "Sam Lee.", True), ("Sam Lee", "sam lee", True), ("Flibber", "flibber", True),
    ("Sounds Fine", "Sounds fine.", False), ("Ana De La Cruz Ortiz Vega", "Ana de la Cruz Ortiz Vega", False),
])
def test_a_name_looks_like_a_person(name: str, source: str, ok: bool) -> None:
    assert looks_like_person(PersonName(name, False), source) is ok


@pytest.mark.parametrize("name, source, ok", [("Sam Lee", "Sam Lee.", True), ("Flexible", "I'm flexible.", False),
                                              ("Sam Lee", "sam lee", False)])
def test_a_name_nobody_asked_for_must_be_written_as_a_name(name: str, source: str, ok: bool) -> None:
    assert looks_like_person(PersonName(name, False), source, capitals_required=True) is ok
