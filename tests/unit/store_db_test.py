"""Database: migrations (fast, packaged, matching the models), pragmas, transactions, aware datetimes."""
from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import select, text
from sqlalchemy.exc import StatementError

from spotfunnel.store.db import Database, DatabaseLocationError
from spotfunnel.store.models import Base, SmsMessage


def _head_revision() -> str | None:
    """The newest packaged migration (each engineer's new revision moves it)."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from spotfunnel.store.db import MIGRATIONS_DIR

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return ScriptDirectory.from_config(cfg).get_current_head()


def test_memory_database_is_migrated_and_matches_models() -> None:
    db = Database.memory()
    with db.engine.connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() == _head_revision()
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []


def test_migrate_is_repeatable() -> None:
    db = Database.for_tests()
    db.migrate()  # already at head: no-op (its speed is a figure in benchmarks/store_migrate.py)
    with db.engine.connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() == _head_revision()


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    old = os.umask(0o022)  # what most shells have: files 0644, folders 0755 unless made otherwise
    yield
    os.umask(old)


def test_a_new_database_file_and_its_wal_are_owner_only(tmp_path: Path, permissive_umask: None) -> None:
    path = tmp_path / "made" / "by" / "spotfunnel" / "sf.db"
    db = Database(f"sqlite:///{path}")
    db.migrate()
    db.run_sync(lambda s: s.add(_sms("a")))
    assert {p.name: _mode(p) for p in path.parent.iterdir()} == {
        "sf.db": 0o600, "sf.db-wal": 0o600, "sf.db-shm": 0o600}
    assert _mode(path.parent) == _mode(path.parent.parent) == _mode(path.parent.parent.parent) == 0o700
    db.dispose()


def test_an_existing_world_readable_database_is_tightened_on_open(tmp_path: Path, permissive_umask: None) -> None:
    path = tmp_path / "sf.db"
    old = Database(f"sqlite:///{path}")
    old.migrate()
    old.run_sync(lambda s: s.add(_sms("a")))
    for leaked in (path, path.with_name("sf.db-wal"), path.with_name("sf.db-shm")):
        os.chmod(leaked, 0o644)  # as an older SpotFunnel left them
    Database(f"sqlite:///{path}").dispose()
    assert [_mode(p) for p in (path, path.with_name("sf.db-wal"), path.with_name("sf.db-shm"))] == [0o600] * 3
    old.dispose()


def test_a_database_path_through_a_file_says_what_to_do(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(DatabaseLocationError, match=r"cannot use .*file/sf\.db as the database: Not a directory; pick"):
        Database(f"sqlite:///{tmp_path / 'file' / 'sf.db'}")


def test_file_database_uses_wal_and_foreign_keys(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'sf.db'}")
    db.migrate()
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000
    db.dispose()


def _sms(key: str, at: datetime | None = None) -> SmsMessage:
    msg = SmsMessage(tenant_id="t", to="+14155550100", body="hi", idempotency_key=key, provider="sink")
    if at is not None:
        msg.created_at = at
    return msg


async def test_run_commits_on_success_and_rolls_back_on_error() -> None:
    db = Database.memory()
    await db.run(lambda s: s.add(_sms("a")))

    def fail(session):  # type: ignore[no-untyped-def]
        session.add(_sms("b"))
        session.flush()
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        await db.run(fail)
    keys = await db.run(lambda s: list(s.scalars(select(SmsMessage.idempotency_key))), write=False)
    assert keys == ["a"]


async def test_datetimes_round_trip_timezone_aware_utc() -> None:
    db = Database.memory()
    local = datetime(2026, 3, 8, 10, 30, tzinfo=timezone(timedelta(hours=-7)))
    await db.run(lambda s: s.add(_sms("a", local)))
    stored = await db.run(lambda s: s.scalar(select(SmsMessage.created_at)), write=False)
    assert stored is not None and stored.tzinfo is not None
    assert stored == local and stored.utcoffset() == timedelta(0)


async def test_naive_datetimes_are_refused() -> None:
    db = Database.memory()
    with pytest.raises(StatementError, match="naive datetime"):
        await db.run(lambda s: s.add(_sms("a", datetime(2026, 1, 1))) or s.flush())


async def test_unique_idempotency_key_is_enforced() -> None:
    db = Database.memory()
    await db.run(lambda s: s.add(_sms("a")))
    with pytest.raises(Exception, match="UNIQUE"):
        await db.run(lambda s: s.add(_sms("a")))
    count = await db.run(lambda s: s.execute(text("select count(*) from sms_messages")).scalar(), write=False)
    assert count == 1


async def test_memory_databases_can_be_made_concurrently() -> None:
    """eval --concurrency makes one fresh database per scenario from several threads at once."""
    import asyncio

    from spotfunnel.store.db import Database

    dbs = await asyncio.gather(*(asyncio.to_thread(Database.memory) for _ in range(6)))
    assert len({id(db.engine) for db in dbs}) == 6
