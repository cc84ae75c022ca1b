"""Job handlers: the SMS confirmation of a booking change and the end-of-call report."""
from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import phonenumbers
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from spotfunnel.integrations.sms import SmsSender
from spotfunnel.store.calls import CALL_REPORT
from spotfunnel.store.ledger import SMS_CONFIRMATION
from spotfunnel.store.models import PROVIDER_CALL_ID_MAX, CallReport
from spotfunnel.workflows.worker import JobHandler, JobView, PermanentJobError

if TYPE_CHECKING:
    from spotfunnel.store.db import Database

__all__ = ["SMS_CONFIRMATION", "CALL_REPORT", "default_handlers", "SmsConfirmationHandler", "CallReportHandler"]
TRANSCRIPT_FIELDS = ("role", "text", "heard", "interrupted", "reprompt")


def written_phone(e164: str) -> str:
    """`+14155550100` -> `+1 415 555 0100`: international format, spaces only, as a text message shows it."""
    try:
        parsed = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return e164
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.INTERNATIONAL).replace("-", " ")


def friendly_time(at: datetime) -> str:
    """`Thu Dec 10 at 11:00 AM` in the datetime's own (local) offset."""
    hour = at.hour % 12 or 12
    return f"{at:%a %b} {at.day} at {hour}:{at:%M} {'AM' if at.hour < 12 else 'PM'}"


def confirmation_body(payload: dict[str, Any]) -> str:
    """The text of a booked / rescheduled / cancelled confirmation."""
    try:
        business, service, action = payload["tenant_name"], payload["service"], payload["action"]
        when = friendly_time(datetime.fromisoformat(payload["start_local"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise PermanentJobError(f"bad sms.confirmation payload: {exc!r}") from exc
    phone = payload.get("tenant_phone")
    call = f" call {written_phone(phone)}" if phone else " call us"
    if action == "booked":
        return f"{business}: your {service} is booked for {when}. To change it,{call}."
    if action == "rescheduled":
        done = f"{business}: your {service} has been moved to {when}."
        return f"{done} {_changed_elsewhere(payload, call) or f'To change it,{call}.'}"
    if action == "cancelled":
        done = f"{business}: your {service} on {when} is cancelled."
        return f"{done} {_changed_elsewhere(payload, call) or f'To book again,{call}.'}"
    raise PermanentJobError(f"unknown sms.confirmation action {action!r}")


def _changed_elsewhere(payload: dict[str, Any], call: str) -> str | None:
    """The warning for a change made on a call from another number (the ledger marks those), or None."""
    if "changed_from_last4" not in payload:
        return None
    last4 = str(payload["changed_from_last4"] or "")
    line = f"a number ending in {last4}" if last4 else "a number that was not shown"
    return f"This was done on a call from {line}. If that wasn't you,{call}."


class SmsConfirmationHandler:
    """Sends the confirmation of a booking change; the job's idempotency key is the message's."""

    def __init__(self, sms: SmsSender) -> None:
        self.sms = sms

    async def __call__(self, job: JobView) -> None:
        body = confirmation_body(job.payload)
        to = job.payload.get("to")
        if not to:
            raise PermanentJobError("sms.confirmation payload has no 'to'")
        await self.sms.send(tenant_id=job.tenant_id, to=to, body=body, idempotency_key=job.idempotency_key)


class CallReportHandler:
    """Writes the `call_reports` row of a finished call; a call already reported is left as is."""

    def __init__(self, db: "Database") -> None:
        self.db = db

    async def __call__(self, job: JobView) -> None:
        report = _report_from(job)
        try:
            await self.db.run(lambda s: _insert_report(s, report))
        except IntegrityError:  # a concurrent twin wrote it first
            if not await self.db.run(lambda s: _exists(s, report.tenant_id, report.call_id), write=False):
                raise


def _report_from(job: JobView) -> CallReport:
    p = job.payload
    try:
        started_at = p["started_at"]
        if isinstance(started_at, str):
            started_at = datetime.fromisoformat(started_at)
        if not isinstance(started_at, datetime) or started_at.tzinfo is None:
            raise ValueError(f"started_at must be a timezone-aware ISO time, got {p['started_at']!r}")
        return CallReport(
            tenant_id=str(p.get("tenant_id") or job.tenant_id),
            call_id=str(p["call_id"]),
            provider_call_id=str(p.get("provider_call_id") or "")[:PROVIDER_CALL_ID_MAX],
            direction="outbound" if p.get("direction") == "outbound" else "inbound",
            caller_id=str(p.get("caller_id") or ""),
            outcome=str(p.get("outcome") or ""),
            started_at=started_at,
            duration_s=float(p.get("duration_s") or 0.0),
            transcript=[_turn(t) for t in p.get("transcript") or []],
            turn_latencies_ms=[float(x) for x in p.get("turn_latencies_ms") or []],
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise PermanentJobError(f"bad call.report payload: {exc!r}") from exc


def _turn(entry: Any) -> dict[str, Any]:
    if not isinstance(entry, dict):
        raise TypeError(f"transcript entry must be an object, got {entry!r}")
    turn: dict[str, Any] = {
        "role": str(entry.get("role", "")),
        "text": str(entry.get("text", "")),
        "heard": entry.get("heard", entry.get("text", "")),
        "interrupted": bool(entry.get("interrupted", False)),
        "reprompt": bool(entry.get("reprompt", False)),
    }
    turn.update({k: v for k, v in entry.items() if k not in TRANSCRIPT_FIELDS})
    return turn


def _exists(session: Session, tenant_id: str, call_id: str) -> bool:
    found = select(CallReport.id).where(CallReport.tenant_id == tenant_id, CallReport.call_id == call_id)
    return session.scalar(found) is not None


def _insert_report(session: Session, report: CallReport) -> None:
    if _exists(session, report.tenant_id, report.call_id):
        return
    session.add(report)
    session.flush()


def default_handlers(db: "Database", sms: SmsSender) -> dict[str, JobHandler]:
    """The handlers the embedded platform runs: SMS confirmations and end-of-call reports."""
    return {SMS_CONFIRMATION: SmsConfirmationHandler(sms), CALL_REPORT: CallReportHandler(db)}
