"""Shared test fixtures: the embedded engines, loaded once per test process."""
from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "tests" / "scenarios" / "examples"


@pytest.fixture(scope="session")
def services():  # type: ignore[no-untyped-def]
    from spotfunnel.calls.services import embedded_services

    return embedded_services()


def require_peer(binary: str, package: str) -> str:
    """Path of a real protocol peer (sipp, chromium). Missing: skip on a dev machine, fail in CI.

    `.ci/run` installs the peers from Debian and sets SPOTFUNNEL_REQUIRE_PEERS=1, so a test against
    a real peer can never pass in CI by being skipped.
    """
    import os
    import shutil

    path = shutil.which(binary)
    if path:
        return path
    message = f"{binary} not found: install the Debian package {package!r} (`.ci/run` does)"
    if os.environ.get("SPOTFUNNEL_REQUIRE_PEERS") == "1":
        pytest.fail(message)
    pytest.skip(message)
