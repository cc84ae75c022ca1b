"""SQLAlchemy 2 models of every persisted row; each row carries its tenant, datetimes are aware UTC,
call content (names, numbers, messages, transcripts) is typed as such (store/content.py)."""
from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import JSON, DateTime, Dialect, Float, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from spotfunnel.store.content import CallContent, CallContentJSON, CallContentText

BOOKING_STATUSES = ("active", "cancelled")
JOB_STATUSES = ("pending", "running", "done", "dead")
CALL_STATUSES = ("open", "ended", "abandoned")
PROVIDER_CALL_ID_MAX = 128  # Twilio sids are 34 characters; a SIP Call-ID is the caller's choice, so it is capped


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def new_id() -> str:
    return str(uuid.uuid4())


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend (SQLite stores naive UTC text; PG timestamptz)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()} given; store timezone-aware datetimes only")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON, list[Any]: JSON}


class Booking(Base):
    __tablename__ = "bookings"
    __table_args__ = (
        Index("ix_bookings_tenant_status_start", "tenant_id", "status", "start_utc"),
        Index("ix_bookings_tenant_phone", "tenant_id", "phone"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(CallContent(200))
    phone: Mapped[str] = mapped_column(CallContent(32))
    service_id: Mapped[str] = mapped_column(String(64))
    start_utc: Mapped[datetime]
    end_utc: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(16), default="active")
    created_by_call: Mapped[str] = mapped_column(String(128), default="")
    idempotency_key: Mapped[str] = mapped_column(String(255), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class OutboxJob(Base):
    __tablename__ = "outbox_jobs"
    __table_args__ = (
        Index("ix_outbox_jobs_status_next", "status", "next_attempt_at"),
        Index("ix_outbox_jobs_tenant_status", "tenant_id", "status"),
        Index("ix_outbox_jobs_tenant_ordering", "tenant_id", "ordering_key", "status"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(CallContentJSON)
    idempotency_key: Mapped[str] = mapped_column(String(255), unique=True)
    trace_id: Mapped[str] = mapped_column(String(64), default="")
    # Jobs of one tenant with the same key run strictly in creation order (workflows/worker.py); None: unordered.
    ordering_key: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=5)
    # None means "due now": the job is runnable whatever the worker's clock says.
    next_attempt_at: Mapped[datetime | None]
    claimed_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]


class SmsMessage(Base):
    __tablename__ = "sms_messages"
    __table_args__ = (Index("ix_sms_messages_tenant_created", "tenant_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(String(64))
    to: Mapped[str] = mapped_column(CallContent(32))
    body: Mapped[str] = mapped_column(CallContentText)
    idempotency_key: Mapped[str] = mapped_column(String(255), unique=True)
    provider: Mapped[str] = mapped_column(String(32), default="sink")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class CallReport(Base):
    __tablename__ = "call_reports"
    __table_args__ = (Index("ix_call_reports_tenant_started", "tenant_id", "started_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(String(64))
    call_id: Mapped[str] = mapped_column(String(128), unique=True)  # ours (a UUID), never the provider's
    provider_call_id: Mapped[str] = mapped_column(String(PROVIDER_CALL_ID_MAX), default="")
    direction: Mapped[str] = mapped_column(String(16), default="inbound")
    caller_id: Mapped[str] = mapped_column(CallContent(32), default="")
    outcome: Mapped[str] = mapped_column(String(32), default="")
    started_at: Mapped[datetime]
    duration_s: Mapped[float] = mapped_column(Float, default=0.0)
    transcript: Mapped[list[Any]] = mapped_column(CallContentJSON)
    turn_latencies_ms: Mapped[list[Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class CallRow(Base):
    """One call while it runs and after: written at its start, its heard transcript kept current.

    A row still `open` when its server starts again was cut off by a crash: it is closed as
    `abandoned` with what was heard, and its report enqueued (store/calls.py).
    """

    __tablename__ = "calls"
    __table_args__ = (
        Index("ix_calls_status_owner", "status", "owner"),
        Index("ix_calls_tenant_provider", "tenant_id", "provider_call_id"),
    )

    id: Mapped[str] = mapped_column(String(128), primary_key=True)  # our call id (a UUID; eval names its own)
    tenant_id: Mapped[str] = mapped_column(String(64))
    provider_call_id: Mapped[str] = mapped_column(String(PROVIDER_CALL_ID_MAX), default="")
    caller_id: Mapped[str] = mapped_column(CallContent(32), default="")
    direction: Mapped[str] = mapped_column(String(16), default="inbound")
    owner: Mapped[str] = mapped_column(String(128), default="")  # the server running the call
    trace_id: Mapped[str] = mapped_column(String(64), default="")
    status: Mapped[str] = mapped_column(String(16), default="open")
    outcome: Mapped[str] = mapped_column(String(32), default="")
    heard: Mapped[list[Any]] = mapped_column(CallContentJSON)
    started_at: Mapped[datetime]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[datetime | None]
