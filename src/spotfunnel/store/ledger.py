"""The booking ledger: the one place bookings change, with the outbox jobs they cause, in one transaction."""
from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel

from spotfunnel.business import TenantProfile


class BookingRecord(BaseModel):
    id: str
    tenant_id: str
    name: str
    phone: str  # E.164
    service_id: str
    start: datetime  # timezone-aware
    end: datetime
    status: Literal["active", "cancelled"]


class SlotCheck(BaseModel):
    """Whether a service can start at an instant; when not, why and the two nearest free starts."""

    ok: bool
    reason: Literal["closed", "taken", "past", "ends-after-closing", "off-grid"] | None = None
    alternatives: list[datetime] = []


class SlotUnavailable(Exception):
    def __init__(self, check: SlotCheck) -> None:
        super().__init__(f"slot unavailable: {check.reason}")
        self.check = check


class BookingNotFound(Exception):
    pass


class BookingLedger:
    """Bookings of one tenant. Every write also enqueues its SMS confirmation job (outbox), atomically.

    All methods are async; the database work runs in a worker thread.
    """

    def __init__(self, db: "Database", profile: TenantProfile, now: "Clock") -> None:  # noqa: F821
        raise NotImplementedError

    async def check(self, service_id: str, start: datetime) -> SlotCheck: ...

    async def book(
        self, *, name: str, phone: str, service_id: str, start: datetime, call_id: str, trace_id: str = ""
    ) -> BookingRecord:
        """Writes the booking and an `sms.confirmation` outbox job; raises SlotUnavailable.

        Idempotent per (call_id, service_id, start): repeating it returns the same booking."""
        ...

    async def find_upcoming(self, phone: str) -> list[BookingRecord]:
        """Active bookings for this phone that start after now, soonest first."""
        ...

    async def reschedule(self, booking_id: str, new_start: datetime, *, call_id: str, trace_id: str = "") -> BookingRecord: ...

    async def cancel(self, booking_id: str, *, call_id: str, trace_id: str = "") -> BookingRecord: ...

    async def active(self) -> list[BookingRecord]: ...
