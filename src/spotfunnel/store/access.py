"""Who may change a booking: its own number, or a caller on another line who proves name and day."""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import date

__all__ = ["ChangeRefused", "Requester", "masked_number", "same_name"]


@dataclass(frozen=True)
class Requester:
    """The party asking to change a booking, as the server knows it.

    `caller_phone` is the call's caller ID from the telephony side (E.164), never a number the
    caller said; None when the call has none (a browser call, a withheld number), which matches
    no booking. `name` and `day` are the proof a caller on another number gave: the name on the
    booking and its local day, both as the caller said them."""

    caller_phone: str | None
    name: str | None = None
    day: date | None = None

    def owns(self, booked_phone: str) -> bool:
        """Whether the call comes from the number the booking was made under."""
        return self.caller_phone is not None and self.caller_phone == booked_phone

    def proves(self, booked_name: str, booked_day: date) -> bool:
        """Whether the proof given names this booking: the same name and the same local day."""
        return self.name is not None and self.day == booked_day and same_name(self.name, booked_name)


class ChangeRefused(Exception):
    """A change asked from another number without matching proof; nothing was changed."""


def _name_words(name: str) -> list[str]:
    plain = unicodedata.normalize("NFKD", name)
    plain = "".join(c for c in plain if not unicodedata.combining(c)).casefold()
    return re.findall(r"[a-z0-9]+", plain.replace("'", ""))


def same_name(said: str, booked: str) -> bool:
    """Names equal up to case, accents, punctuation and spacing ("maria lópez" is "Maria Lopez").

    Deliberately no fuzzy match: the name is proof, and a near miss goes to a person instead."""
    words = _name_words(said)
    return bool(words) and words == _name_words(booked)


def masked_number(phone: str | None) -> str:
    """The last four digits of a number for a message to someone else ("" when there is no number)."""
    digits = re.sub(r"\D", "", phone or "")
    return digits[-4:] if len(digits) >= 4 else ""
