"""Resolves spoken dates and times ("tomorrow at 3 pm", "Friday at two") in the tenant's time zone."""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta, timezone
from typing import Callable
from zoneinfo import ZoneInfo

import dateparser

from spotfunnel.business import OpeningHours
from spotfunnel.conversation.extract.text import numbers_to_digits

OpeningLookup = Callable[[date], "OpeningHours | None"]

WEEKDAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_WEEKDAY_ALIASES = {"tues": 1, "weds": 2, "thurs": 3, "thur": 3}
_MONTHS = (
    "january", "february", "march", "april", "may", "june", "july",
    "august", "september", "october", "november", "december",
)
_MONTH_RE = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*"
_ORD = r"(\d{1,2})(?:st|nd|rd|th)?"
_MERIDIEM_WORDS = {"morning": "am", "afternoon": "pm", "evening": "pm", "tonight": "pm"}


@dataclass(frozen=True)
class When:
    """A date and/or a time of day the caller mentioned; either may be missing."""

    day: date | None = None
    time: time | None = None
    meridiem_given: bool = False

    @property
    def empty(self) -> bool:
        return self.day is None and self.time is None


@dataclass(frozen=True)
class _ClockTime:
    hour: int
    minute: int
    meridiem: str | None  # "am", "pm" or None when unsaid


def local_instant(day: date, at: time, tz: ZoneInfo) -> datetime:
    """The aware instant of a local wall time; a wall time skipped by DST moves forward an hour."""
    naive = datetime.combine(day, at)
    aware = naive.replace(tzinfo=tz)
    return aware.astimezone(timezone.utc).astimezone(tz)


def settle_meridiem(at: time, day: date | None, opening: OpeningLookup | None) -> time:
    """For a time said without am/pm, the reading that falls inside opening hours on `day`."""
    hour12 = at.hour % 12
    candidates = [time(12, at.minute)] if hour12 == 0 else [time(hour12, at.minute), time(hour12 + 12, at.minute)]
    hours = opening(day) if opening and day else None
    if hours is not None:
        for candidate in candidates:
            if hours.open <= candidate < hours.close:
                return candidate
    if hour12 == 0:
        return candidates[0]
    return candidates[1] if 1 <= hour12 <= 7 else candidates[0]


def plausible_time(at: time, day: date | None, opening: OpeningLookup | None) -> time:
    """An hour said with an am/pm that falls outside `day`'s hours while the other half of the day
    is open ("seven pm" for a salon open 9 to 6 is heard wrong: 7 am is closed too, so it stays;
    "ten pm" for 10 am): the open reading wins; otherwise the time stays as said."""
    hours = opening(day) if opening and day else None
    if hours is None or hours.open <= at < hours.close:
        return at
    other = time((at.hour + 12) % 24, at.minute)
    return other if hours.open <= other < hours.close else at


def parse_when(
    text: str,
    now: datetime,
    tz: ZoneInfo,
    opening: OpeningLookup | None = None,
    context_day: date | None = None,
    bare_time: bool = False,
) -> When:
    """The date and time in `text`, resolved against `now` in `tz`.

    `context_day` is the day already known (used to choose am/pm); `bare_time` accepts a lone number
    such as "four" or "2 30" as a time (when the agent just asked for a time).
    """
    today = now.astimezone(tz).date()
    spoken = split_compact_times(numbers_to_digits(text), bare_time)
    day, rest = _find_day(spoken, today)
    clock = _find_time(rest, bare_time)
    if clock is None:
        return When(day=day)
    return _resolve(clock, day, day or context_day, opening, rest)


_COMPACT = r"(1[0-2]|[1-9])([0-5]\d)"
_COMPACT_CUE = r"at|around|round|about|by|say|it|to|till|until|before|after|for|maybe|try|how about|what about"


def split_compact_times(spoken: str, bare_time: bool = False) -> str:
    """Whisper writes "four thirty" as "430" and "ten forty five" as "1045": split such a number into
    hour and minutes ("4 30") when it is clearly a time: before am/pm, after a cue word ("at 430",
    "make it 430"), or anywhere when the agent just asked for a time. Other numbers are kept.
    Also repairs two phone-line slips: "10M" (the "a" of "am" lost) and "to in the afternoon"."""
    spoken = re.sub(r"\b(\d{1,2})m\b", r"\1", spoken)  # "ten am" heard as "10M": keep the hour, settle am/pm later
    spoken = re.sub(r"\b(?:to|too)(?= (?:am|pm|in the (?:morning|afternoon|evening)|o ?'? ?clock)\b)", "2", spoken)
    spoken = re.sub(rf"\b{_COMPACT}(?= ?(?:am|pm|o ?'? ?clock)\b)", r"\1 \2", spoken)
    spoken = re.sub(rf"\b({_COMPACT_CUE}) {_COMPACT}\b(?![:/])", r"\1 \2 \3", spoken)
    if bare_time:
        spoken = re.sub(rf"(?<![$/:\d]){_COMPACT}\b(?![:/]|\d| ?(?:dollars|bucks|minutes?|mins?))", r"\1 \2", spoken)
    return spoken


def _resolve(clock: _ClockTime, day: date | None, for_day: date | None, opening: OpeningLookup | None, rest: str) -> When:
    meridiem = clock.meridiem
    if meridiem is None:
        for word, value in _MERIDIEM_WORDS.items():
            if re.search(rf"\b{word}\b", rest):
                meridiem = value
    hour = clock.hour
    if meridiem == "am":
        return When(day, time(hour % 12, clock.minute), True)
    if meridiem == "pm":
        return When(day, time(hour % 12 + 12, clock.minute), True)
    if hour > 12 or hour == 0:
        return When(day, time(hour, clock.minute), True)
    return When(day, settle_meridiem(time(hour, clock.minute), for_day, opening), False)


def with_day(when: When, day: date, opening: OpeningLookup | None) -> When:
    """`when` moved onto `day`, re-choosing am/pm for a time said without it."""
    at = when.time
    if at is not None and not when.meridiem_given:
        at = settle_meridiem(at, day, opening)
    return replace(when, day=day, time=at)


# ---- dates -------------------------------------------------------------------------------------------

def _find_day(text: str, today: date) -> tuple[date | None, str]:
    for finder in (_relative_day, _week_from, _month_day, _numeric_day, _weekday, _ordinal_day, _in_days):
        found = finder(text, today)
        if found is not None:
            day, span = found
            return day, text[: span[0]] + " " + text[span[1]:]
    return None, text


_Found = tuple[date, tuple[int, int]] | None


def _relative_day(text: str, today: date) -> _Found:
    match = re.search(r"\b(?:the )?day after tomorrow\b", text)
    if match:
        return today + timedelta(days=2), match.span()
    match = re.search(r"\btomorrow\b", text)
    if match:
        return today + timedelta(days=1), match.span()
    match = re.search(r"\btoday\b", text)
    if match:
        return today, match.span()
    match = re.search(r"\b(?:tonight|this (?:morning|afternoon|evening))\b", text)
    if match:  # keep the words in the text: they choose am or pm
        return today, (match.start(), match.start())
    return None


def _week_from(text: str, today: date) -> _Found:
    """"A week from Friday" / "a week on Friday": seven days after the next such weekday."""
    names = "|".join(WEEKDAY_NAMES)
    match = re.search(rf"\b(?:a|1|one) week (?:from|on|after) (?:this |next )?({names})\b", text)
    if not match:
        return None
    target = WEEKDAY_NAMES.index(match.group(1))
    return today + timedelta(days=(target - today.weekday()) % 7 + 7), match.span()


def _month_day(text: str, today: date) -> _Found:
    match = re.search(rf"\b({_MONTH_RE})\.? (?:the )?{_ORD}\b(?: (\d{{4}})\b)?", text)
    if match and _is_month(match.group(1)):
        month, day_text, year = match.group(1), match.group(2), match.group(3)
    else:
        match = re.search(rf"\b(?:the )?{_ORD} of ({_MONTH_RE})\b(?: (\d{{4}})\b)?", text)
        if not (match and _is_month(match.group(2))):
            return None
        day_text, month, year = match.group(1), match.group(2), match.group(3)
    parsed = _dateparse(f"{month} {day_text} {year or today.year}", today)
    if parsed is None:
        return None
    if year is None and parsed < today:
        parsed = _dateparse(f"{month} {day_text} {today.year + 1}", today) or parsed
    return parsed, match.span()


def _numeric_day(text: str, today: date) -> _Found:
    match = re.search(r"\b(\d{1,2})/(\d{1,2})(?:/(\d{2,4}))?\b", text)
    if not match:
        return None
    parsed = _dateparse(match.group(), today)
    if parsed is None:
        return None
    if match.group(3) is None and parsed < today:
        parsed = _dateparse(f"{match.group()}/{today.year + 1}", today) or parsed
    return parsed, match.span()


def _weekday(text: str, today: date) -> _Found:
    """A weekday name: "Friday", "this Friday" and "next Friday" all mean the next one to come (or today)."""
    names = "|".join(WEEKDAY_NAMES + tuple(_WEEKDAY_ALIASES))
    match = re.search(rf"\b(?:(this|next|coming|on) )?({names})s?\b", text)
    if not match:
        return None
    name = match.group(2)
    target = WEEKDAY_NAMES.index(name) if name in WEEKDAY_NAMES else _WEEKDAY_ALIASES[name]
    ahead = (target - today.weekday()) % 7
    return today + timedelta(days=ahead), match.span()


def _ordinal_day(text: str, today: date) -> _Found:
    match = re.search(r"\bthe (\d{1,2})(?:st|nd|rd|th)\b(?! (?:1|one)\b)", text)
    if not match:
        return None
    number = int(match.group(1))
    candidate = _day_of_month(today.year, today.month, number)
    if candidate is None or candidate < today:
        year, month = (today.year + 1, 1) if today.month == 12 else (today.year, today.month + 1)
        candidate = _day_of_month(year, month, number)
    return (candidate, match.span()) if candidate else None


def _in_days(text: str, today: date) -> _Found:
    match = re.search(r"\bin (\d{1,2}|a) (day|days|week|weeks)\b", text)
    if not match:
        return None
    count = 1 if match.group(1) == "a" else int(match.group(1))
    days = count * (7 if match.group(2).startswith("week") else 1)
    return today + timedelta(days=days), match.span()


def _is_month(word: str) -> bool:
    return any(m.startswith(word) for m in _MONTHS) or any(word.startswith(m) for m in _MONTHS)


def _day_of_month(year: int, month: int, day: int) -> date | None:
    try:
        return date(year, month, day)
    except ValueError:
        return None


def _dateparse(phrase: str, today: date) -> date | None:
    settings = {
        "RELATIVE_BASE": datetime.combine(today, time(12, 0)),
        "PREFER_DATES_FROM": "future",
        "DATE_ORDER": "MDY",
        "REQUIRE_PARTS": ["day", "month"],
    }
    parsed = dateparser.parse(phrase, languages=["en"], settings=settings)  # type: ignore[arg-type]
    return parsed.date() if parsed else None


# ---- times -------------------------------------------------------------------------------------------

_NOT_TIME = r"(?! ?(?:st|nd|rd|th|minutes?|mins?|hours?|days?|weeks?|people|persons?|dollars|bucks|%|/|\d))"
_TIME_PATTERNS: tuple[tuple[str, str], ...] = (
    ("noon", r"\b(?:12 )?(?:noon|midday)\b"),
    ("half", r"\bhalf (?:past|after) (\d{1,2})\b"),
    ("quarter_past", r"\b(?:a )?quarter (?:past|after) (\d{1,2})\b"),
    ("quarter_to", r"\b(?:a )?quarter (?:to|till|til|of) (\d{1,2})\b"),
    ("past", r"\b(\d{1,2})(?: minutes)? (?:past|after) (\d{1,2})\b(?! (?:minutes?|mins?|hours?))(?: ?(am|pm)\b)?"),
    ("to", r"(?<!from )\b(5|10|20|25)(?: minutes)? (?:to|till|til|of) (\d{1,2})\b(?! (?:minutes?|mins?|hours?|people))(?: ?(am|pm)\b)?"),
    ("meridiem", r"\b(\d{1,2})(?:[:.](\d{2})| (\d{2}))? ?(am|pm)\b"),
    ("colon", r"\b(\d{1,2}):(\d{2})\b"),
    ("oclock", r"\b(\d{1,2}) ?o ?'? ?clock\b"),
    ("cue", rf"\b(?:at|around|round|about|by|after|before|from|for|say|make it|change it to) (\d{{1,2}})(?: (\d{{2}}))?\b{_NOT_TIME}"),
    ("about", rf"\b(?:what|how) about (\d{{1,2}})(?: (\d{{2}}))?\b{_NOT_TIME}"),
    ("morning", rf"\b(\d{{1,2}})(?: (\d{{2}}))? (?:in the )?(?:morning|afternoon|evening|tonight)\b"),
)
_BARE_FILLER = frozenset(
    "um uh ok okay so maybe let's lets say do how about what then please yes yeah sure i guess "
    "actually make it no wait sorry oh can we could you would works instead try "
    "work fine good great perfect is that that's be will i'll take the for me then thanks thank".split()
)


def _find_time(text: str, bare_time: bool) -> _ClockTime | None:
    for kind, pattern in _TIME_PATTERNS:
        match = re.search(pattern, text)
        if match:
            clock = _clock_from(kind, match)
            if clock is not None:
                return clock
    if bare_time:
        kept = [w for w in text.split() if w not in _BARE_FILLER]
        match = re.fullmatch(r"(\d{1,2})(?: (\d{2}))?", " ".join(kept))
        if match:
            return _valid(int(match.group(1)), int(match.group(2) or 0), None)
    return None


def _clock_from(kind: str, match: re.Match[str]) -> _ClockTime | None:
    groups = match.groups()
    if kind == "noon":
        return _ClockTime(12, 0, "pm")
    hour = int(groups[0])
    if kind == "half":
        return _valid(hour, 30, None)
    if kind == "quarter_past":
        return _valid(hour, 15, None)
    if kind == "quarter_to":
        return _valid(hour - 1 if hour > 1 else 12, 45, None)
    if kind == "past":  # "ten past two": the first number is the minutes
        return _valid(int(groups[1]), hour, groups[2])
    if kind == "to":  # "twenty to three"
        target = int(groups[1])
        return _valid(target - 1 if target > 1 else 12, 60 - hour, groups[2])
    if kind == "meridiem":
        minute = groups[1] or groups[2] or "0"
        return _valid(hour, int(minute), groups[3])
    minute_text = groups[1] if len(groups) > 1 else None
    return _valid(hour, int(minute_text or 0), None)


def _valid(hour: int, minute: int, meridiem: str | None) -> _ClockTime | None:
    if not (0 <= minute <= 59) or not (0 <= hour <= 23):
        return None
    if meridiem and not (1 <= hour <= 12):
        return None
    return _ClockTime(hour, minute, meridiem)
