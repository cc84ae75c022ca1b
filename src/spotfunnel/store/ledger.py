"""The booking ledger: the one place bookings change, with the outbox jobs they cause, in one transaction."""
from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from datetime import date, datetime, timezone
from typing import TYPE_CHECKING, Any, Literal

import phonenumbers
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from spotfunnel.business import TenantProfile
from spotfunnel.store import outbox
from spotfunnel.store.access import ChangeRefused, Requester, masked_number
from spotfunnel.store.models import Booking
from spotfunnel.store.slots import Busy, SlotRules, require_aware

if TYPE_CHECKING:
    from spotfunnel.clock import Clock
    from spotfunnel.store.db import Database

SMS_CONFIRMATION = "sms.confirmation"
Action = Literal["booked", "rescheduled", "cancelled"]


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


class SeedBooking(BaseModel):
    """A booking present before a scenario's call (`existing_bookings`); `service` or `service_id`."""

    model_config = ConfigDict(populate_by_name=True)

    name: str
    phone: str
    service_id: str = Field(alias="service")
    start: datetime


class SlotUnavailable(Exception):
    def __init__(self, check: SlotCheck) -> None:
        super().__init__(f"slot unavailable: {check.reason}")
        self.check = check


class BookingNotFound(Exception):
    pass


def normalize_phone(raw: str, region: str | None = "US") -> str:
    """A phone number in E.164 (`+14155550100`); raises ValueError when it is not a valid number."""
    try:
        parsed = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"not a phone number: {raw!r} ({exc})") from exc
    if not phonenumbers.is_valid_number(parsed):
        raise ValueError(f"not a valid phone number: {raw!r}")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


class BookingLedger:
    """Bookings of one tenant. Every write also enqueues its SMS confirmation job (outbox), atomically.

    All methods are async; the database work runs in a worker thread.
    """

    def __init__(
        self, db: "Database", profile: TenantProfile, now: "Clock", *, alternatives_each_side: bool = False
    ) -> None:
        self.db = db
        self.alternatives_each_side = alternatives_each_side
        self.profile = profile
        self.clock = now
        self.rules = SlotRules(profile)
        self._region = _region_of(profile.phone)

    @property
    def tenant_id(self) -> str:
        return self.profile.id

    async def check(self, service_id: str, start: datetime) -> SlotCheck:
        require_aware(start)
        self.profile.service(service_id)
        return await self.db.run(lambda s: self._check_in(s, service_id, start), write=False)

    async def book(
        self, *, name: str, phone: str, service_id: str, start: datetime, call_id: str, trace_id: str = ""
    ) -> BookingRecord:
        """Writes the booking and an `sms.confirmation` outbox job; raises SlotUnavailable.

        Idempotent per (call_id, service_id, start): repeating it returns the same booking."""
        require_aware(start)
        service = self.profile.service(service_id)
        e164 = normalize_phone(phone, self._region)
        # The tenant is in the key and the lookup: a repeat returns this tenant's booking, never
        # another tenant's that happens to share a call id (ids a caller's provider chose, once).
        key = f"book:{self.tenant_id}:{call_id}:{service_id}:{start.astimezone(timezone.utc).isoformat()}"

        def _tx(session: Session) -> BookingRecord:
            self._lock_tenant(session)  # before the key lookup, so a concurrent twin sees our row
            existing = session.scalar(
                select(Booking).where(Booking.tenant_id == self.tenant_id, Booking.idempotency_key == key)
            )
            if existing is not None:
                return self._record(existing)
            check = self._check_in(session, service_id, start, lock=True)
            if not check.ok:
                raise SlotUnavailable(check)
            booking = Booking(
                tenant_id=self.tenant_id, name=name.strip(), phone=e164, service_id=service.id,
                start_utc=start, end_utc=start + self.rules.duration(service_id), status="active",
                created_by_call=call_id, idempotency_key=key,
            )
            session.add(booking)
            session.flush()
            self._enqueue_sms(session, booking, "booked", f"sms:{key}", trace_id)
            return self._record(booking)

        return await self.db.run(_tx)

    async def find_upcoming(self, phone: str) -> list[BookingRecord]:
        """Active bookings for this phone that start after now, soonest first."""
        e164 = normalize_phone(phone, self._region)
        now = self.clock.now()

        def _q(session: Session) -> list[BookingRecord]:
            rows = session.scalars(
                self._active_query().where(Booking.phone == e164, Booking.start_utc > now).order_by(Booking.start_utc)
            )
            return [self._record(b) for b in rows]

        return await self.db.run(_q, write=False)

    async def find_own(self, by: Requester) -> list[BookingRecord]:
        """The upcoming bookings under the requester's own caller ID; none on a call without one."""
        return await self.find_upcoming(by.caller_phone) if by.caller_phone else []

    async def find_proven(self, phone: str, *, name: str, day: date) -> list[BookingRecord]:
        """Upcoming active bookings under `phone` whose name and local day are both the ones given.

        For a caller on another number: nothing about that number's other bookings comes back,
        and no answer says whether the number has any."""
        proof = Requester(caller_phone=None, name=name, day=day)
        return [b for b in await self.find_upcoming(phone) if proof.proves(b.name, b.start.date())]

    async def reschedule(
        self, booking_id: str, new_start: datetime, *, by: Requester, call_id: str, trace_id: str = ""
    ) -> BookingRecord:
        """Moves an active booking (its own slot does not count as taken) and enqueues its SMS; atomic.

        Raises ChangeRefused when `by` is neither the booking's number nor proves its name and day."""
        require_aware(new_start, "new_start")

        def _tx(session: Session) -> BookingRecord:
            self._lock_tenant(session)
            booking = self._get(session, booking_id)
            self._authorize(booking, by)
            if booking.status != "active":
                raise BookingNotFound(f"booking {booking_id} is cancelled")
            if booking.start_utc == new_start:
                return self._record(booking)  # already there: a repeat of this change
            check = self._check_in(session, booking.service_id, new_start, exclude_id=booking.id, lock=True)
            if not check.ok:
                raise SlotUnavailable(check)
            booking.start_utc = new_start
            booking.end_utc = new_start + self.rules.duration(booking.service_id)
            session.flush()
            key = f"sms:reschedule:{call_id}:{booking.id}:{new_start.astimezone(timezone.utc).isoformat()}"
            self._enqueue_sms(session, booking, "rescheduled", key, trace_id, by=by)
            return self._record(booking)

        return await self.db.run(_tx)

    async def cancel(self, booking_id: str, *, by: Requester, call_id: str, trace_id: str = "") -> BookingRecord:
        """Cancels a booking and enqueues its SMS, atomically; cancelling twice changes nothing.

        Raises ChangeRefused when `by` is neither the booking's number nor proves its name and day."""

        def _tx(session: Session) -> BookingRecord:
            booking = self._get(session, booking_id)
            self._authorize(booking, by)
            if booking.status == "cancelled":
                return self._record(booking)
            booking.status = "cancelled"
            session.flush()
            self._enqueue_sms(session, booking, "cancelled", f"sms:cancel:{booking.id}", trace_id, by=by)
            return self._record(booking)

        return await self.db.run(_tx)

    async def active(self) -> list[BookingRecord]:
        """All active bookings of the tenant, soonest first."""

        def _q(session: Session) -> list[BookingRecord]:
            return [self._record(b) for b in session.scalars(self._active_query().order_by(Booking.start_utc))]

        return await self.db.run(_q, write=False)

    async def get(self, booking_id: str) -> BookingRecord:
        """One booking of this tenant, active or cancelled; raises BookingNotFound."""
        return await self.db.run(lambda s: self._record(self._get(s, booking_id)), write=False)

    async def seed(self, bookings: Iterable[SeedBooking | Mapping[str, Any]]) -> list[BookingRecord]:
        """Writes bookings that exist before a call (scenario `existing_bookings`): no rule check, no SMS.

        Idempotent: seeding the same booking again returns the stored one."""
        seeds = [b if isinstance(b, SeedBooking) else SeedBooking.model_validate(dict(b)) for b in bookings]

        def _tx(session: Session) -> list[BookingRecord]:
            return [self._record(self._seed_one(session, seed)) for seed in seeds]

        return await self.db.run(_tx)

    # -- inside a transaction -------------------------------------------------------------------------

    def _seed_one(self, session: Session, seed: SeedBooking) -> Booking:
        start = require_aware(seed.start)
        e164 = normalize_phone(seed.phone, self._region)
        key = f"seed:{self.tenant_id}:{e164}:{seed.service_id}:{start.astimezone(timezone.utc).isoformat()}"
        existing = session.scalar(select(Booking).where(Booking.idempotency_key == key))
        if existing is not None:
            return existing
        booking = Booking(
            tenant_id=self.tenant_id, name=seed.name, phone=e164, service_id=self.profile.service(seed.service_id).id,
            start_utc=start, end_utc=start + self.rules.duration(seed.service_id), status="active",
            created_by_call="seed", idempotency_key=key,
        )
        session.add(booking)
        session.flush()
        return booking

    def _check_in(
        self, session: Session, service_id: str, start: datetime, *, exclude_id: str | None = None, lock: bool = False
    ) -> SlotCheck:
        now = self.clock.now()
        busy = self._busy(session, *self.rules.window(start, now), exclude_id=exclude_id, lock=lock)
        reason = self.rules.violation(service_id, start, now)
        if reason is None and self.rules.is_taken(start, start + self.rules.duration(service_id), busy):
            reason = "taken"
        if reason is None:
            return SlotCheck(ok=True)
        alternatives = self.rules.alternatives(service_id, start, now, busy, each_side=self.alternatives_each_side)
        return SlotCheck(ok=False, reason=reason, alternatives=alternatives)

    def _busy(self, session: Session, lo: datetime, hi: datetime, *, exclude_id: str | None, lock: bool) -> list[Busy]:
        query = self._active_query().where(Booking.start_utc < hi, Booking.end_utc > lo)
        if exclude_id is not None:
            query = query.where(Booking.id != exclude_id)
        if lock and self.db.is_postgres:
            query = query.with_for_update()
        return [Busy(b.start_utc, b.end_utc) for b in session.scalars(query)]

    def _authorize(self, booking: Booking, by: Requester) -> None:
        """The rule itself, inside the write: the booked number, or the booking's own name and day."""
        if by.owns(booking.phone):
            return
        if not by.proves(booking.name, booking.start_utc.astimezone(self.rules.tz).date()):
            raise ChangeRefused(f"booking {booking.id} was not booked under the caller's number and the proof does not match")

    def _lock_tenant(self, session: Session) -> None:
        """Serializes booking writes of this tenant. SQLite: BEGIN IMMEDIATE already holds the write lock;
        PostgreSQL: a transaction-scoped advisory lock (row locks cannot stop a phantom insert)."""
        if self.db.is_postgres:
            digest = hashlib.blake2b(f"bookings:{self.tenant_id}".encode(), digest_size=8).digest()
            session.execute(select(func.pg_advisory_xact_lock(int.from_bytes(digest, "big", signed=True))))

    def _get(self, session: Session, booking_id: str) -> Booking:
        query = select(Booking).where(Booking.tenant_id == self.tenant_id, Booking.id == booking_id)
        if self.db.is_postgres:
            query = query.with_for_update()
        booking = session.scalar(query)
        if booking is None:
            raise BookingNotFound(f"tenant {self.tenant_id!r} has no booking {booking_id!r}")
        return booking

    def _active_query(self) -> Any:
        return select(Booking).where(Booking.tenant_id == self.tenant_id, Booking.status == "active")

    def _enqueue_sms(
        self, session: Session, booking: Booking, action: Action, key: str, trace_id: str, by: Requester | None = None
    ) -> None:
        service = self.profile.service(booking.service_id)
        # A change made from another line tells the booked number so, with that line's last digits
        # only ("" when the call had no caller ID): the owner learns of it, the outbox keeps no number.
        changed_elsewhere = by is not None and not by.owns(booking.phone)
        payload = {
            "booking_id": booking.id,
            "tenant_id": self.tenant_id,
            "to": booking.phone,
            "name": booking.name,
            "service_id": service.id,
            "service": service.name,
            "start_local": booking.start_utc.astimezone(self.rules.tz).isoformat(),
            "tenant_name": self.profile.name,
            "tenant_phone": self.profile.phone,
            "action": action,
        }
        if changed_elsewhere:
            payload["changed_from_last4"] = masked_number(by.caller_phone if by else None)
        outbox.enqueue(
            session, tenant_id=self.tenant_id, kind=SMS_CONFIRMATION, payload=payload,
            idempotency_key=key, trace_id=trace_id,
        )

    def _record(self, b: Booking) -> BookingRecord:
        return BookingRecord(
            id=b.id, tenant_id=b.tenant_id, name=b.name, phone=b.phone, service_id=b.service_id,
            start=b.start_utc.astimezone(self.rules.tz), end=b.end_utc.astimezone(self.rules.tz),
            status="cancelled" if b.status == "cancelled" else "active",
        )


def _region_of(phone: str) -> str | None:
    try:
        return phonenumbers.region_code_for_number(phonenumbers.parse(phone, "US")) or "US"
    except phonenumbers.NumberParseException:
        return "US"
