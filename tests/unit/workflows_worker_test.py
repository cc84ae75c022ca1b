"""OutboxWorker: claims, retries with backoff and jitter, dead letters, replay, lease recovery."""
from __future__ import annotations

import asyncio
import random
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import update
from store_support import la

from spotfunnel.clock import FrozenClock
from spotfunnel.store.db import Database
from spotfunnel.store.models import OutboxJob
from spotfunnel.store.outbox import enqueue, enqueue_now
from spotfunnel.store.queries import jobs
from spotfunnel.workflows.worker import JobView, OutboxWorker, PermanentJobError, list_dead, replay

T0 = la(2026, 12, 8, 10)


class Flaky:
    """Fails the first `failures` calls, then succeeds; records every call."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls: list[JobView] = []

    async def __call__(self, job: JobView) -> None:
        self.calls.append(job)
        if len(self.calls) <= self.failures:
            raise ConnectionError(f"provider down (call {len(self.calls)})")


async def _job(db: Database, key: str = "k1", kind: str = "test.kind", max_attempts: int = 5) -> str:
    return await enqueue_now(db, tenant_id="t", kind=kind, payload={"n": 1}, idempotency_key=key, max_attempts=max_attempts)


async def test_runs_a_due_job_once() -> None:
    db = Database.memory()
    handler = Flaky(0)
    await _job(db)
    worker = OutboxWorker(db, {"test.kind": handler}, clock=FrozenClock(T0))
    assert await worker.run_once() == 1
    assert await worker.run_once() == 0
    [job] = await jobs(db)
    assert job.status == "done" and job.attempts == 1 and handler.calls[0].payload == {"n": 1}


async def test_enqueue_ignores_a_duplicate_key() -> None:
    db = Database.memory()
    first = await _job(db, "same")
    second = await db.run(lambda s: enqueue(s, tenant_id="t", kind="x", payload={}, idempotency_key="same"))
    assert first == second and len(await jobs(db)) == 1


async def test_retries_with_backoff_then_dead_letters_then_replays() -> None:
    db = Database.memory()
    clock = FrozenClock(T0)
    handler = Flaky(failures=3)
    await _job(db, max_attempts=3)
    worker = OutboxWorker(db, {"test.kind": handler}, clock=clock, base_delay_s=2.0, max_delay_s=10, rng=random.Random(7))
    for attempt in (1, 2):
        assert await worker.run_once() == 1
        [job] = await list_pending(db)
        assert job.attempts == attempt and "provider down" in (job.last_error or "")
        assert job.next_attempt_at is not None
        delay = job.next_attempt_at - clock.now()
        assert timedelta(0) <= delay <= timedelta(seconds=min(10, 2.0 * 2 ** (attempt - 1)))
        clock.set(clock.now() + delay - timedelta(milliseconds=1))
        assert await worker.run_once() == 0  # not due yet
        clock.set(clock.now() + timedelta(milliseconds=1))
    assert await worker.run_once() == 1
    [dead] = await list_dead(db)
    assert dead.status == "dead" and dead.attempts == 3 and "call 3" in (dead.last_error or "")
    assert await worker.run_once() == 0

    replayed = await replay(db, dead.id)
    assert replayed.status == "pending" and replayed.attempts == 0
    assert await worker.run_until_idle(timeout_s=5) == 1
    assert (await jobs(db))[0].status == "done" and len(handler.calls) == 4
    assert await list_dead(db) == []
    with pytest.raises(ValueError, match="only dead jobs"):
        await replay(db, dead.id)
    with pytest.raises(LookupError):
        await replay(db, "missing")


async def list_pending(db: Database) -> list[JobView]:
    def _q(session):  # type: ignore[no-untyped-def]
        from sqlalchemy import select

        return [JobView.of(j) for j in session.scalars(select(OutboxJob).where(OutboxJob.status == "pending"))]

    return await db.run(_q, write=False)


def test_backoff_is_exponential_capped_with_full_jitter() -> None:
    worker = OutboxWorker(Database.memory(), {}, base_delay_s=1.0, max_delay_s=30, rng=random.Random(1))
    for attempts, ceiling in [(1, 1), (2, 2), (3, 4), (5, 16), (6, 30), (20, 30)]:
        samples = [worker.backoff(attempts) for _ in range(300)]
        assert all(0 <= s <= ceiling for s in samples)
        assert max(samples) > ceiling * 0.8 and min(samples) < ceiling * 0.2  # spread over the whole range


async def test_unknown_kind_goes_straight_to_dead_letters() -> None:
    db = Database.memory()
    await _job(db, kind="crm.sync")
    worker = OutboxWorker(db, {"test.kind": Flaky(0)}, clock=FrozenClock(T0))
    assert await worker.run_once() == 1
    [dead] = await list_dead(db)
    assert dead.attempts == 1 and "no handler for job kind 'crm.sync'" in (dead.last_error or "")


async def test_permanent_error_skips_retries() -> None:
    db = Database.memory()

    async def bad(job: JobView) -> None:
        raise PermanentJobError("payload has no phone")

    await _job(db)
    assert await OutboxWorker(db, {"test.kind": bad}, clock=FrozenClock(T0)).run_once() == 1
    [dead] = await list_dead(db)
    assert "payload has no phone" in (dead.last_error or "")


async def test_handler_timeout_counts_as_failure() -> None:
    db = Database.memory()

    async def slow(job: JobView) -> None:
        await asyncio.sleep(5)

    await _job(db, max_attempts=1)
    await OutboxWorker(db, {"test.kind": slow}, clock=FrozenClock(T0), job_timeout_s=0.05).run_once()
    [dead] = await list_dead(db)
    assert "TimeoutError" in (dead.last_error or "")


async def test_stale_running_job_is_recovered_on_start() -> None:
    db = Database.memory()
    clock = FrozenClock(T0)
    job_id = await _job(db)
    await db.run(
        lambda s: s.execute(
            update(OutboxJob).where(OutboxJob.id == job_id).values(status="running", attempts=1, claimed_at=T0)
        )
    )
    clock.set(T0 + timedelta(seconds=30))
    handler = Flaky(0)
    assert await OutboxWorker(db, {"test.kind": handler}, clock=clock, lease_s=60).run_once() == 0  # lease still held
    clock.set(T0 + timedelta(seconds=61))
    assert await OutboxWorker(db, {"test.kind": handler}, clock=clock, lease_s=60).run_once() == 1
    [job] = await jobs(db)
    assert job.status == "done" and job.attempts == 2 and len(handler.calls) == 1


async def test_two_workers_never_run_one_job_twice() -> None:
    db = Database.memory()
    seen: Counter[str] = Counter()

    async def handler(job: JobView) -> None:
        seen[job.id] += 1
        await asyncio.sleep(0.001)

    for i in range(40):
        await _job(db, key=f"k{i}")
    workers = [OutboxWorker(db, {"test.kind": handler}, clock=FrozenClock(T0), batch_size=3) for _ in range(3)]
    totals = await asyncio.gather(*(w.run_until_idle(timeout_s=10) for w in workers))
    assert sum(totals) == 40 and len(seen) == 40 and set(seen.values()) == {1}


async def test_run_forever_until_stopped() -> None:
    db = Database.memory()
    handler = Flaky(0)
    stop = asyncio.Event()
    worker = OutboxWorker(db, {"test.kind": handler})
    task = asyncio.create_task(worker.run_forever(stop, poll_s=0.01))
    await _job(db, key="a")
    for _ in range(200):
        if handler.calls:
            break
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(task, timeout=2)
    assert len(handler.calls) == 1


async def test_jobs_about_one_booking_run_in_order_others_concurrently() -> None:
    db = Database.memory()
    events: list[str] = []

    async def handler(job: JobView) -> None:
        events.append(f"start {job.payload['n']}")
        await asyncio.sleep(0.01 if job.payload["n"] == 0 else 0)
        events.append(f"end {job.payload['n']}")

    for n, booking in enumerate(["b1", "b1", "b2"]):
        await enqueue_now(db, tenant_id="t", kind="k", payload={"n": n, "booking_id": booking}, idempotency_key=f"k{n}")
    worker = OutboxWorker(db, {"k": handler}, clock=FrozenClock(T0))
    assert await worker.run_once() == 2  # b1's second job waits for its first
    assert events.index("end 2") < events.index("end 0")  # another booking ran alongside
    assert await worker.run_once() == 1
    assert events.index("end 0") < events.index("start 1")  # same booking: one after another


class Sms:
    """An SMS provider whose first attempt at each listed message fails; records what was sent, in order."""

    def __init__(self, fail_first: set[str]) -> None:
        self.fail_first = set(fail_first)
        self.sent: list[str] = []

    async def __call__(self, job: JobView) -> None:
        action = str(job.payload["action"])
        if action in self.fail_first:
            self.fail_first.discard(action)
            raise ConnectionError(f"SMS provider down ({action})")
        self.sent.append(f"{job.payload['booking_id']}:{action}")


async def _booking_sms(db: Database, booking: str, action: str, tenant: str = "t") -> None:
    await enqueue_now(db, tenant_id=tenant, kind="sms", payload={"booking_id": booking, "action": action},
                      idempotency_key=f"{tenant}:{booking}:{action}")


async def test_a_failed_booked_sms_is_not_overtaken_by_the_cancelled_one() -> None:
    db = Database.memory()
    clock = FrozenClock(T0)
    sms = Sms(fail_first={"booked"})
    await _booking_sms(db, "b1", "booked")
    await _booking_sms(db, "b1", "cancelled")
    await _booking_sms(db, "b2", "booked")
    workers = [OutboxWorker(db, {"sms": sms}, clock=clock, base_delay_s=1, max_delay_s=1, batch_size=1 + i)
               for i in range(2)]
    for _ in range(3):  # batch after batch, on both workers: b1's cancelled SMS waits for its booked one
        await asyncio.gather(*(w.run_until_idle(timeout_s=5) for w in workers))
    assert sms.sent == ["b2:booked"]
    [retrying] = [j for j in await jobs(db) if j.status == "pending" and j.payload["action"] == "booked"]
    clock.set(T0 + timedelta(seconds=2))  # past the retry's backoff
    await asyncio.gather(*(w.run_until_idle(timeout_s=5) for w in workers))
    assert sms.sent == ["b2:booked", "b1:booked", "b1:cancelled"]
    assert retrying.attempts == 1 and {j.status for j in await jobs(db)} == {"done"}


async def test_a_running_job_holds_back_the_next_one_with_its_key() -> None:
    db = Database.memory()
    await _booking_sms(db, "b1", "booked")
    await _booking_sms(db, "b1", "cancelled")
    first = OutboxWorker(db, {}, clock=FrozenClock(T0))
    [claimed] = await db.run(first._claim)  # a worker holds the booked SMS (running)
    assert claimed.payload["action"] == "booked" and claimed.ordering_key == "b1"
    assert await db.run(OutboxWorker(db, {}, clock=FrozenClock(T0))._claim) == []


async def test_a_dead_letter_no_longer_holds_back_its_key_and_other_tenants_never_wait() -> None:
    db = Database.memory()
    clock = FrozenClock(T0)
    sms = Sms(fail_first={"booked"})
    await enqueue_now(db, tenant_id="t", kind="sms", payload={"booking_id": "b1", "action": "booked"},
                      idempotency_key="t:b1:booked", max_attempts=1)
    await _booking_sms(db, "b1", "cancelled")
    await _booking_sms(db, "b1", "moved", tenant="other")  # same booking id, another tenant: its own order
    worker = OutboxWorker(db, {"sms": sms}, clock=clock)
    assert await worker.run_once() == 2  # t's booked SMS (dies at once) and the other tenant's
    assert sms.sent == ["b1:moved"] and [j.payload["action"] for j in await list_dead(db)] == ["booked"]
    assert await worker.run_once() == 1
    assert sms.sent == ["b1:moved", "b1:cancelled"]


@pytest.mark.parametrize(("lease_s", "timeout_s"), [(30, 30), (10, 30)])
def test_a_lease_that_does_not_outlive_the_job_timeout_is_refused(lease_s: float, timeout_s: float) -> None:
    with pytest.raises(ValueError, match=r"lease_s .* must be longer than job_timeout_s"):
        OutboxWorker(Database.memory(), {}, lease_s=lease_s, job_timeout_s=timeout_s)
