"""The facts of a tenant's business (hours, services, numbers): shared by conversation and store."""
from __future__ import annotations

from datetime import time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from pydantic import BaseModel, Field, field_validator, model_validator

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
MAX_NUMBER_CHARS = 64  # longer than any written phone number: refused before it is parsed


def e164(number: str) -> str | None:
    """`number` in E.164 form ('+14155550100'), or None when it is not a possible international number.

    Written forms ('+1 (415) 555-0100', 'tel:+14155550100') normalise to the same string, so two
    numbers are the same line exactly when their `e164` forms are equal. Without a leading '+' (and
    its country code) there is no telling which country is meant, so '0', '100' or a national
    '4155550100' is not a number here.
    """
    if not number or len(number) > MAX_NUMBER_CHARS:
        return None
    try:
        parsed = phonenumbers.parse(number.strip(), None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(parsed):
        return None
    return str(phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164))


class OpeningHours(BaseModel):
    """Opening and closing time for one weekday (local time)."""

    open: time
    close: time

    @model_validator(mode="after")
    def _ordered(self) -> "OpeningHours":
        if self.close <= self.open:
            raise ValueError(f"closing time {self.close} must be after opening time {self.open}")
        return self


class Service(BaseModel):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    name: str
    minutes: int = Field(gt=0, le=600)
    price: int = Field(ge=0, description="price in whole dollars")
    synonyms: list[str] = Field(default_factory=list)


class TenantProfile(BaseModel):
    """One business: identity, numbers, time zone, hours, services, capacity."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    name: str
    phone: str
    address: str
    timezone: str
    hours: dict[str, OpeningHours] = Field(description="weekday name -> hours; missing days are closed")
    slot_minutes: int = Field(default=15, gt=0, le=120)
    capacity: int = Field(default=1, ge=1)
    handoff_phone: str
    services: list[Service] = Field(min_length=1)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r}; use an IANA name such as 'America/Los_Angeles'")
        return v

    @field_validator("hours")
    @classmethod
    def _known_days(cls, v: dict[str, OpeningHours]) -> dict[str, OpeningHours]:
        bad = [d for d in v if d not in WEEKDAYS]
        if bad:
            raise ValueError(f"unknown weekday(s) {bad}; use {', '.join(WEEKDAYS)}")
        return v

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def service(self, service_id: str) -> Service:
        for s in self.services:
            if s.id == service_id:
                return s
        raise KeyError(f"tenant {self.id!r} has no service {service_id!r}")

    def hours_on(self, weekday: int) -> OpeningHours | None:
        """Hours for a weekday (0 = Monday), or None when closed."""
        return self.hours.get(WEEKDAYS[weekday])
