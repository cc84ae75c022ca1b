"""The outbox: jobs written in the same transaction as the state change that causes them."""
from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from spotfunnel.store.models import OutboxJob

if TYPE_CHECKING:
    from spotfunnel.store.db import Database

ORDERING_KEY_MAX = 255  # the column's width


def enqueue(
    session: Session,
    *,
    tenant_id: str,
    kind: str,
    payload: dict[str, Any],
    idempotency_key: str,
    trace_id: str = "",
    max_attempts: int = 5,
    run_at: datetime | None = None,
    ordering_key: str | None = None,
) -> str:
    """Adds a pending job inside the caller's transaction and returns its id.

    A job with the same idempotency key already present is kept as is, and its id returned.
    `run_at=None` makes the job due at once, whatever clock the worker runs on. Jobs of one tenant
    with the same `ordering_key` run strictly in the order they were enqueued (a booking's "booked"
    SMS before its "cancelled" one); by default the key is the payload's `ordering_key` or
    `booking_id`, and a job with neither runs in no particular order."""
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
    existing = _find(session, idempotency_key)
    if existing is not None:
        return existing
    job = OutboxJob(
        tenant_id=tenant_id,
        kind=kind,
        payload=dict(payload),
        idempotency_key=idempotency_key,
        trace_id=trace_id,
        status="pending",
        attempts=0,
        max_attempts=max_attempts,
        next_attempt_at=run_at,
        ordering_key=ordering_key[:ORDERING_KEY_MAX] if ordering_key else default_ordering_key(payload),
    )
    try:
        with session.begin_nested():  # a concurrent twin may win the unique key: keep the outer transaction
            session.add(job)
    except IntegrityError:
        existing = _find(session, idempotency_key)
        if existing is None:
            raise
        return existing
    return job.id


def default_ordering_key(payload: dict[str, Any]) -> str | None:
    """The payload's `ordering_key`, else its `booking_id` (jobs about one booking), else None."""
    key = payload.get("ordering_key") or payload.get("booking_id")
    return str(key)[:ORDERING_KEY_MAX] if key else None


async def enqueue_now(
    db: "Database",
    *,
    tenant_id: str,
    kind: str,
    payload: dict[str, Any],
    idempotency_key: str,
    trace_id: str = "",
    max_attempts: int = 5,
    run_at: datetime | None = None,
    ordering_key: str | None = None,
) -> str:
    """Enqueues a standalone job in its own transaction (e.g. the end-of-call `call.report`)."""

    def _write(session: Session) -> str:
        return enqueue(
            session,
            tenant_id=tenant_id,
            kind=kind,
            payload=payload,
            idempotency_key=idempotency_key,
            trace_id=trace_id,
            max_attempts=max_attempts,
            run_at=run_at,
            ordering_key=ordering_key,
        )

    return await db.run(_write)


def _find(session: Session, idempotency_key: str) -> str | None:
    return session.scalar(select(OutboxJob.id).where(OutboxJob.idempotency_key == idempotency_key))
