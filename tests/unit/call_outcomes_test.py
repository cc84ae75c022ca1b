"""Whole in-process calls that end without a booking: each gets an outcome and a report, and none waits forever."""
from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Awaitable, Callable

import pytest

from spotfunnel.audio.frames import SILENCE_FRAME
from spotfunnel.calls.call import CallRecord, CallSetup, run_call
from spotfunnel.calls.services import CallServices
from spotfunnel.clock import FrozenClock
from spotfunnel.conversation.agent import load_agent
from spotfunnel.integrations.sms import SmsSink
from spotfunnel.store.calls import call_by_provider_id
from spotfunnel.store.db import Database
from spotfunnel.store.queries import call_report
from spotfunnel.transports.base import CallStarted, Hangup
from spotfunnel.transports.local import LocalCallerLine, LocalTransport
from spotfunnel.voice.speech_io import Transcript
from spotfunnel.voice.vad import EnergyFrameVad
from spotfunnel.workflows.jobs import default_handlers
from spotfunnel.workflows.worker import OutboxWorker

from voice_fakes import ScriptedStt, ToneTts, tone_frames

SALON = "maple-street-salon"
PROVIDER_ID = "a84b4c76e66710@pc33.example.com"
MAX_FRAMES = 6000  # two minutes of audio time: far more than any of these calls needs
AGENT_SIDE_S = 30.0  # a bound on the agent side finishing once the caller is done (it used to wait forever)


class FailingStt:
    """Every recognition fails, as when all STT providers are down."""

    name = "failing"
    typical_latency_ms = 0

    async def transcribe(self, pcm: bytes, *, vocabulary: list[str], speculative: bool = False) -> Transcript:
        raise RuntimeError("all STT providers failed")


class RefusingTransport(LocalTransport):
    """The provider refuses every transfer; the caller stays on the line."""

    async def transfer(self, to: str) -> bool:
        self.control_requests.append(("transfer", to))
        return False


class HangupDuringTransfer(LocalTransport):
    """The caller hangs up while the transfer request is out; then the provider refuses it."""

    async def transfer(self, to: str) -> bool:
        self.control_requests.append(("transfer", to))
        self.inbound.put_nowait(Hangup("caller hung up"))
        while not self.inbound.empty():  # the voice loop takes the hang-up and ends
            await asyncio.sleep(0)
        await asyncio.sleep(0)
        return False


Caller = Callable[[LocalCallerLine], Awaitable[None]]


async def stay_quiet(line: LocalCallerLine) -> None:
    for _ in range(MAX_FRAMES):
        if line.closed:
            return
        await line.exchange(SILENCE_FRAME)


async def speak_after_greeting(line: LocalCallerLine) -> None:
    """Wait out the greeting (tone frames), say one turn (a second of tone), then stay on the line."""
    heard, quiet = False, 0
    while not (heard and quiet >= 25) and not line.closed:
        loud = (await line.exchange(SILENCE_FRAME)) not in (None, SILENCE_FRAME)
        heard, quiet = heard or loud, 0 if loud else quiet + 1
    for frame in tone_frames(1000):
        await line.exchange(frame)
    await stay_quiet(line)


async def call(stt: object, caller: Caller, transport: LocalTransport | None = None, *, db: Database | None = None,
               provider_id: str = PROVIDER_ID) -> tuple[CallRecord, Database]:
    """One in-process call (lockstep) over `db` (a fresh in-memory one by default), then the outbox run dry."""
    agent = load_agent(SALON)
    db = db or await asyncio.to_thread(Database.memory)
    setup = CallSetup(agent=agent, db=db, clock=FrozenClock(datetime.fromisoformat("2026-12-10T15:00:00-08:00")))
    transport = transport or LocalTransport(lockstep=True)
    line = LocalCallerLine(transport)
    services = CallServices(stt=stt, tts=ToneTts(), vad_factory=EnergyFrameVad)  # type: ignore[arg-type]
    record = CallRecord(call_id="")
    agent_side = asyncio.create_task(run_call(transport, services, lambda _s: setup, lambda _s: record))
    await line.start(CallStarted(call_id=provider_id, caller_id="+14155550123", called=agent.profile.phone,
                                 tenant_id=SALON))
    await caller(line)
    if not line.closed:
        await line.hangup()
    try:
        await asyncio.wait_for(agent_side, AGENT_SIDE_S)
    except TimeoutError:
        pytest.fail("the call never ended on the agent's side")
    await OutboxWorker(db, default_handlers(db, SmsSink(db))).run_until_idle()
    return record, db


async def assert_reported(record: CallRecord, db: Database, outcome: str) -> None:
    assert record.outcome == outcome
    report = await call_report(db, record.call_id)
    assert report is not None and report.outcome == outcome
    [row] = await call_by_provider_id(db, SALON, PROVIDER_ID)
    assert (row.status, row.outcome, row.call_id) == ("ended", outcome, record.call_id)


async def test_silence_ends_with_no_input() -> None:
    record, db = await call(ScriptedStt([]), stay_quiet)
    await assert_reported(record, db, "no_input")


async def test_speech_recognition_failure_hands_off() -> None:
    transport = LocalTransport(lockstep=True)
    record, db = await call(FailingStt(), speak_after_greeting, transport)
    assert [kind for kind, _to in transport.control_requests] == ["transfer"]
    await assert_reported(record, db, "handoff")


async def test_refused_transfer_ends_with_handoff_failed() -> None:
    transport = RefusingTransport(lockstep=True)
    record, db = await call(ScriptedStt(["Can I talk to a person?"]), speak_after_greeting, transport)
    assert [kind for kind, _to in transport.control_requests] == ["transfer", "hangup"]
    agent_lines = [t["text"] for t in record.transcript if t["role"] == "agent"]
    assert "4 1 5, 5 5 5, 0 1 9 9" in agent_lines[-1]  # the caller heard the number instead of dead air
    await assert_reported(record, db, "handoff_failed")


async def test_a_transfer_refused_after_the_caller_hung_up_still_ends() -> None:
    transport = HangupDuringTransfer(lockstep=True)
    record, db = await call(ScriptedStt(["Can I talk to a person?"]), speak_after_greeting, transport)
    unheard = record.events.of("agent_speech_unheard")
    assert len(unheard) == 1 and "0 1 9 9" in unheard[0].data["text"]  # offered after the line went: not heard
    assert all("0 1 9 9" not in t["text"] for t in record.transcript)
    await assert_reported(record, db, "handoff_failed")


async def test_the_live_transcript_is_logged_at_debug_only() -> None:
    from structlog.testing import capture_logs

    with capture_logs() as logs:
        record, _db = await call(ScriptedStt(["Can I talk to a person?"]), speak_after_greeting,
                                 RefusingTransport(lockstep=True))
    content = [e for e in logs if e["event"] in ("call.caller", "call.agent", "call.agent_interrupted")]
    assert {e["event"] for e in content} >= {"call.caller", "call.agent"}
    assert {e["log_level"] for e in content} == {"debug"}
    above_debug = " ".join(str(e) for e in logs if e["log_level"] != "debug")
    assert "talk to a person" not in above_debug and "0 1 9 9" not in above_debug
    [ended] = [e for e in logs if e["event"] == "call.ended"]
    assert ended["log_level"] == "info" and ended["outcome"] == record.outcome == "handoff_failed"
