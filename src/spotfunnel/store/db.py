"""The database handle: a SQLAlchemy engine, one-transaction units of work for async callers, migrations."""
from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

T = TypeVar("T")

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_IMMEDIATE = "spotfunnel_sqlite_immediate"
SQLITE_BUSY_TIMEOUT_MS = 10_000
_MIGRATION_LOCK = threading.Lock()
# Names, numbers and transcripts live in these files: only their owner may read them.
DATA_FILE_MODE = 0o600
DATA_DIR_MODE = 0o700
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


class DatabaseLocationError(Exception):
    """The database file cannot be created or opened where the URL points; the message says how to fix it."""


class Database:
    """One database (SQLite by default, PostgreSQL at scale) and its units of work.

    `await db.run(fn)` runs `fn(session)` in a worker thread inside one transaction: commit when `fn`
    returns, rollback when it raises. `write=True` (the default) takes SQLite's write lock up front
    (BEGIN IMMEDIATE), so a read-check-then-insert cannot race another writer.

    A SQLite file and its -wal/-shm are owner-only (0600), created so or tightened on open; a
    missing folder is created owner-only (0700); DatabaseLocationError when that cannot be done.
    Call content in it is read and written through store/content.py's column types only.
    """

    def __init__(self, url: str, *, echo: bool = False) -> None:
        parsed = make_url(url)
        if parsed.drivername == "postgresql":  # the driver this project ships (psycopg 3)
            parsed = parsed.set(drivername="postgresql+psycopg")
            url = parsed.render_as_string(hide_password=False)
        self.url = url
        self.dialect = parsed.get_backend_name()
        self._memory = self.dialect == "sqlite" and parsed.database in (None, "", ":memory:")
        if self.dialect == "sqlite" and not self._memory and parsed.database:
            secure_sqlite_file(Path(parsed.database))
        # An in-memory SQLite database is one connection shared by all threads: serialize its use.
        self._serial: threading.Lock | None = threading.Lock() if self._memory else None
        self.engine: Engine = self._create_engine(url, echo)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"

    @classmethod
    def memory(cls) -> "Database":
        """A fresh, migrated in-memory SQLite database (tests, eval scenarios)."""
        db = cls("sqlite://")
        db.migrate()
        return db

    for_tests = memory

    def _create_engine(self, url: str, echo: bool) -> Engine:
        if not self.is_sqlite:
            return create_engine(url, echo=echo, pool_pre_ping=True)
        kwargs: dict[str, Any] = {"connect_args": {"check_same_thread": False}}
        if self._memory:
            kwargs["poolclass"] = StaticPool
        engine = create_engine(url, echo=echo, **kwargs)
        _install_sqlite_hooks(engine, wal=not self._memory)
        return engine

    @contextlib.contextmanager
    def _serialized(self) -> Iterator[None]:
        if self._serial is None:
            yield
            return
        with self._serial:
            yield

    def run_sync(self, fn: Callable[[Session], T], *, write: bool = True) -> T:
        """Runs `fn(session)` in one transaction in the calling thread; commit on success, rollback on error."""
        with self._serialized(), self._sessions() as session:
            if write and self.is_sqlite:
                session.connection(execution_options={_IMMEDIATE: True})
            try:
                result = fn(session)
                session.commit()
            except BaseException:
                session.rollback()
                raise
            return result

    async def run(self, fn: Callable[[Session], T], *, write: bool = True) -> T:
        """Runs `fn(session)` in a worker thread in one transaction; commit on success, rollback on error."""
        return await asyncio.to_thread(self.run_sync, fn, write=write)

    def migrate(self) -> None:
        """Brings the schema to the newest revision (Alembic `upgrade head`), using the packaged migrations."""
        from alembic import command

        # Alembic keeps its migration context in module globals: one migration at a time per process.
        with _MIGRATION_LOCK, self._serialized(), self.engine.begin() as conn:
            cfg = _alembic_config(conn)
            command.upgrade(cfg, "head")

    def dispose(self) -> None:
        self.engine.dispose()


def secure_sqlite_file(path: Path) -> None:
    """Creates the database file owner-only (folders 0700, file 0600) or tightens an existing one and
    its -wal/-shm/-journal to 0600. SQLite creates its side files with the main file's mode."""
    if str(path).startswith("file:"):
        return  # a URI filename: SQLite opens it as given
    folder = path.parent if str(path.parent) else Path(".")
    try:
        make_private_folder(folder)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, DATA_FILE_MODE)  # mode applies only when it is created
        os.close(fd)
        for candidate in [path, *(path.with_name(path.name + suffix) for suffix in SQLITE_SIDE_FILES)]:
            if candidate.exists() and stat.S_IMODE(candidate.stat().st_mode) & 0o077:
                os.chmod(candidate, DATA_FILE_MODE)
    except OSError as exc:
        raise DatabaseLocationError(
            f"cannot use {path} as the database: {exc.strerror or exc}; pick a file in a folder you can write "
            f"(e.g. --db sqlite:///{Path.home() / '.spotfunnel' / 'spotfunnel.db'}) or fix the folder's owner "
            "and permissions") from None


def make_private_folder(folder: Path) -> None:
    """Creates `folder` and any missing parents as 0700 (mode set explicitly: the umask may be looser)."""
    missing = []
    current = folder
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for created in reversed(missing):
        created.mkdir(mode=DATA_DIR_MODE)
        os.chmod(created, DATA_DIR_MODE)
    if not folder.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(folder))


def _alembic_config(conn: Connection) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = conn
    return cfg


def _install_sqlite_hooks(engine: Engine, *, wal: bool) -> None:
    """Pragmas on every connection, and explicit BEGIN / BEGIN IMMEDIATE instead of pysqlite's own."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (SQLAlchemy's pysqlite recipe)
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        if wal:
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get(_IMMEDIATE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
