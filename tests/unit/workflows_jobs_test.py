"""Job handlers end to end: booking -> outbox -> worker -> SMS sink; end-of-call report."""
from __future__ import annotations

import asyncio
from datetime import timedelta

from store_support import la, make_ledger

from spotfunnel.integrations.sms import SmsSink
from spotfunnel.store.access import Requester
from spotfunnel.store.db import Database
from spotfunnel.store.outbox import enqueue_now
from spotfunnel.store.queries import call_report, jobs, sms_sent
from spotfunnel.workflows.jobs import confirmation_body, default_handlers, friendly_time, written_phone
from spotfunnel.workflows.worker import JobView, OutboxWorker, list_dead

TENANT = "maple-street-salon"
OWNER = Requester("+14155550144")  # the call comes from the booked number


def _worker(db: Database, at=la(2026, 12, 8, 10)) -> OutboxWorker:  # type: ignore[no-untyped-def]
    from spotfunnel.clock import FrozenClock

    return OutboxWorker(db, default_handlers(db, SmsSink(db)), clock=FrozenClock(at))


def test_formatting_helpers() -> None:
    assert written_phone("+14155550100") == "+1 415 555 0100"
    assert friendly_time(la(2026, 12, 10, 11)) == "Thu Dec 10 at 11:00 AM"
    assert friendly_time(la(2026, 12, 10, 0, 5)) == "Thu Dec 10 at 12:05 AM"
    assert friendly_time(la(2026, 12, 11, 16, 30)) == "Fri Dec 11 at 4:30 PM"


async def test_booking_change_sends_friendly_sms_once() -> None:
    db, ledger, _ = make_ledger(la(2026, 12, 8, 10))
    rec = await ledger.book(name="Nina", phone="+14155550144", service_id="haircut", start=la(2026, 12, 10, 11), call_id="c1")
    await ledger.reschedule(rec.id, la(2026, 12, 11, 16, 30), by=OWNER, call_id="c2")
    await ledger.cancel(rec.id, by=OWNER, call_id="c3")
    assert await _worker(db).run_until_idle(timeout_s=5) == 3
    messages = await sms_sent(db, TENANT)
    assert [m.to for m in messages] == ["+14155550144"] * 3
    assert [m.body for m in messages] == [
        "Maple Street Salon: your haircut is booked for Thu Dec 10 at 11:00 AM. To change it, call +1 415 555 0100.",
        "Maple Street Salon: your haircut has been moved to Fri Dec 11 at 4:30 PM. To change it, call +1 415 555 0100.",
        "Maple Street Salon: your haircut on Fri Dec 11 at 4:30 PM is cancelled. To book again, call +1 415 555 0100.",
    ]
    all_jobs = await jobs(db, TENANT)
    assert {j.status for j in all_jobs} == {"done"}
    assert [m.idempotency_key for m in messages] == [j.idempotency_key for j in all_jobs]
    # A second delivery of the same job (e.g. a worker died after sending) stores nothing new.
    handler = default_handlers(db, SmsSink(db))["sms.confirmation"]
    first = all_jobs[0]
    view = JobView(first.id, TENANT, first.kind, first.payload, first.idempotency_key, "", "running", 2, 5,
                   None, None, la(2026, 12, 8, 10), None)
    await handler(view)
    assert len(await sms_sent(db, TENANT)) == 3
    assert await sms_sent(db, "other-tenant") == []


async def test_sms_sink_never_stores_twice() -> None:
    db = Database.memory()
    sink = SmsSink(db)
    ids = await asyncio.gather(
        *(sink.send(tenant_id=TENANT, to="+14155550144", body="hello", idempotency_key="k") for _ in range(5))
    )
    assert len(set(ids)) == 1
    other = await sink.send(tenant_id=TENANT, to="+14155550144", body="hello", idempotency_key="k2")
    assert other != ids[0]
    assert [m.idempotency_key for m in await sms_sent(db, TENANT)] == ["k", "k2"]


async def test_change_from_another_number_warns_the_booked_number() -> None:
    db, ledger, _ = make_ledger(la(2026, 12, 8, 10))
    rec = await ledger.book(name="Nina Patel", phone="+14155550144", service_id="haircut", start=la(2026, 12, 10, 11),
                            call_id="c1")
    thursday = la(2026, 12, 10).date()
    await ledger.reschedule(rec.id, la(2026, 12, 10, 15), by=Requester("+14155550177", "Nina Patel", thursday), call_id="c2")
    await ledger.cancel(rec.id, by=Requester(None, "Nina Patel", thursday), call_id="c3")
    assert await _worker(db).run_until_idle(timeout_s=5) == 3
    booked, moved, cancelled = await sms_sent(db, TENANT)
    assert {booked.to, moved.to, cancelled.to} == {"+14155550144"}
    assert moved.body == (
        "Maple Street Salon: your haircut has been moved to Thu Dec 10 at 3:00 PM. This was done on a call from a "
        "number ending in 0177. If that wasn't you, call +1 415 555 0100."
    )
    assert cancelled.body == (
        "Maple Street Salon: your haircut on Thu Dec 10 at 3:00 PM is cancelled. This was done on a call from a "
        "number that was not shown. If that wasn't you, call +1 415 555 0100."
    )


def test_bad_payload_is_permanent() -> None:
    import pytest

    from spotfunnel.workflows.worker import PermanentJobError

    with pytest.raises(PermanentJobError):
        confirmation_body({"tenant_name": "X", "service": "y", "action": "booked"})
    with pytest.raises(PermanentJobError):
        confirmation_body({"tenant_name": "X", "service": "y", "action": "eaten", "start_local": "2026-12-10T11:00:00-08:00"})


def _report_payload(call_id: str = "call-9") -> dict:  # type: ignore[type-arg]
    return {
        "call_id": call_id,
        "tenant_id": TENANT,
        "caller_id": "+14155550122",
        "outcome": "booked",
        "started_at": "2026-12-08T10:00:00-08:00",
        "duration_s": 73.5,
        "transcript": [
            {"role": "agent", "text": "Thanks for calling Maple Street Salon, how can I help?", "heard": "Thanks for calling",
             "interrupted": True, "reprompt": False},
            {"role": "user", "text": "A haircut tomorrow at 3."},
        ],
        "turn_latencies_ms": [410, 520.5],
    }


async def test_call_report_is_written_once() -> None:
    db = Database.memory()
    await enqueue_now(db, tenant_id=TENANT, kind="call.report", payload=_report_payload(), idempotency_key="report:call-9")
    await enqueue_now(db, tenant_id=TENANT, kind="call.report", payload=_report_payload(), idempotency_key="report:call-9")
    await enqueue_now(db, tenant_id=TENANT, kind="call.report", payload=_report_payload(), idempotency_key="report:again")
    assert await _worker(db).run_until_idle(timeout_s=5) == 2
    report = await call_report(db, "call-9")
    assert report is not None
    assert report.tenant_id == TENANT and report.caller_id == "+14155550122" and report.outcome == "booked"
    assert report.started_at == la(2026, 12, 8, 10) and report.started_at.utcoffset() == timedelta(0)
    assert report.duration_s == 73.5 and report.turn_latencies_ms == [410.0, 520.5]
    assert report.transcript[0]["interrupted"] is True and report.transcript[0]["heard"] == "Thanks for calling"
    assert report.transcript[1] == {
        "role": "user", "text": "A haircut tomorrow at 3.", "heard": "A haircut tomorrow at 3.",
        "interrupted": False, "reprompt": False,
    }
    assert await call_report(db, "nope") is None
    assert {j.status for j in await jobs(db)} == {"done"}


async def test_call_report_with_bad_payload_is_dead_lettered() -> None:
    db = Database.memory()
    payload = _report_payload() | {"started_at": "2026-12-08T10:00:00"}  # naive
    await enqueue_now(db, tenant_id=TENANT, kind="call.report", payload=payload, idempotency_key="r")
    await _worker(db).run_until_idle(timeout_s=5)
    [dead] = await list_dead(db)
    assert "timezone-aware" in (dead.last_error or "")
