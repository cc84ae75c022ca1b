"""`spotfunnel eval`: runs scenario calls through the whole voice path and checks what happened."""
from __future__ import annotations

import asyncio
import statistics
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spotfunnel.audio.wav import AudioFileError, read_wav_pcm16k, write_stereo_wav
from spotfunnel.calls.call import CallRecord, CallSetup, run_call
from spotfunnel.calls.caller import CallerTrace, CallerTurn, SimulatedCaller, trim_silence
from spotfunnel.calls.lines import open_line
from spotfunnel.calls.matching import normalize_name, phrase_said
from spotfunnel.calls.scenario import Scenario
from spotfunnel.calls.services import CallServices
from spotfunnel.clock import FrozenClock
from spotfunnel.conversation.agent import AgentConfigError, load_agent
from spotfunnel.integrations.sms import SmsSink
from spotfunnel.store.db import Database
from spotfunnel.store.ledger import BookingLedger
from spotfunnel.store.queries import sms_sent
from spotfunnel.workflows.jobs import default_handlers
from spotfunnel.workflows.worker import OutboxWorker

CALL_GRACE_S = 30.0  # how long after the caller is done the agent side may take to wrap up


@dataclass
class ScenarioResult:
    name: str
    passed: bool
    failures: list[str] = field(default_factory=list)
    turns: int = 0
    transcript: list[dict[str, Any]] = field(default_factory=list)
    turn_latency_ms: list[float | None] = field(default_factory=list)
    record: CallRecord | None = None
    trace: CallerTrace | None = None

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "passed": self.passed, "failures": self.failures, "turns": self.turns,
                "transcript": self.transcript, "turn_latency_ms": self.turn_latency_ms}


class CallerVoice:
    """Synthesizes scenario turns that have no recording, once per text (a different pace from the agent)."""

    def __init__(self, services: CallServices) -> None:
        from spotfunnel.providers.tts.piper_local import PiperLocalTts

        self._tts = PiperLocalTts(length_scale=1.08, noise_scale=0.0, noise_w_scale=0.0)  # deterministic: same audio every run
        self._cache: dict[str, bytes] = {}

    async def turn_audio(self, scenario: Scenario, index: int) -> bytes:
        turn = scenario.turns[index]
        path = scenario.audio_path(turn)
        if path is not None:
            return trim_silence(await asyncio.to_thread(read_wav_pcm16k, path))
        if turn.say not in self._cache:
            chunks = [c async for c in self._tts.synthesize(turn.say)]
            self._cache[turn.say] = trim_silence(b"".join(chunks))
        return self._cache[turn.say]


class Evaluator:
    def __init__(self, services: CallServices, transport: str = "local", fast: bool = False,
                 wav_dir: Path | None = None, server_url: str | None = None, directory: Any = None) -> None:
        self.services, self.transport, self.fast = services, transport, fast
        self.wav_dir, self.server_url, self.directory = wav_dir, server_url, directory
        self.voice = CallerVoice(services)

    async def run(self, scenario: Scenario) -> ScenarioResult:
        try:
            agent = load_agent(scenario.tenant)
        except AgentConfigError as exc:
            return ScenarioResult(scenario.name, False, [str(exc)])
        try:
            turns = [CallerTurn(t.say, await self.voice.turn_audio(scenario, i), t.pause_ms, t.barge_in_ms)
                     for i, t in enumerate(scenario.turns)]
        except AudioFileError as exc:
            return ScenarioResult(scenario.name, False, [str(exc)])
        db = await asyncio.to_thread(Database.memory)
        clock = FrozenClock(scenario.now)
        ledger = BookingLedger(db, agent.profile, clock)
        await ledger.seed([b.model_dump() for b in scenario.existing_bookings])
        setup = CallSetup(agent=agent, db=db, clock=clock)
        record, trace = await self._call(scenario, setup, turns)
        await OutboxWorker(db, default_handlers(db, SmsSink(db))).run_until_idle(timeout_s=30)
        result = await self._judge(scenario, db, ledger, record, trace)
        if self.wav_dir is not None:
            self.wav_dir.mkdir(parents=True, exist_ok=True)
            write_stereo_wav(self.wav_dir / f"{scenario.name}.wav", bytes(trace.caller_pcm), bytes(trace.agent_pcm))
        db.engine.dispose()
        return result

    async def _call(self, scenario: Scenario, setup: CallSetup,
                    turns: list[CallerTurn]) -> tuple[CallRecord, CallerTrace]:
        record = CallRecord(call_id=f"eval-{scenario.name}-{uuid.uuid4().hex[:8]}")
        line, agent_side = await open_line(self.transport, self.services, setup, record, scenario.caller_id,
                                           lockstep=self.fast, server_url=self.server_url,
                                           directory=self.directory)
        caller = SimulatedCaller(line, turns, record.events, realtime=not self.fast)
        trace = await caller.run()
        try:
            await asyncio.wait_for(agent_side, CALL_GRACE_S)
        except asyncio.TimeoutError:
            record.error = "the agent side did not finish after the caller hung up"
        return record, trace

    async def _judge(self, s: Scenario, db: Database, ledger: BookingLedger, record: CallRecord,
                     trace: CallerTrace) -> ScenarioResult:
        failures: list[str] = []
        exp = s.expect
        if record.error:
            failures.append(f"call error: {record.error}")
        if record.outcome != exp.outcome:
            failures.append(f"outcome: expected {exp.outcome}, got {record.outcome}")
        if exp.bookings is not None:
            want = sorted((normalize_name(b.name), b.phone, b.service, b.start.timestamp()) for b in exp.bookings)
            have = sorted((normalize_name(b.name), b.phone, b.service_id, b.start.timestamp())
                          for b in await ledger.active())
            if want != have:
                failures.append(f"bookings: expected {_fmt(want)}, got {_fmt(have)}")
        if exp.sms_to is not None:
            got = sorted({m.to for m in await sms_sent(db, s.tenant)})
            if sorted(set(exp.sms_to)) != got:
                failures.append(f"sms_to: expected {sorted(set(exp.sms_to))}, got {got}")
        agent_text = " ".join(e["text"] for e in record.transcript if e.get("role") == "agent")
        for phrase in exp.agent_said or []:
            if not phrase_said(phrase, agent_text):
                failures.append(f"agent_said: the agent never said {phrase!r}")
        return ScenarioResult(s.name, not failures, failures, turns=len(trace.said), transcript=record.transcript,
                              turn_latency_ms=trace.latencies_ms if not self.fast else [None] * len(trace.said),
                              record=record, trace=trace)


def _fmt(rows: list[tuple[str, str, str, float]]) -> str:
    from datetime import datetime, timezone

    return "[" + "; ".join(f"{n} {p} {svc} {datetime.fromtimestamp(t, timezone.utc).isoformat()}"
                           for n, p, svc, t in rows) + "]"


def latency_summary(results: list[ScenarioResult]) -> dict[str, float | None]:
    values = sorted(v for r in results for v in r.turn_latency_ms if v is not None)
    if not values:
        return {"p50": None, "p95": None, "max": None}
    return {"p50": round(statistics.median(values)), "p95": round(percentile(values, 95)), "max": round(values[-1])}


def percentile(sorted_values: list[float], pct: float) -> float:
    if not sorted_values:
        return float("nan")
    k = (len(sorted_values) - 1) * pct / 100
    lo, hi = int(k), min(int(k) + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


async def run_all(evaluator: Evaluator, scenarios: list[Scenario], concurrency: int) -> list[ScenarioResult]:
    gate = asyncio.Semaphore(max(1, concurrency))

    async def one(s: Scenario) -> ScenarioResult:
        async with gate:
            try:
                return await evaluator.run(s)
            except Exception as exc:  # one broken scenario must not stop the others
                return ScenarioResult(s.name, False, [f"crashed: {type(exc).__name__}: {exc}"])

    return list(await asyncio.gather(*(one(s) for s in scenarios)))
