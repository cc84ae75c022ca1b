"""BookingLedger on a real (in-memory) SQLite database, driven by the demo tenant's profile."""
from __future__ import annotations

import asyncio
from datetime import timedelta, timezone

import pytest
from sqlalchemy import func, select
from store_support import la, make_ledger

from spotfunnel.store import outbox
from spotfunnel.store.access import ChangeRefused, Requester
from spotfunnel.store.ledger import BookingNotFound, SlotUnavailable
from spotfunnel.store.models import Booking, OutboxJob
from spotfunnel.store.queries import jobs

NOW = la(2026, 12, 8, 10)  # Tuesday 10:00 PST
OWNER = Requester("+14155550144")  # a call from the number the test bookings are made under


def _count(db, model) -> int:  # type: ignore[no-untyped-def]
    return db.run_sync(lambda s: s.scalar(select(func.count()).select_from(model)), write=False)


async def _seed_color_friday(ledger) -> None:  # type: ignore[no-untyped-def]
    await ledger.seed([{"name": "Paul Adams", "phone": "+14155550199", "service": "color", "start": la(2026, 12, 11, 13)}])


async def test_free_slot_is_ok() -> None:
    _, ledger, _ = make_ledger(NOW)
    check = await ledger.check("haircut", la(2026, 12, 11, 11))
    assert check.ok and check.reason is None and check.alternatives == []


async def test_refuses_overlap() -> None:
    _, ledger, _ = make_ledger(NOW)
    await _seed_color_friday(ledger)
    for h, m in [(13, 0), (13, 30), (14, 15), (12, 30)]:  # haircut 12:30-13:15 overlaps 13:00
        check = await ledger.check("haircut", la(2026, 12, 11, h, m))
        assert not check.ok and check.reason == "taken", (h, m)
    assert (await ledger.check("haircut", la(2026, 12, 11, 12, 15))).ok  # ends 13:00 exactly
    assert (await ledger.check("haircut", la(2026, 12, 11, 14, 30))).ok  # starts as the color ends


@pytest.mark.parametrize("day", [13, 14])  # Sunday, Monday
async def test_refuses_closed_days(day: int) -> None:
    _, ledger, _ = make_ledger(NOW)
    check = await ledger.check("haircut", la(2026, 12, day, 11))
    assert check.reason == "closed"
    assert len(check.alternatives) == 2
    assert all(a.weekday() in (1, 2, 3, 4, 5) for a in check.alternatives)


async def test_refuses_outside_hours() -> None:
    _, ledger, _ = make_ledger(NOW)
    assert (await ledger.check("haircut", la(2026, 12, 11, 8, 45))).reason == "closed"
    assert (await ledger.check("haircut", la(2026, 12, 11, 18))).reason == "closed"
    assert (await ledger.check("blowout", la(2026, 12, 12, 16))).reason == "closed"  # Saturday closes 16:00


async def test_refuses_ending_after_closing() -> None:
    _, ledger, _ = make_ledger(NOW)
    check = await ledger.check("color", la(2026, 12, 15, 17))  # Tuesday, 17:00-18:30
    assert check.reason == "ends-after-closing"
    assert (await ledger.check("color", la(2026, 12, 15, 16, 30))).ok  # ends 18:00 exactly
    assert (await ledger.check("haircut", la(2026, 12, 12, 15, 30))).reason == "ends-after-closing"  # Saturday


async def test_refuses_off_grid_start() -> None:
    _, ledger, _ = make_ledger(NOW)
    check = await ledger.check("haircut", la(2026, 12, 11, 10, 7))
    assert check.reason == "off-grid"
    assert check.alternatives == [la(2026, 12, 11, 10), la(2026, 12, 11, 10, 15)]


async def test_refuses_past() -> None:
    _, ledger, _ = make_ledger(NOW)
    check = await ledger.check("haircut", la(2026, 12, 4, 11))  # last Friday
    assert check.reason == "past"
    assert all(a >= NOW for a in check.alternatives)
    assert (await ledger.check("haircut", la(2026, 12, 8, 9, 45))).reason == "past"  # earlier today
    with pytest.raises(SlotUnavailable):
        await ledger.book(name="A", phone="+14155550111", service_id="haircut", start=la(2026, 12, 4, 11), call_id="c")


async def test_alternatives_are_the_two_nearest_free_starts() -> None:
    _, ledger, _ = make_ledger(NOW)
    await _seed_color_friday(ledger)  # 13:00-14:30
    check = await ledger.check("blowout", la(2026, 12, 11, 14))
    assert check.reason == "taken"
    # By absolute distance: 14:30 (30 min) and 14:45 (45 min) beat 12:30 (90 min).
    assert check.alternatives == [la(2026, 12, 11, 14, 30), la(2026, 12, 11, 14, 45)]
    assert all(a.tzinfo is not None for a in check.alternatives)


async def test_alternatives_each_side_option() -> None:
    db, ledger, clock = make_ledger(NOW)
    await _seed_color_friday(ledger)
    from spotfunnel.store.ledger import BookingLedger

    spread = BookingLedger(db, ledger.profile, clock, alternatives_each_side=True)
    check = await spread.check("blowout", la(2026, 12, 11, 14))
    assert check.alternatives == [la(2026, 12, 11, 12, 30), la(2026, 12, 11, 14, 30)]


async def test_alternatives_search_across_days_and_never_past() -> None:
    _, ledger, _ = make_ledger(la(2026, 12, 12, 15, 20))  # Saturday 15:20: no haircut fits today
    check = await ledger.check("haircut", la(2026, 12, 12, 14))  # past: only Tuesday is ahead
    assert check.reason == "past"
    assert check.alternatives == [la(2026, 12, 15, 9), la(2026, 12, 15, 9, 15)]


async def test_book_writes_booking_and_sms_job() -> None:
    db, ledger, _ = make_ledger(NOW)
    rec = await ledger.book(
        name="Nina Patel", phone="(415) 555-0144", service_id="haircut", start=la(2026, 12, 10, 11), call_id="call-1",
        trace_id="t-1",
    )
    assert rec.phone == "+14155550144" and rec.status == "active"
    assert rec.start == la(2026, 12, 10, 11) and rec.end == la(2026, 12, 10, 11, 45)
    assert rec.start.utcoffset() == timedelta(hours=-8)
    [job] = await jobs(db, "maple-street-salon")
    assert job.kind == "sms.confirmation" and job.status == "pending"
    assert job.payload["booking_id"] == rec.id and job.payload["to"] == "+14155550144"
    assert job.payload["service"] == "haircut" and job.payload["action"] == "booked"
    assert job.payload["start_local"] == "2026-12-10T11:00:00-08:00"
    assert job.payload["tenant_name"] == "Maple Street Salon"


async def test_book_is_idempotent() -> None:
    db, ledger, _ = make_ledger(NOW)
    kwargs = dict(name="Nina", phone="+14155550144", service_id="haircut", start=la(2026, 12, 10, 11), call_id="c1")
    first = await ledger.book(**kwargs)  # type: ignore[arg-type]
    again = await ledger.book(**kwargs)  # type: ignore[arg-type]
    utc_form = await ledger.book(**{**kwargs, "start": la(2026, 12, 10, 11).astimezone(timezone.utc)})  # type: ignore[arg-type]
    assert first == again == utc_form
    assert _count(db, Booking) == 1 and _count(db, OutboxJob) == 1


async def test_concurrent_book_of_one_slot_has_one_winner() -> None:
    db, ledger, _ = make_ledger(NOW)

    async def attempt(i: int) -> object:
        try:
            return await ledger.book(
                name=f"Caller {i}", phone=f"+1415555013{i}", service_id="haircut", start=la(2026, 12, 11, 10),
                call_id=f"call-{i}",
            )
        except SlotUnavailable as exc:
            return exc

    results = await asyncio.gather(*(attempt(i) for i in range(6)))
    winners = [r for r in results if not isinstance(r, SlotUnavailable)]
    assert len(winners) == 1
    assert all(r.check.reason == "taken" for r in results if isinstance(r, SlotUnavailable))
    assert _count(db, Booking) == 1 and _count(db, OutboxJob) == 1


async def test_booking_and_sms_job_are_atomic(monkeypatch: pytest.MonkeyPatch) -> None:
    db, ledger, _ = make_ledger(NOW)

    def boom(session, **kwargs):  # type: ignore[no-untyped-def]
        assert session.scalar(select(func.count()).select_from(Booking)) == 1  # the insert happened
        raise RuntimeError("crash between the insert and the job")

    monkeypatch.setattr(outbox, "enqueue", boom)
    with pytest.raises(RuntimeError):
        await ledger.book(name="N", phone="+14155550144", service_id="haircut", start=la(2026, 12, 10, 11), call_id="c")
    assert _count(db, Booking) == 0 and _count(db, OutboxJob) == 0
    assert await ledger.active() == []


async def test_reschedule_excludes_itself_and_enqueues_sms() -> None:
    db, ledger, _ = make_ledger(NOW)
    rec = await ledger.book(name="N", phone="+14155550144", service_id="color", start=la(2026, 12, 11, 13), call_id="c1")
    moved = await ledger.reschedule(rec.id, la(2026, 12, 11, 13, 30), by=OWNER, call_id="c2")  # overlaps its old self only
    assert moved.id == rec.id and moved.start == la(2026, 12, 11, 13, 30) and moved.end == la(2026, 12, 11, 15)
    again = await ledger.reschedule(rec.id, la(2026, 12, 11, 13, 30), by=OWNER, call_id="c2")
    assert again == moved
    kinds = [(j.kind, j.payload["action"]) for j in await jobs(db)]
    assert kinds == [("sms.confirmation", "booked"), ("sms.confirmation", "rescheduled")]


async def test_reschedule_into_taken_slot_is_refused_and_changes_nothing() -> None:
    db, ledger, _ = make_ledger(NOW)
    await _seed_color_friday(ledger)
    rec = await ledger.book(name="N", phone="+14155550144", service_id="haircut", start=la(2026, 12, 11, 10), call_id="c")
    with pytest.raises(SlotUnavailable) as err:
        await ledger.reschedule(rec.id, la(2026, 12, 11, 14), by=OWNER, call_id="c2")
    assert err.value.check.reason == "taken" and len(err.value.check.alternatives) == 2
    assert (await ledger.get(rec.id)).start == la(2026, 12, 11, 10)
    assert len(await jobs(db)) == 1


async def test_cancel_frees_the_slot_and_is_idempotent() -> None:
    db, ledger, _ = make_ledger(NOW)
    rec = await ledger.book(name="N", phone="+14155550144", service_id="haircut", start=la(2026, 12, 11, 10), call_id="c")
    cancelled = await ledger.cancel(rec.id, by=OWNER, call_id="c2")
    assert cancelled.status == "cancelled"
    assert (await ledger.cancel(rec.id, by=OWNER, call_id="c3")).status == "cancelled"
    assert [j.payload["action"] for j in await jobs(db)] == ["booked", "cancelled"]
    assert (await ledger.check("haircut", la(2026, 12, 11, 10))).ok
    assert await ledger.active() == []
    with pytest.raises(BookingNotFound):
        await ledger.reschedule(rec.id, la(2026, 12, 11, 11), by=OWNER, call_id="c4")


async def test_unknown_booking_and_other_tenant_are_not_found() -> None:
    db, ledger, clock = make_ledger(NOW)
    rec = await ledger.book(name="N", phone="+14155550144", service_id="haircut", start=la(2026, 12, 11, 10), call_id="c")
    other_profile = ledger.profile.model_copy(update={"id": "other-salon"})
    from spotfunnel.store.ledger import BookingLedger

    other = BookingLedger(db, other_profile, clock)
    with pytest.raises(BookingNotFound):
        await other.cancel(rec.id, by=OWNER, call_id="x")
    with pytest.raises(BookingNotFound):
        await ledger.cancel("nope", by=OWNER, call_id="x")
    assert await other.active() == [] and await other.find_upcoming("+14155550144") == []


async def test_find_upcoming_by_phone_soonest_first() -> None:
    _, ledger, clock = make_ledger(NOW)
    await ledger.seed(
        [
            {"name": "G", "phone": "+14155550144", "service": "haircut", "start": la(2026, 12, 12, 10)},
            {"name": "G", "phone": "+14155550144", "service": "blowout", "start": la(2026, 12, 11, 10)},
            {"name": "H", "phone": "+14155550155", "service": "haircut", "start": la(2026, 12, 11, 12)},
            {"name": "G", "phone": "+14155550144", "service": "haircut", "start": la(2026, 12, 1, 10)},  # past
        ]
    )
    found = await ledger.find_upcoming("415-555-0144")
    assert [(b.service_id, b.start) for b in found] == [("blowout", la(2026, 12, 11, 10)), ("haircut", la(2026, 12, 12, 10))]
    assert await ledger.find_own(OWNER) == found  # what a call from that number may hear about
    assert await ledger.find_own(Requester(None)) == []  # a call without caller ID owns nothing
    clock.set(la(2026, 12, 11, 11))
    assert [b.service_id for b in await ledger.find_upcoming("+14155550144")] == ["haircut"]
    assert len(await ledger.active()) == 4


async def test_seed_writes_no_sms_and_is_idempotent() -> None:
    db, ledger, _ = make_ledger(NOW)
    await _seed_color_friday(ledger)
    await _seed_color_friday(ledger)
    assert len(await ledger.active()) == 1 and _count(db, OutboxJob) == 0


async def test_naive_datetimes_are_rejected() -> None:
    _, ledger, _ = make_ledger(NOW)
    with pytest.raises(ValueError, match="timezone-aware"):
        await ledger.check("haircut", la(2026, 12, 11, 10).replace(tzinfo=None))


@pytest.mark.parametrize(
    ("now", "start", "offset_h"),
    [
        (la(2026, 3, 5, 9), la(2026, 3, 10, 10), -7),  # booked in PST for a day after spring forward
        (la(2026, 10, 29, 9), la(2026, 11, 3, 10), -8),  # booked in PDT for a day after fall back
    ],
)
async def test_dst_keeps_local_wall_time(now, start, offset_h) -> None:  # type: ignore[no-untyped-def]
    db, ledger, _ = make_ledger(now)
    rec = await ledger.book(name="N", phone="+14155550144", service_id="haircut", start=start, call_id="c")
    [stored] = await ledger.active()
    assert stored == rec
    assert (stored.start.hour, stored.start.minute) == (10, 0)
    assert stored.start.utcoffset() == timedelta(hours=offset_h)
    assert stored.end - stored.start == timedelta(minutes=45)
    [job] = await jobs(db)
    assert job.payload["start_local"].startswith(f"{start.date().isoformat()}T10:00:00")
    # The slot just before opening is closed, the opening one taken: grid and hours are in wall time.
    assert (await ledger.check("blowout", start.replace(hour=8, minute=45))).reason == "closed"
    check = await ledger.check("blowout", start.replace(minute=30))
    assert check.alternatives == [start.replace(minute=45), start.replace(hour=11)]
    assert [a.utcoffset() for a in check.alternatives] == [timedelta(hours=offset_h)] * 2


async def test_dst_alternatives_across_the_transition_night() -> None:
    _, ledger, _ = make_ledger(la(2026, 3, 6, 9))
    check = await ledger.check("blowout", la(2026, 3, 8, 10))  # Sunday of spring forward: closed
    assert check.reason == "closed"
    assert check.alternatives == [la(2026, 3, 7, 15, 15), la(2026, 3, 7, 15, 30)]  # Saturday before closing
    assert [a.utcoffset() for a in check.alternatives] == [timedelta(hours=-8)] * 2


async def _grace_saturday(ledger):  # type: ignore[no-untyped-def]
    [rec] = await ledger.seed([{"name": "Grace Kim", "phone": "+14155550144", "service": "haircut",
                                "start": la(2026, 12, 12, 10)}])
    return rec


@pytest.mark.parametrize(
    "stranger",
    [
        Requester("+14155550177"),  # another number, no proof
        Requester(None),  # no caller ID (a browser call), no proof
        Requester("+14155550177", name="Grace Lee", day=la(2026, 12, 12).date()),  # wrong name
        Requester("+14155550177", name="Grace Kim", day=la(2026, 12, 11).date()),  # wrong day
        Requester(None, name="Grace", day=la(2026, 12, 12).date()),  # half the name
    ],
)
async def test_another_number_cannot_change_a_booking_without_its_name_and_day(stranger: Requester) -> None:
    db, ledger, _ = make_ledger(NOW)
    rec = await _grace_saturday(ledger)
    with pytest.raises(ChangeRefused):
        await ledger.cancel(rec.id, by=stranger, call_id="c2")
    with pytest.raises(ChangeRefused):
        await ledger.reschedule(rec.id, la(2026, 12, 11, 11), by=stranger, call_id="c2")
    assert (await ledger.get(rec.id)).model_dump() == rec.model_dump()
    assert await jobs(db) == []  # no SMS either


async def test_proof_changes_a_booking_and_tells_the_booked_number_who_did() -> None:
    db, ledger, _ = make_ledger(NOW)
    rec = await _grace_saturday(ledger)
    saturday = la(2026, 12, 12).date()
    moved = await ledger.reschedule(
        rec.id, la(2026, 12, 12, 11), by=Requester("+14155550177", name="grace  KIM", day=saturday), call_id="c2"
    )
    assert moved.start == la(2026, 12, 12, 11)
    await ledger.cancel(rec.id, by=Requester(None, name="Grace Kim", day=saturday), call_id="c3")
    assert await ledger.active() == []
    payloads = [j.payload for j in await jobs(db)]
    assert [(p["to"], p["action"], p["changed_from_last4"]) for p in payloads] == [
        ("+14155550144", "rescheduled", "0177"), ("+14155550144", "cancelled", ""),
    ]
    assert "+14155550177" not in str(payloads)  # the other line's full number is kept nowhere


async def test_the_owner_needs_no_proof_and_its_sms_says_nothing_of_other_lines() -> None:
    db, ledger, _ = make_ledger(NOW)
    rec = await _grace_saturday(ledger)
    await ledger.cancel(rec.id, by=OWNER, call_id="c2")
    [job] = await jobs(db)
    assert job.payload["action"] == "cancelled" and "changed_from_last4" not in job.payload


async def test_find_proven_returns_only_the_booking_named_and_dated() -> None:
    _, ledger, clock = make_ledger(NOW)
    rec = await _grace_saturday(ledger)
    await ledger.seed([
        {"name": "Grace Kim", "phone": "+14155550144", "service": "blowout", "start": la(2026, 12, 11, 10)},
        {"name": "Grace Kim", "phone": "+14155550155", "service": "haircut", "start": la(2026, 12, 12, 12)},
    ])
    saturday = la(2026, 12, 12).date()
    assert await ledger.find_proven("+14155550144", name="Grace Kim", day=saturday) == [rec]
    assert await ledger.find_proven("(415) 555-0144", name="gráce kim", day=saturday) == [rec]
    assert await ledger.find_proven("+14155550144", name="Grace Lee", day=saturday) == []
    assert await ledger.find_proven("+14155550144", name="Grace Kim", day=la(2026, 12, 10).date()) == []
    clock.set(la(2026, 12, 12, 10, 30))  # started: no longer upcoming, so no longer changeable
    assert await ledger.find_proven("+14155550144", name="Grace Kim", day=saturday) == []


async def test_a_repeated_call_id_in_another_tenant_books_its_own_slot() -> None:
    db, ledger, clock = make_ledger(NOW)
    from spotfunnel.store.ledger import BookingLedger

    other = BookingLedger(db, ledger.profile.model_copy(update={"id": "other-salon"}), clock)
    kwargs = dict(service_id="haircut", start=la(2026, 12, 10, 11), call_id="CA-same")
    ours = await ledger.book(name="Nina Patel", phone="+14155550144", **kwargs)  # type: ignore[arg-type]
    theirs = await other.book(name="Omar Hassan", phone="+14155550188", **kwargs)  # type: ignore[arg-type]
    assert (theirs.tenant_id, theirs.name, theirs.phone) == ("other-salon", "Omar Hassan", "+14155550188")
    assert theirs.id != ours.id and [b.name for b in await ledger.active()] == ["Nina Patel"]
