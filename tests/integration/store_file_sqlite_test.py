"""Several Database handles (as separate processes would hold) on one SQLite file: no double booking,
no job run twice."""
from __future__ import annotations

import asyncio
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))

from store_support import demo_profile, la  # noqa: E402

from spotfunnel.clock import FrozenClock  # noqa: E402
from spotfunnel.store.db import Database  # noqa: E402
from spotfunnel.store.ledger import BookingLedger, SlotUnavailable  # noqa: E402
from spotfunnel.store.outbox import enqueue_now  # noqa: E402
from spotfunnel.store.queries import jobs  # noqa: E402
from spotfunnel.workflows.worker import JobView, OutboxWorker  # noqa: E402


def _handles(tmp_path: Path, n: int) -> list[Database]:
    url = f"sqlite:///{tmp_path / 'sf.db'}"
    Database(url).migrate()
    return [Database(url) for _ in range(n)]


async def test_concurrent_bookings_across_handles_have_one_winner(tmp_path: Path) -> None:
    dbs = _handles(tmp_path, 4)
    clock = FrozenClock(la(2026, 12, 8, 10))
    ledgers = [BookingLedger(db, demo_profile(), clock) for db in dbs]

    async def attempt(i: int) -> bool:
        try:
            await ledgers[i % 4].book(
                name=f"C{i}", phone=f"+141555501{i:02d}", service_id="color", start=la(2026, 12, 11, 13), call_id=f"c{i}"
            )
            return True
        except SlotUnavailable:
            return False

    results = await asyncio.gather(*(attempt(i) for i in range(16)))
    assert results.count(True) == 1
    assert len(await ledgers[0].active()) == 1 and len(await jobs(dbs[0])) == 1
    for db in dbs:
        db.dispose()


async def test_workers_on_separate_handles_share_the_queue(tmp_path: Path) -> None:
    dbs = _handles(tmp_path, 3)
    for i in range(30):
        await enqueue_now(dbs[0], tenant_id="t", kind="k", payload={"i": i}, idempotency_key=f"k{i}")
    seen: Counter[str] = Counter()

    async def handler(job: JobView) -> None:
        seen[job.id] += 1
        await asyncio.sleep(0.002)

    workers = [OutboxWorker(db, {"k": handler}, batch_size=4) for db in dbs]
    await asyncio.gather(*(w.run_until_idle(timeout_s=20) for w in workers))
    assert len(seen) == 30 and set(seen.values()) == {1}
    assert {j.status for j in await jobs(dbs[0])} == {"done"}
    for db in dbs:
        db.dispose()


async def test_jobs_with_one_key_run_in_order_across_handles(tmp_path: Path) -> None:
    """Three workers on their own handles of one file: a booking's SMS go out in enqueue order even
    when the first one fails once, and nothing runs twice."""
    dbs = _handles(tmp_path, 3)
    actions = ("booked", "moved", "cancelled")
    for booking in range(6):
        for action in actions:
            await enqueue_now(dbs[0], tenant_id="t", kind="sms",
                              payload={"booking_id": f"b{booking}", "action": action}, idempotency_key=f"b{booking}:{action}")
    failing = {f"b{booking}:booked" for booking in range(6)}
    sent: list[str] = []

    async def handler(job: JobView) -> None:
        message = f"{job.payload['booking_id']}:{job.payload['action']}"
        await asyncio.sleep(0.001)
        if message in failing:
            failing.discard(message)
            raise ConnectionError("SMS provider down")
        sent.append(message)

    workers = [OutboxWorker(db, {"sms": handler}, base_delay_s=0.01, max_delay_s=0.02, batch_size=2) for db in dbs]
    for _ in range(300):  # bounded: retries wait out a backoff of at most 20 ms
        await asyncio.gather(*(w.run_until_idle(timeout_s=10) for w in workers))
        if len(sent) == 18:
            break
        await asyncio.sleep(0.01)
    assert len(sent) == len(set(sent)) == 18
    for booking in range(6):
        assert [m.split(":")[1] for m in sent if m.startswith(f"b{booking}:")] == list(actions)
    for db in dbs:
        db.dispose()
