"""Transcript normalisation shared by the extractors: plain ASCII, lower case, number words as digits."""
from __future__ import annotations

import re
import unicodedata

UNITS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13,
    "fourteen": 14, "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19,
}
TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50}
ORDINALS = {
    "first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7,
    "eighth": 8, "ninth": 9, "tenth": 10, "eleventh": 11, "twelfth": 12, "thirteenth": 13,
    "fourteenth": 14, "fifteenth": 15, "sixteenth": 16, "seventeenth": 17, "eighteenth": 18,
    "nineteenth": 19, "twentieth": 20, "thirtieth": 30,
}
FILLERS = frozenset({"um", "umm", "uh", "uhh", "uhm", "er", "erm", "ah", "hmm", "mm", "mhm", "hm"})
_SUFFIX = {1: "st", 2: "nd", 3: "rd"}


def ascii_fold(text: str) -> str:
    """`text` without accents or typographic quotes ("López" -> "Lopez")."""
    text = text.replace("\u2019", "'").replace("\u2018", "'").replace("\u201c", '"').replace("\u201d", '"')
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def fold(text: str) -> str:
    """Lower-case ASCII with single spaces; keeps digits, letters, apostrophes, colons and slashes."""
    text = ascii_fold(text).lower()
    text = re.sub(r"\b([ap])\.\s?m\b\.?", r"\1m", text)
    text = re.sub(r"[^a-z0-9':/$\s-]", " ", text)
    text = re.sub(r"(?<![a-z0-9])-|-(?![a-z0-9])", " ", text)
    return re.sub(r"\s+", " ", text).strip()


def words(text: str) -> list[str]:
    """The folded words of `text`."""
    return fold(text).split()


def is_noise(text: str) -> bool:
    """True for an empty turn or one made only of hesitation sounds."""
    return all(w.strip("'") in FILLERS for w in words(text))


def _ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else _SUFFIX.get(n % 10, 'th')}"


def numbers_to_digits(text: str) -> str:
    """Folded `text` with number words as digits: "twenty-five" -> "25", "twelfth" -> "12th"."""
    tokens = fold(text).replace("-", " ").split()
    out: list[str] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
        if token in TENS and (nxt in UNITS and UNITS[nxt] < 10) and nxt != "zero":
            out.append(str(TENS[token] + UNITS[nxt]))
            i += 2
            continue
        if token in TENS and nxt in ORDINALS and ORDINALS[nxt] < 10:
            out.append(_ordinal(TENS[token] + ORDINALS[nxt]))
            i += 2
            continue
        if token in UNITS:
            out.append(str(UNITS[token]))
        elif token in TENS:
            out.append(str(TENS[token]))
        elif token in ORDINALS:
            out.append(_ordinal(ORDINALS[token]))
        else:
            out.append(token)
        i += 1
    return " ".join(out)
