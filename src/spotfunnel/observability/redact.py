"""Call content out of the logs: phone numbers masked to their last 4 digits, transcripts dropped at INFO."""
from __future__ import annotations

import re
from collections.abc import Mapping, MutableMapping
from typing import Any

import phonenumbers

# Events at these levels keep everything: a developer asked for the call's content.
UNREDACTED_LEVELS = frozenset({"debug", "notset"})
# Fields that carry what someone said: dropped at INFO and above (their length is kept).
TRANSCRIPT_FIELDS = frozenset({
    "text", "transcript", "heard", "said", "utterance", "words", "history", "body", "message_body", "speech",
})
# Fields that are ours and never call content: left untouched (a timestamp is digits, not a phone).
PASS_FIELDS = frozenset({"timestamp", "level", "logger", "logger_name", "_record", "_from_structlog"})
MAX_DEPTH = 4  # nested payloads deeper than this are replaced, not walked
MASK = "***"

_DIGIT_WORDS = {"zero": "0", "oh": "0", "o": "0", "one": "1", "two": "2", "three": "3", "four": "4",
                "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9"}
_DIGIT_WORD = r"(?:zero|oh|o|one|two|three|four|five|six|seven|eight|nine)"
# Seven or more digit words in a row ("four one five, five five five, zero one six six"): a spoken number.
_SPOKEN = re.compile(rf"\b{_DIGIT_WORD}(?:[\s,.-]+{_DIGIT_WORD}){{6,}}\b", re.IGNORECASE)
# Anything that starts with + and runs on in digits, or 7+ digits with separators: a written number.
_WRITTEN = re.compile(r"(?<![\w*])\+?\(?\d(?:[\s().-]{0,2}\d){6,}(?!\w)")
_SEVEN_DIGITS = re.compile(r"(?:\d\D{0,3}){7}")


def mask_number(digits: str) -> str:
    """'+14155550166' -> '***0166': only the last 4 digits stay."""
    only = re.sub(r"\D", "", digits)
    return MASK + only[-4:]


def mask_phone_numbers(text: str) -> str:
    """Every phone number in `text` (E.164, formatted, national, spoken) masked to its last 4 digits."""
    if not _SEVEN_DIGITS.search(text) and not _SPOKEN.search(text):
        return text  # the common case, checked cheaply
    text = _SPOKEN.sub(lambda m: mask_number("".join(_DIGIT_WORDS[w.lower()]
                                                     for w in re.findall(r"[A-Za-z]+", m.group()))), text)
    found = [(m.start, m.end) for m in phonenumbers.PhoneNumberMatcher(text, "US", phonenumbers.Leniency.POSSIBLE)
             if _standalone(text, m.start, m.end)]
    for start, end in reversed(found):
        text = text[:start] + mask_number(text[start:end]) + text[end:]
    return _WRITTEN.sub(lambda m: mask_number(m.group()) if _is_phone_like(m.group()) else m.group(), text)


def _standalone(text: str, start: int, end: int) -> bool:
    """Not a piece of a longer word: the digits inside a UUID or a hex trace id are not a phone number."""
    before = text[start - 1] if start > 0 else " "
    after = text[end] if end < len(text) else " "
    return not (before.isalnum() or after.isalnum())


def _is_phone_like(candidate: str) -> bool:
    """A digit run with a +, or 7 to 15 digits that is not an ISO date or time (2026-12-11, 10:15:00)."""
    digits = re.sub(r"\D", "", candidate)
    if candidate.startswith("+"):
        return len(digits) >= 7
    return 7 <= len(digits) <= 15 and not re.fullmatch(r"\d{4}-\d{2}-\d{2}.*", candidate.strip())


def redact_value(value: Any, depth: int = 0) -> Any:
    """`value` with phone numbers masked in every string inside it (dicts, lists and tuples walked)."""
    if isinstance(value, str):
        return mask_phone_numbers(value)
    if depth >= MAX_DEPTH:
        return value if isinstance(value, (int, float, bool, type(None))) else "[nested]"
    if isinstance(value, Mapping):
        return {k: _redact_field(str(k), v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_value(v, depth + 1) for v in value]
    if isinstance(value, BaseException):
        return mask_phone_numbers(f"{type(value).__name__}: {value}")
    return value


def _redact_field(key: str, value: Any, depth: int) -> Any:
    if key in TRANSCRIPT_FIELDS and value not in (None, ""):
        return f"[{len(str(value))} chars dropped]"
    return redact_value(value, depth)


def redact_call_content(_logger: Any, method_name: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: at INFO and above, phone numbers masked and transcript fields dropped.

    Runs on structlog events and stdlib records alike (observability/logging.py), before rendering,
    so no renderer, file or log shipper ever sees the raw content. DEBUG keeps it all.
    """
    level = str(event_dict.get("level") or method_name).lower()
    if level in UNREDACTED_LEVELS:
        return event_dict
    for key, value in list(event_dict.items()):
        if key in PASS_FIELDS:
            continue
        event_dict[key] = redact_value(value) if key == "event" else _redact_field(key, value, 0)
    return event_dict
