"""Shared test helpers for store/workflows tests: the demo tenant profile, clocks, a fresh database."""
from __future__ import annotations

from datetime import datetime, time
from zoneinfo import ZoneInfo

from spotfunnel.business import OpeningHours, Service, TenantProfile
from spotfunnel.clock import FrozenClock
from spotfunnel.store.db import Database
from spotfunnel.store.ledger import BookingLedger

LA = ZoneInfo("America/Los_Angeles")


def la(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    """A local Los Angeles wall time as an aware datetime."""
    return datetime(y, mo, d, h, mi, tzinfo=LA)


def demo_profile() -> TenantProfile:
    week = OpeningHours(open=time(9), close=time(18))
    return TenantProfile(
        id="maple-street-salon",
        name="Maple Street Salon",
        phone="+14155550100",
        address="1200 Maple Street, San Francisco",
        timezone="America/Los_Angeles",
        hours={d: week for d in ("tuesday", "wednesday", "thursday", "friday")}
        | {"saturday": OpeningHours(open=time(9), close=time(16))},
        slot_minutes=15,
        capacity=1,
        handoff_phone="+14155550199",
        services=[
            Service(id="haircut", name="haircut", minutes=45, price=45),
            Service(id="color", name="hair color", minutes=90, price=120),
            Service(id="beard-trim", name="beard trim", minutes=20, price=20),
            Service(id="blowout", name="blowout", minutes=30, price=35),
        ],
    )


def make_ledger(at: datetime, db: Database | None = None) -> tuple[Database, BookingLedger, FrozenClock]:
    db = db or Database.memory()
    clock = FrozenClock(at)
    return db, BookingLedger(db, demo_profile(), clock), clock
