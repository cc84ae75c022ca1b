"""How eval compares what happened with what a scenario expects (names, phones, instants, phrases)."""
from __future__ import annotations

import re
from datetime import datetime

_UNITS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen".split())}
_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80,
         "ninety": 90}
_SCALES = {"hundred": 100, "thousand": 1000}


def normalize_name(name: str) -> str:
    return " ".join(name.lower().split())


def _numbers_to_digits(words: list[str]) -> list[str]:
    """'twenty five dollars' -> ['25', 'dollars']; digits stay digits."""
    out: list[str] = []
    value: int | None = None
    for w in words + [""]:
        if w in _UNITS or w in _TENS or (w in _SCALES and value is not None):
            if w in _SCALES:
                value = (value or 1) * _SCALES[w]
            elif w in _TENS:
                value = (value or 0) + _TENS[w]
            else:
                value = (value or 0) + _UNITS[w]
            continue
        if value is not None:
            out.append(str(value))
            value = None
        if w:
            out.append(w)
    return out


def normalize_phrase(text: str) -> str:
    """Lower case, no punctuation or currency signs, number words as digits."""
    text = text.lower().replace("$", " ").replace("-", " ")
    text = re.sub(r"(\d),(\d)", r"\1\2", text)
    text = re.sub(r"(\d)\.00\b", r"\1", text)
    words = re.findall(r"[a-z]+|\d+", text)
    return " ".join(_numbers_to_digits(words))


def phrase_said(phrase: str, agent_text: str) -> bool:
    target = normalize_phrase(phrase)
    return f" {target} " in f" {normalize_phrase(agent_text)} "


def same_instant(a: datetime, b: datetime) -> bool:
    return a == b  # aware datetimes compare as instants
