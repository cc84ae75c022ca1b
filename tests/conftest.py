"""Shared test fixtures: the embedded engines (loaded once per test process), real peers, PostgreSQL."""
from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "tests" / "scenarios" / "examples"
#: a running PostgreSQL the tests may wipe (`.ci/run` starts a throwaway one and exports it)
POSTGRES_URL_ENV = "SPOTFUNNEL_POSTGRES_URL"


@pytest.fixture(scope="session")
def services():  # type: ignore[no-untyped-def]
    from spotfunnel.calls.services import embedded_services

    return embedded_services()


def _missing_peer(message: str) -> None:
    """Skip on a dev machine; fail in CI (`.ci/run` sets SPOTFUNNEL_REQUIRE_PEERS=1 and installs every peer)."""
    if os.environ.get("SPOTFUNNEL_REQUIRE_PEERS") == "1":
        pytest.fail(message)
    pytest.skip(message)


def require_peer(binary: str, package: str) -> str:
    """Path of a real protocol peer (sipp, chromium). Missing: skip on a dev machine, fail in CI.

    `.ci/run` installs the peers from Debian and sets SPOTFUNNEL_REQUIRE_PEERS=1, so a test against
    a real peer can never pass in CI by being skipped.
    """
    path = shutil.which(binary)
    if path:
        return path
    _missing_peer(f"{binary} not found: install the Debian package {package!r} (`.ci/run` does)")
    raise AssertionError("unreachable")


def postgres_binaries() -> Path | None:
    """The folder holding initdb and pg_ctl: on PATH, or Debian's /usr/lib/postgresql/<version>/bin."""
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return Path(on_path).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    return Path(versions[-1]).parent if versions else None


def _as_server_user(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run its tools as the `postgres` user then."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@contextlib.contextmanager
def throwaway_postgres(binaries: Path) -> Iterator[str]:
    """A fresh PostgreSQL cluster in a temp folder on a free loopback port; its URL; stopped and removed after."""
    root = Path(tempfile.mkdtemp(prefix="sf-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, user="postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    data = root / "data"

    def run(cmd: list[str]) -> None:
        subprocess.run(_as_server_user(cmd), check=True, capture_output=True, timeout=120)

    run([str(binaries / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
    opts = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=50"
    run([str(binaries / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(root / "log"), "-w", "start"])
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        run([str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"])
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL to test against: SPOTFUNNEL_POSTGRES_URL, else a throwaway cluster from the local
    server binaries. Missing: skip on a dev machine, fail in CI, like SIPp and Chromium."""
    url = os.environ.get(POSTGRES_URL_ENV)
    if url:
        yield url
        return
    binaries = postgres_binaries()
    if binaries is None:
        _missing_peer(f"PostgreSQL server binaries (initdb, pg_ctl) not found: install the Debian package "
                      f"'postgresql' or set {POSTGRES_URL_ENV} (`.ci/run` does both)")
    if os.geteuid() == 0 and subprocess.run(["id", "postgres"], capture_output=True).returncode != 0:
        _missing_peer("running as root without a 'postgres' user to run the server: install the Debian package "
                      "'postgresql' (it creates the user)")
    assert binaries is not None
    with throwaway_postgres(binaries) as started:
        yield started
