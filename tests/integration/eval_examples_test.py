"""The example scenarios, whole calls through real audio and the real local models, in every transport."""
from __future__ import annotations

import io
import json

import pytest
from rich.console import Console

from spotfunnel.calls.eval_cli import run_eval

from conftest import EXAMPLES

pytestmark = pytest.mark.models


@pytest.mark.parametrize("transport", ["local", "twilio", "sip"])
async def test_examples_pass(transport: str) -> None:
    out = io.StringIO()
    code = await run_eval([EXAMPLES], fast=True, as_json=True, concurrency=2, transport=transport, wav_dir=None,
                          out=out, console=Console(file=io.StringIO()))
    report = json.loads(out.getvalue().strip().splitlines()[-1])
    assert report["scenarios"] == 4
    assert report["failed"] == [], out.getvalue()
    assert code == 0
    booked = next(r for r in report["results"] if r["name"] == "new-booking-basic")
    agent_lines = [t["text"] for t in booked["transcript"] if t["role"] == "agent"]
    assert any("Thursday, December 10" in line for line in agent_lines)  # the read-back was heard


async def test_more_phrasings_and_flows_pass() -> None:
    """Twenty more calls: synonyms, closed days, corrections, reschedule, questions, hand-off, DST weeks."""
    out = io.StringIO()
    code = await run_eval([EXAMPLES.parent / "more", EXAMPLES.parent / "barge"], fast=True, as_json=True,
                          concurrency=2, transport="local", wav_dir=None, out=out,
                          console=Console(file=io.StringIO()))
    report = json.loads(out.getvalue().strip().splitlines()[-1])
    assert report["scenarios"] >= 21
    assert report["failed"] == [], out.getvalue()
    assert code == 0
