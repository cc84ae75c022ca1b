"""The store on a real PostgreSQL (tests/conftest.py `postgres_url`; CI fails when it is missing): schema,
no double booking under truly parallel writers, SKIP LOCKED job claims in order per key, idempotent effects."""
from __future__ import annotations

import asyncio
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))

from store_support import demo_profile, la  # noqa: E402

from spotfunnel.clock import FrozenClock  # noqa: E402
from spotfunnel.integrations.sms import SmsSink  # noqa: E402
from spotfunnel.store.db import Database  # noqa: E402
from spotfunnel.store.ledger import BookingLedger, SlotUnavailable  # noqa: E402
from spotfunnel.store.outbox import enqueue_now  # noqa: E402
from spotfunnel.store.queries import jobs, sms_sent  # noqa: E402
from spotfunnel.workflows.worker import JobView, OutboxWorker  # noqa: E402


@pytest.fixture
def pg(postgres_url: str) -> Iterator[Database]:
    db = Database(postgres_url)
    with db.engine.begin() as conn:
        conn.exec_driver_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    db.migrate()
    yield db
    db.dispose()


def test_schema_matches_models(pg: Database) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from spotfunnel.store.models import Base

    assert pg.is_postgres and pg.engine.dialect.driver == "psycopg"
    with pg.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []


async def test_parallel_bookings_of_one_slot_have_one_winner(pg: Database, postgres_url: str) -> None:
    clock = FrozenClock(la(2026, 12, 8, 10))
    handles = [pg] + [Database(postgres_url) for _ in range(3)]
    ledgers = [BookingLedger(db, demo_profile(), clock) for db in handles]

    async def attempt(i: int) -> bool:
        try:
            await ledgers[i % 4].book(
                name=f"C{i}", phone=f"+141555501{i:02d}", service_id="haircut", start=la(2026, 12, 11, 10, 15),
                call_id=f"c{i}",
            )
            return True
        except SlotUnavailable as exc:
            assert exc.check.reason == "taken"
            return False

    results = await asyncio.gather(*(attempt(i) for i in range(12)))
    assert results.count(True) == 1
    [booking] = await ledgers[0].active()
    assert booking.start == la(2026, 12, 11, 10, 15) and booking.start.utcoffset() is not None
    assert len(await jobs(pg)) == 1
    # The same call repeating its booking gets the same row back.
    winner = booking.name[1:]
    again = await ledgers[0].book(
        name=booking.name, phone=booking.phone, service_id="haircut", start=booking.start, call_id=f"c{winner}"
    )
    assert again.id == booking.id and len(await jobs(pg)) == 1
    for db in handles[1:]:
        db.dispose()


async def test_workers_skip_locked_jobs(pg: Database, postgres_url: str) -> None:
    for i in range(30):
        await enqueue_now(pg, tenant_id="t", kind="k", payload={"i": i}, idempotency_key=f"k{i}")
    seen: Counter[str] = Counter()

    async def handler(job: JobView) -> None:
        seen[job.id] += 1
        await asyncio.sleep(0.005)

    handles = [pg] + [Database(postgres_url) for _ in range(2)]
    workers = [OutboxWorker(db, {"k": handler}, batch_size=4) for db in handles]
    await asyncio.gather(*(w.run_until_idle(timeout_s=30) for w in workers))
    assert len(seen) == 30 and set(seen.values()) == {1}
    for db in handles[1:]:
        db.dispose()


async def test_effects_are_idempotent_under_races(pg: Database) -> None:
    sink = SmsSink(pg)
    ids = await asyncio.gather(*(sink.send(tenant_id="t", to="+14155550144", body="hi", idempotency_key="x") for _ in range(8)))
    assert len(set(ids)) == 1 and len(await sms_sent(pg, "t")) == 1
    job_ids = await asyncio.gather(
        *(enqueue_now(pg, tenant_id="t", kind="k", payload={}, idempotency_key="same") for _ in range(8))
    )
    assert len(set(job_ids)) == 1 and len(await jobs(pg)) == 1


async def test_jobs_with_one_key_run_in_order_across_workers_and_failures(pg: Database, postgres_url: str) -> None:
    """Two workers on their own connections (SKIP LOCKED claims): each booking's SMS go out in the order
    they were enqueued, even when an earlier one fails and is retried; other bookings are not held up."""
    actions = ("booked", "moved", "cancelled")
    for booking in range(8):
        for action in actions:
            await enqueue_now(pg, tenant_id="t", kind="sms", payload={"booking_id": f"b{booking}", "action": action},
                              idempotency_key=f"b{booking}:{action}")
    failing = {f"b{booking}:booked" for booking in range(0, 8, 2)} | {"b1:moved"}  # each fails once
    sent: list[str] = []

    async def handler(job: JobView) -> None:
        message = f"{job.payload['booking_id']}:{job.payload['action']}"
        await asyncio.sleep(0.002)
        if message in failing:
            failing.discard(message)
            raise ConnectionError(f"SMS provider down ({message})")
        sent.append(message)

    handles = [pg, Database(postgres_url)]
    workers = [OutboxWorker(db, {"sms": handler}, base_delay_s=0.01, max_delay_s=0.02, batch_size=3)
               for db in handles]
    for _ in range(300):  # bounded: retries wait out a backoff of at most 20 ms
        await asyncio.gather(*(w.run_until_idle(timeout_s=10) for w in workers))
        if len(sent) == 24:
            break
        await asyncio.sleep(0.01)
    assert sorted(sent) == sorted(f"b{b}:{a}" for b in range(8) for a in actions)  # each exactly once
    for booking in range(8):
        assert [m.split(":")[1] for m in sent if m.startswith(f"b{booking}:")] == list(actions)
    assert sent.index("b1:booked") < sent.index("b0:booked")  # b0's retry did not hold up b1
    handles[1].dispose()
