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
