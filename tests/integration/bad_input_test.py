"""Bad input gets a clear error or a graceful path: scenario files, tenants, WAVs, silence, hang-ups."""
from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from spotfunnel.calls.call import CallRecord, CallSetup
from spotfunnel.calls.caller import CallerTurn, SimulatedCaller
from spotfunnel.calls.eval_cli import run_eval
from spotfunnel.calls.lines import open_line
from spotfunnel.clock import FrozenClock
from spotfunnel.conversation.agent import load_agent
from spotfunnel.store.db import Database
from spotfunnel.store.ledger import BookingLedger
from spotfunnel.store.queries import call_report
from spotfunnel.workflows.jobs import default_handlers
from spotfunnel.workflows.worker import OutboxWorker
from spotfunnel.integrations.sms import SmsSink
from datetime import datetime

GOOD = """name: {name}
tenant: {tenant}
now: "2026-12-08T10:00:00-08:00"
caller_id: "+14155550155"
turns:
  - say: "Are you open on Mondays?"
{extra}
expect:
  outcome: answered
"""


async def _eval(tmp_path: Path, text: str) -> tuple[int, str]:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    out, err = io.StringIO(), io.StringIO()
    code = await run_eval([path], fast=True, as_json=True, concurrency=1, transport="local", wav_dir=None,
                          out=out, console=Console(file=err, width=200))
    return code, out.getvalue() + err.getvalue()


async def test_scenario_that_does_not_parse_names_file_and_line(tmp_path: Path) -> None:
    code, text = await _eval(tmp_path, "name: x\nturns: [\n  - say: oops\n")
    assert code == 2
    assert "s.yaml:" in text and "not valid YAML" in text


async def test_scenario_with_bad_field_names_the_field_and_line(tmp_path: Path) -> None:
    code, text = await _eval(tmp_path, GOOD.format(name="t", tenant="maple-street-salon", extra="    pause_ms: -5"))
    assert code == 2
    assert "s.yaml:7: turns.0.pause_ms" in text


@pytest.mark.models
async def test_unknown_tenant_fails_the_scenario_clearly(tmp_path: Path) -> None:
    code, text = await _eval(tmp_path, GOOD.format(name="t", tenant="no-such-salon", extra=""))
    assert code == 1
    assert "unknown tenant 'no-such-salon'" in text and "maple-street-salon" in text


@pytest.mark.models
async def test_wav_that_is_not_audio_fails_the_scenario_clearly(tmp_path: Path) -> None:
    (tmp_path / "noise.wav").write_bytes(b"this is not a wav file at all")
    code, text = await _eval(tmp_path, GOOD.format(name="t", tenant="maple-street-salon",
                                                   extra="    audio: noise.wav"))
    assert code == 1
    assert "noise.wav" in text


async def _local_call(services, turns: list[CallerTurn], tail_ticks: int | None = None):  # type: ignore[no-untyped-def]
    agent = load_agent("maple-street-salon")
    db = Database.memory()
    clock = FrozenClock(datetime.fromisoformat("2026-12-08T10:00:00-08:00"))
    record = CallRecord(call_id="bad-input")
    setup = CallSetup(agent=agent, db=db, clock=clock)
    line, agent_side = await open_line("local", services, setup, record, "+14155550111", lockstep=True)
    caller = SimulatedCaller(line, turns, record.events, realtime=False)
    trace = await caller.run()
    await agent_side
    await OutboxWorker(db, default_handlers(db, SmsSink(db))).run_until_idle()
    return db, record, trace, BookingLedger(db, agent.profile, clock)


@pytest.mark.models
async def test_a_caller_who_says_nothing_is_prompted_then_the_agent_hangs_up(services) -> None:  # type: ignore[no-untyped-def]
    import spotfunnel.calls.caller as caller_mod

    old = caller_mod.TAIL_MS
    caller_mod.TAIL_MS = 40_000
    try:
        db, record, trace, ledger = await _local_call(services, [])
    finally:
        caller_mod.TAIL_MS = old
    assert trace.ended_by == "agent"
    reprompts = [e for e in record.events.of("agent_speech_queued") if e.data.get("reprompt")]
    assert len(reprompts) == 2
    assert await ledger.active() == []
    report = await call_report(db, "bad-input")
    assert report is not None


@pytest.mark.models
async def test_hanging_up_mid_booking_leaves_no_booking_and_a_report(services) -> None:  # type: ignore[no-untyped-def]
    from spotfunnel.calls.eval import CallerVoice
    from spotfunnel.calls.scenario import Scenario

    scenario = Scenario.model_validate({
        "name": "hangup", "tenant": "maple-street-salon", "now": "2026-12-08T10:00:00-08:00",
        "caller_id": "+14155550111", "turns": [{"say": "I'd like to book a haircut on Thursday at eleven."}],
        "expect": {"outcome": "booked"}})
    voice = CallerVoice(services)
    turns = [CallerTurn(t.say, await voice.turn_audio(scenario, i)) for i, t in enumerate(scenario.turns)]
    db, record, trace, ledger = await _local_call(services, turns)
    assert trace.ended_by == "caller"
    assert await ledger.active() == []
    report = await call_report(db, "bad-input")
    assert report is not None and report.outcome in (None, "abandoned")
    assert any(t["role"] == "caller" for t in report.transcript)
