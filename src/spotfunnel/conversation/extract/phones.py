"""Phone numbers from digits or spoken digits ("four one five, double five ...") as E.164."""
from __future__ import annotations

import re

import phonenumbers

from spotfunnel.conversation.extract.text import fold

_DIGIT_WORDS = {
    "zero": "0", "oh": "0", "o": "0", "one": "1", "two": "2", "three": "3", "four": "4",
    "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9",
}
_REPEATS = {"double": 2, "triple": 3}
_GROUPS = {"hundred": "00", "thousand": "000"}


def spoken_digits(text: str) -> str:
    """The digits said in `text`, in order: "double five, oh one" -> "5501"."""
    digits: list[str] = []
    repeat = 1
    for token in re.findall(r"[a-z]+|\d+", fold(text).replace("-", " ")):
        if token.isdigit():
            digits.append(token[0] * (repeat - 1) + token)
            repeat = 1
        elif token in _DIGIT_WORDS:
            digits.append(_DIGIT_WORDS[token] * repeat)
            repeat = 1
        elif token in _REPEATS:
            repeat = _REPEATS[token]
        elif token in _GROUPS and digits:
            digits.append(_GROUPS[token])
    return "".join(digits)


def parse_phone(text: str, region: str = "US") -> str | None:
    """The valid phone number in `text` as E.164, or None."""
    digits = spoken_digits(text)
    if len(digits) < 7:
        return None
    plus = "+" if "+" in text or (len(digits) > 11 and region != "US") else ""
    try:
        number = phonenumbers.parse(plus + digits, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def is_valid_e164(phone: str) -> bool:
    """Whether `phone` is a valid number in E.164 form."""
    try:
        return phonenumbers.is_valid_number(phonenumbers.parse(phone, None))
    except phonenumbers.NumberParseException:
        return False


def last_digits(phone: str, count: int = 4) -> str:
    """The last `count` digits of `phone`, spaced for speech: "0 1 3 3"."""
    return " ".join(re.sub(r"\D", "", phone)[-count:])


def spoken_phone(phone: str) -> str:
    """A number as it is read out, in national groups: "+14155550100" -> "4 1 5, 5 5 5, 0 1 0 0"."""
    try:
        national = phonenumbers.format_number(phonenumbers.parse(phone, None), phonenumbers.PhoneNumberFormat.NATIONAL)
    except phonenumbers.NumberParseException:
        return phone
    return ", ".join(" ".join(group) for group in re.findall(r"\d+", national))
