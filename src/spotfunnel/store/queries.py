"""Read-only queries for reports and tests: messages sent, call reports, outbox jobs."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from spotfunnel.store.models import Booking, CallReport, OutboxJob, SmsMessage

if TYPE_CHECKING:
    from spotfunnel.store.db import Database


@dataclass(frozen=True)
class SmsView:
    id: str
    tenant_id: str
    to: str
    body: str
    idempotency_key: str
    provider: str
    created_at: datetime


@dataclass(frozen=True)
class CallReportView:
    id: str
    tenant_id: str
    call_id: str
    caller_id: str
    outcome: str
    started_at: datetime
    duration_s: float
    transcript: list[dict[str, Any]]
    turn_latencies_ms: list[float]
    created_at: datetime


@dataclass(frozen=True)
class JobSummary:
    id: str
    tenant_id: str
    kind: str
    status: str
    attempts: int
    idempotency_key: str
    payload: dict[str, Any]
    last_error: str | None


async def sms_sent(db: "Database", tenant_id: str) -> list[SmsView]:
    """Every SMS stored for the tenant, oldest first."""

    def _q(session: Session) -> list[SmsView]:
        rows = session.scalars(
            select(SmsMessage).where(SmsMessage.tenant_id == tenant_id).order_by(SmsMessage.created_at, SmsMessage.id)
        )
        return [
            SmsView(m.id, m.tenant_id, m.to, m.body, m.idempotency_key, m.provider, m.created_at) for m in rows
        ]

    return await db.run(_q, write=False)


async def call_report(db: "Database", call_id: str) -> CallReportView | None:
    """The end-of-call report of one call, or None when it has not been written (yet)."""

    def _q(session: Session) -> CallReportView | None:
        r = session.scalar(select(CallReport).where(CallReport.call_id == call_id))
        if r is None:
            return None
        return CallReportView(
            r.id, r.tenant_id, r.call_id, r.caller_id, r.outcome, r.started_at, r.duration_s,
            list(r.transcript), list(r.turn_latencies_ms), r.created_at,
        )

    return await db.run(_q, write=False)


async def jobs(db: "Database", tenant_id: str | None = None, *, kind: str | None = None) -> list[JobSummary]:
    """Outbox jobs (optionally of one tenant and kind), oldest first."""

    def _q(session: Session) -> list[JobSummary]:
        query = select(OutboxJob).order_by(OutboxJob.created_at, OutboxJob.id)
        if tenant_id is not None:
            query = query.where(OutboxJob.tenant_id == tenant_id)
        if kind is not None:
            query = query.where(OutboxJob.kind == kind)
        return [
            JobSummary(j.id, j.tenant_id, j.kind, j.status, j.attempts, j.idempotency_key, dict(j.payload), j.last_error)
            for j in session.scalars(query)
        ]

    return await db.run(_q, write=False)


@dataclass(frozen=True)
class BookingView:
    id: str
    tenant_id: str
    name: str
    phone: str
    service_id: str
    start_utc: datetime
    end_utc: datetime
    status: str


async def bookings_made_by_call(db: "Database", tenant_id: str, call_id: str) -> list[BookingView]:
    """The bookings one call created (any status now), oldest first."""

    def _q(session: Session) -> list[BookingView]:
        rows = session.scalars(
            select(Booking).where(Booking.tenant_id == tenant_id, Booking.created_by_call == call_id)
            .order_by(Booking.created_at, Booking.id)
        )
        return [BookingView(b.id, b.tenant_id, b.name, b.phone, b.service_id, b.start_utc, b.end_utc, b.status)
                for b in rows]

    return await db.run(_q, write=False)
