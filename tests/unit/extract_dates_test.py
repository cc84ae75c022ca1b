"""Dates and times: relative days, spoken times, am/pm chosen by opening hours, DST across both changes."""
from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from spotfunnel.business import OpeningHours
from spotfunnel.conversation.extract.dates import local_instant, parse_when, settle_meridiem, with_day

LA = ZoneInfo("America/Los_Angeles")
NOW = datetime(2026, 12, 8, 10, 0, tzinfo=LA)  # a Tuesday


def salon_hours(day: date) -> OpeningHours | None:
    weekday = day.weekday()
    if weekday in (0, 6):
        return None
    return OpeningHours(open=time(9), close=time(16) if weekday == 5 else time(18))


def when(text: str, now: datetime = NOW, **kw: object):  # type: ignore[no-untyped-def]
    return parse_when(text, now, LA, salon_hours, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "text, day, at",
    [
        ("tomorrow at 3 pm", date(2026, 12, 9), time(15)),
        ("Hi, I'd like to book a haircut for tomorrow at 3 pm.", date(2026, 12, 9), time(15)),
        ("Thursday at eleven in the morning.", date(2026, 12, 10), time(11)),
        ("this Saturday", date(2026, 12, 12), None),
        ("next Friday morning at 10", date(2026, 12, 11), time(10)),
        ("Can I come in for a blowout on Friday at two?", date(2026, 12, 11), time(14)),
        ("Friday at 2:30 p.m.", date(2026, 12, 11), time(14, 30)),
        ("Saturday at noon", date(2026, 12, 12), time(12)),
        ("the 12th", date(2026, 12, 12), None),
        ("the 5th", date(2027, 1, 5), None),
        ("December 10th at 9", date(2026, 12, 10), time(9)),
        ("on the 10th of December", date(2026, 12, 10), None),
        ("January 3rd", date(2027, 1, 3), None),
        ("twelfth of December at four o'clock", date(2026, 12, 12), time(16)),
        ("12/15", date(2026, 12, 15), None),
        ("day after tomorrow at half past three", date(2026, 12, 10), time(15, 30)),
        ("Wednesday at a quarter to five", date(2026, 12, 9), time(16, 45)),
        ("Thursday at 9 in the evening", date(2026, 12, 10), time(21)),
        ("in two days", date(2026, 12, 10), None),
        ("today at 16:15", date(2026, 12, 8), time(16, 15)),
        ("Friday at three thirty", date(2026, 12, 11), time(15, 30)),
        ("Tuesday at 11", date(2026, 12, 8), time(11)),
    ],
)
def test_resolves_day_and_time(text: str, day: date, at: time | None) -> None:
    found = when(text)
    assert (found.day, found.time) == (day, at)


@pytest.mark.parametrize(
    "text, at",
    [
        ("four o'clock", time(16)),
        ("Okay, what about four o'clock?", time(16)),
        ("half past three", time(15, 30)),
        ("4:30", time(16, 30)),
        ("noon", time(12)),
        ("at 10", time(10)),
        ("how about 5", time(17)),
        ("eleven forty-five am", time(11, 45)),
    ],
)
def test_time_only_keeps_day_from_context(text: str, at: time) -> None:
    found = when(text, context_day=date(2026, 12, 11))
    assert found.day is None and found.time == at


def test_bare_number_is_a_time_only_when_asked_for_one() -> None:
    assert when("two", context_day=date(2026, 12, 11)).time is None
    assert when("two", context_day=date(2026, 12, 11), bare_time=True).time == time(14)
    assert when("um, maybe 2 30", context_day=date(2026, 12, 11), bare_time=True).time == time(14, 30)


@pytest.mark.parametrize("text", ["Maria Lopez", "yes that's right", "a haircut for 2 people", "it costs 45 dollars", ""])
def test_no_date_or_time_in_other_answers(text: str) -> None:
    assert when(text).empty


def test_am_pm_chosen_by_opening_hours() -> None:
    friday, saturday = date(2026, 12, 11), date(2026, 12, 12)
    assert settle_meridiem(time(2), friday, salon_hours) == time(14)
    assert settle_meridiem(time(9), friday, salon_hours) == time(9)
    assert settle_meridiem(time(17), saturday, salon_hours) == time(17)  # outside: heuristic keeps PM
    assert settle_meridiem(time(12), None, None) == time(12)
    assert with_day(when("at 2"), friday, salon_hours).time == time(14)


def test_explicit_meridiem_is_kept() -> None:
    assert when("Friday at 8 pm").time == time(20)
    assert when("Friday at 2 am").time == time(2)


def test_caller_time_zone_not_server_time_zone() -> None:
    late_utc = datetime(2026, 12, 9, 6, 30, tzinfo=timezone.utc)  # still Dec 8, 22:30 in San Francisco
    assert when("tomorrow", now=late_utc).day == date(2026, 12, 9)


def test_dst_spring_forward() -> None:
    before = datetime(2026, 3, 7, 10, 0, tzinfo=LA)  # Saturday before the change on Sunday 8 March
    found = when("tomorrow at 3 pm", now=before)
    assert found.day == date(2026, 3, 8)
    start = local_instant(found.day, found.time, LA)  # type: ignore[arg-type]
    assert start.utcoffset() == timedelta(hours=-7)
    assert start.astimezone(timezone.utc) == datetime(2026, 3, 8, 22, 0, tzinfo=timezone.utc)
    tuesday = local_instant(date(2026, 3, 10), time(9), LA)
    saturday = local_instant(date(2026, 3, 7), time(9), LA)
    assert tuesday.astimezone(timezone.utc) - saturday.astimezone(timezone.utc) == timedelta(days=3, hours=-1)


def test_dst_fall_back() -> None:
    before = datetime(2026, 10, 31, 17, 0, tzinfo=LA)  # Saturday; clocks go back on Sunday 1 November
    found = when("Monday at 10 am", now=before)
    assert found.day == date(2026, 11, 2)
    start = local_instant(found.day, found.time, LA)  # type: ignore[arg-type]
    assert start.utcoffset() == timedelta(hours=-8)
    assert local_instant(date(2026, 10, 31), time(10), LA).utcoffset() == timedelta(hours=-7)


def test_skipped_wall_time_moves_forward() -> None:
    start = local_instant(date(2026, 3, 8), time(2, 30), LA)
    assert (start.hour, start.minute) == (3, 30)


@pytest.mark.parametrize(
    "text, bare, at",
    [
        ("1045 works.", True, time(10, 45)),  # Whisper writes "ten forty five" as "1045"
        ("430 is fine.", True, time(16, 30)),
        ("No, make it 430.", False, time(16, 30)),
        ("Can we do it at 1130?", False, time(11, 30)),
        ("How about 245 pm", False, time(14, 45)),
        ("Round 3.", False, time(15)),  # "around three" with the "a" swallowed
        ("for next Tuesday at 10M.", False, time(10)),  # "ten am" with the "a" swallowed
        ("Tomorrow, what to in the afternoon?", False, time(14)),  # "at two in the afternoon"
    ],
)
def test_compact_whisper_times(text: str, bare: bool, at: time) -> None:
    assert when(text, context_day=date(2026, 12, 11), bare_time=bare).time == at


@pytest.mark.parametrize(
    "text", ["Is that 1200 Maple Street?", "Is it $120?", "Friday at 2026", "call me on 4155550133", "I want to come in to get a cut"]
)
def test_compact_time_needs_a_time_context(text: str) -> None:
    assert when(text).time is None
