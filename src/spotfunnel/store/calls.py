"""Call rows: opened when a call starts, its heard transcript kept current, closed with its report enqueued."""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from spotfunnel.store.models import CallRow, utcnow
from spotfunnel.store.outbox import enqueue

if TYPE_CHECKING:
    from spotfunnel.store.db import Database

__all__ = ["CALL_REPORT", "CallView", "OpenCall", "call_by_provider_id", "close_left_open", "finish_call",
           "open_call", "report_key", "report_payload", "save_heard", "server_owner"]

CALL_REPORT = "call.report"
SERVER_ID_ENV = "SPOTFUNNEL_SERVER_ID"
#: an open row of another server not touched for this long is taken as cut off too (that server is gone)
STALE_AFTER = timedelta(hours=2)
HEARD_MAX_ENTRIES = 200  # the newest turns kept on the row; the full transcript goes in the report
HEARD_MAX_CHARS = 2000  # per turn


def server_owner() -> str:
    """Who runs the calls this process opens: SPOTFUNNEL_SERVER_ID, else the host name.

    Several servers on one host over one database must each set their own SPOTFUNNEL_SERVER_ID:
    at start a server closes every row left open under its name.
    """
    return (os.environ.get(SERVER_ID_ENV, "").strip() or socket.gethostname())[:128]


def report_key(tenant_id: str, call_id: str) -> str:
    """The report job's idempotency key: tenant-scoped and built from our own call id."""
    return f"report:{tenant_id}:{call_id}"


@dataclass(frozen=True)
class OpenCall:
    """What is known of a call when it starts."""

    call_id: str  # ours (a UUID)
    tenant_id: str
    provider_call_id: str
    caller_id: str
    direction: str
    started_at: datetime
    trace_id: str = ""


@dataclass(frozen=True)
class CallView:
    call_id: str
    tenant_id: str
    provider_call_id: str
    caller_id: str
    direction: str
    status: str
    outcome: str
    heard: list[dict[str, Any]]
    started_at: datetime
    ended_at: datetime | None


def bounded_heard(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The newest HEARD_MAX_ENTRIES turns, each text cut at HEARD_MAX_CHARS: a row write stays small."""
    out = []
    for entry in entries[-HEARD_MAX_ENTRIES:]:
        entry = dict(entry)
        for name in ("text", "heard"):
            if isinstance(entry.get(name), str):
                entry[name] = entry[name][:HEARD_MAX_CHARS]
        out.append(entry)
    return out


def report_payload(call: OpenCall, *, outcome: str, transcript: list[dict[str, Any]], duration_s: float,
                   turn_latencies_ms: list[float] | None = None, error: str | None = None) -> dict[str, Any]:
    """The `call.report` job's payload (workflows/jobs.py writes it as a call_reports row)."""
    return {
        "call_id": call.call_id, "tenant_id": call.tenant_id, "provider_call_id": call.provider_call_id,
        "caller_id": call.caller_id, "direction": call.direction, "outcome": outcome,
        "started_at": call.started_at.isoformat(), "duration_s": duration_s, "transcript": transcript,
        "turn_latencies_ms": list(turn_latencies_ms or []), "error": error,
    }


async def open_call(db: "Database", call: OpenCall, owner: str) -> None:
    """Write the call's row, status `open`, as it starts."""

    def _write(session: Session) -> None:
        session.add(CallRow(id=call.call_id, tenant_id=call.tenant_id, provider_call_id=call.provider_call_id,
                            caller_id=call.caller_id, direction=call.direction, owner=owner, trace_id=call.trace_id,
                            status="open", outcome="", heard=[], started_at=call.started_at, updated_at=utcnow()))

    await db.run(_write)


async def save_heard(db: "Database", call_id: str, heard: list[dict[str, Any]]) -> None:
    """Replace the open row's heard transcript (one small UPDATE; a closed row is left as is)."""
    entries = bounded_heard(heard)

    def _write(session: Session) -> None:
        session.execute(update(CallRow).where(CallRow.id == call_id, CallRow.status == "open")
                        .values(heard=entries, updated_at=utcnow()))

    await db.run(_write)


async def finish_call(db: "Database", call: OpenCall, payload: dict[str, Any]) -> None:
    """Close the row with its outcome and enqueue the report, in one transaction (outbox)."""

    def _write(session: Session) -> None:
        now = utcnow()
        session.execute(update(CallRow).where(CallRow.id == call.call_id, CallRow.status == "open")
                        .values(status="ended", outcome=str(payload.get("outcome") or ""),
                                heard=bounded_heard(payload.get("transcript") or []), updated_at=now, ended_at=now))
        enqueue(session, tenant_id=call.tenant_id, kind=CALL_REPORT, payload=payload,
                idempotency_key=report_key(call.tenant_id, call.call_id), trace_id=call.trace_id)

    await db.run(_write)


async def close_left_open(db: "Database", owner: str, now: datetime | None = None) -> list[str]:
    """At server start: close as `abandoned` the rows this server left open (it was killed mid-call),
    and any other server's not touched for STALE_AFTER; each gets its report. Returns their call ids."""
    at = now or utcnow()

    def _write(session: Session) -> list[str]:
        rows = session.scalars(select(CallRow).where(
            CallRow.status == "open", or_(CallRow.owner == owner, CallRow.updated_at < at - STALE_AFTER)))
        closed = []
        for row in rows:
            call = OpenCall(row.id, row.tenant_id, row.provider_call_id, row.caller_id, row.direction,
                            row.started_at, row.trace_id)
            duration = max(0.0, (row.updated_at - row.started_at).total_seconds())
            payload = report_payload(call, outcome="abandoned", transcript=list(row.heard), duration_s=duration,
                                     error="the server stopped during the call")
            row.status, row.outcome, row.ended_at = "abandoned", "abandoned", at
            enqueue(session, tenant_id=row.tenant_id, kind=CALL_REPORT, payload=payload,
                    idempotency_key=report_key(row.tenant_id, row.id), trace_id=row.trace_id)
            closed.append(row.id)
        return closed

    return await db.run(_write)


async def call_by_provider_id(db: "Database", tenant_id: str, provider_call_id: str) -> list[CallView]:
    """The calls a provider id names within a tenant, oldest first (a reused SIP Call-ID names several)."""

    def _q(session: Session) -> list[CallView]:
        rows = session.scalars(select(CallRow).where(CallRow.tenant_id == tenant_id,
                                                     CallRow.provider_call_id == provider_call_id)
                               .order_by(CallRow.started_at, CallRow.id))
        return [CallView(r.id, r.tenant_id, r.provider_call_id, r.caller_id, r.direction, r.status, r.outcome,
                         list(r.heard), r.started_at, r.ended_at) for r in rows]

    return await db.run(_q, write=False)
