"""Store figures: how long a fresh in-memory database takes to migrate (eval makes one per scenario),
and outbox claims per second with ordering keys, on SQLite. Prints figures; asserts nothing."""
from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from spotfunnel.store.db import Database  # noqa: E402
from spotfunnel.store.outbox import enqueue_now  # noqa: E402
from spotfunnel.workflows.worker import JobView, OutboxWorker  # noqa: E402


def migrate_ms(rounds: int) -> list[float]:
    Database.memory()  # warm imports and Alembic's script directory
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        Database.memory()
        times.append((time.perf_counter() - started) * 1000)
    return times


async def ordered_jobs_per_s(bookings: int, per_booking: int) -> float:
    db = Database.memory()
    for b in range(bookings):
        for n in range(per_booking):
            await enqueue_now(db, tenant_id="t", kind="k", payload={"booking_id": f"b{b}", "n": n},
                              idempotency_key=f"b{b}:{n}")

    async def handler(job: JobView) -> None:
        return None

    worker = OutboxWorker(db, {"k": handler}, batch_size=20)
    started = time.perf_counter()
    ran = await worker.run_until_idle(timeout_s=120)
    return ran / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--short", action="store_true", help="a few rounds only (CI proves it still runs)")
    args = parser.parse_args()
    rounds, bookings = (3, 10) if args.short else (30, 200)
    times = migrate_ms(rounds)
    print(f"store_migrate: fresh in-memory database migrated in median {statistics.median(times):.0f} ms, "
          f"max {max(times):.0f} ms over {rounds} rounds")
    rate = asyncio.run(ordered_jobs_per_s(bookings, 3))
    print(f"store_migrate: outbox ran {bookings * 3} jobs over {bookings} ordering keys at {rate:.0f} jobs/s")


if __name__ == "__main__":
    main()
