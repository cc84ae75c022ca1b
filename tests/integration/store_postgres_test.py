"""The store on a real PostgreSQL (a throwaway cluster from the local server binaries): schema,
no double booking under truly parallel writers, SKIP LOCKED job claims, idempotent effects."""
from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
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

INITDB = shutil.which("initdb")
PG_CTL = shutil.which("pg_ctl")


def _server_user_missing() -> bool:
    import pwd

    if os.geteuid() != 0:
        return False
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return True
    return False


pytestmark = [
    pytest.mark.skipif(not (INITDB and PG_CTL), reason="PostgreSQL server binaries (initdb, pg_ctl) not found"),
    pytest.mark.skipif(_server_user_missing(), reason="running as root without a 'postgres' user to run the server"),
]


def _as_server_user(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run its tools as the `postgres` user then."""
    if os.geteuid() != 0:
        return cmd
    return ["runuser", "-u", "postgres", "--", *cmd]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    root = Path(tempfile.mkdtemp(prefix="sf-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, user="postgres")
    data, port = root / "data", _free_port()
    run = lambda cmd: subprocess.run(_as_server_user(cmd), check=True, capture_output=True, timeout=120)  # noqa: E731
    run([str(INITDB), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
    opts = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=50"
    run([str(PG_CTL), "-D", str(data), "-o", opts, "-l", str(root / "log"), "-w", "start"])
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        run([str(PG_CTL), "-D", str(data), "-m", "immediate", "stop"])
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def pg(pg_url: str) -> Iterator[Database]:
    db = Database(pg_url)
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


async def test_parallel_bookings_of_one_slot_have_one_winner(pg: Database, pg_url: str) -> None:
    clock = FrozenClock(la(2026, 12, 8, 10))
    handles = [pg] + [Database(pg_url) for _ in range(3)]
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


async def test_workers_skip_locked_jobs(pg: Database, pg_url: str) -> None:
    for i in range(30):
        await enqueue_now(pg, tenant_id="t", kind="k", payload={"i": i}, idempotency_key=f"k{i}")
    seen: Counter[str] = Counter()

    async def handler(job: JobView) -> None:
        seen[job.id] += 1
        await asyncio.sleep(0.005)

    handles = [pg] + [Database(pg_url) for _ in range(2)]
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
