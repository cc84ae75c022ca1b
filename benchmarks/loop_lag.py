"""Event-loop lag with the machine's full call capacity: CPU work on the loop, before and after moving it.

Runs N real-time calls at once through the whole local voice path (Silero VAD, endpointing,
faster-whisper, the receptionist, piper) and samples the event loop's lag with a 5 ms sleeper, twice
in one process on the same calls and the same warmed models:

* before: Silero inference inline on the loop and `completes_answer` judged afresh on every frame
  (dateparser re-run until the turn ends), as the code did before issue 8;
* after: the VAD on its threads (voice.vad.frame_probability) and each distinct partial judged once.

Prints median / P95 / max loop lag per phase, the after/before ratios and one summary line. N
defaults to the call capacity the server admits (ops.capacity.DEFAULT_MAX_CALLS).

Usage:
    python benchmarks/loop_lag.py [--calls N] [--short] [--scenarios DIR]
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
for path in (REPO_ROOT / "src", REPO_ROOT / "benchmarks"):
    if str(path) not in sys.path:  # runnable without an installed package too
        sys.path.insert(0, str(path))

from turn_latency import LoopLagProbe, default_scenarios_dir, pct  # noqa: E402

from spotfunnel.calls.eval import Evaluator  # noqa: E402
from spotfunnel.calls.eval_cli import load_all, warmed_services  # noqa: E402
from spotfunnel.calls.scenario import Scenario  # noqa: E402
from spotfunnel.conversation.receptionist import ReceptionistPolicy  # noqa: E402
from spotfunnel.observability.logging import configure_logging  # noqa: E402
from spotfunnel.ops.capacity import DEFAULT_MAX_CALLS  # noqa: E402
from spotfunnel.voice.vad import SileroFrameVad  # noqa: E402

TARGET_MAX_LAG_MS = 20.0


class InlineSileroVad(SileroFrameVad):
    """The VAD as it ran before: the same model, inference on the event loop thread."""

    runs_off_loop = False


@contextlib.contextmanager
def cpu_work_on_the_loop() -> Iterator[None]:
    """The 'before' phase: Silero inline and completes_answer unmemoized, restored afterwards."""
    memoized = ReceptionistPolicy.completes_answer
    ReceptionistPolicy.completes_answer = ReceptionistPolicy._judge_partial  # type: ignore[method-assign]
    try:
        yield
    finally:
        ReceptionistPolicy.completes_answer = memoized  # type: ignore[method-assign]


@dataclass
class Phase:
    name: str
    lags_ms: list[float]
    session_max_ms: float
    passed: int
    calls: int
    wall_s: float
    failures: list[str]

    def line(self) -> str:
        lags = self.lags_ms
        return (f"{self.name:>6}: loop lag median {statistics.median(lags):5.2f} ms, P95 {pct(lags, 95):5.2f} ms, "
                f"max {max(lags):6.2f} ms over {len(lags)} samples; worst frame in a session "
                f"{self.session_max_ms:5.2f} ms; {self.passed}/{self.calls} calls passed in {self.wall_s:.0f} s"
                + "".join(f"\n        failed {f}" for f in self.failures))


async def run_phase(name: str, evaluator: Evaluator, scenarios: list[Scenario]) -> Phase:
    probe = LoopLagProbe()
    probe.start()
    started = time.perf_counter()
    try:
        with probe.during():
            results = await asyncio.gather(*(evaluator.run(s) for s in scenarios))
    finally:
        await probe.stop()
    session_max = max((r.record.max_loop_lag_ms for r in results if r.record is not None), default=0.0)
    failures = [f"{r.name}: {'; '.join(r.failures)}" for r in results if not r.passed]
    return Phase(name, [lag for _t, lag in probe.samples] or [0.0], session_max, sum(r.passed for r in results),
                 len(results), time.perf_counter() - started, failures)


def close_breakers(services: object) -> None:
    """Each phase starts with healthy providers: a breaker the other phase opened would fail its calls."""
    for engine in (getattr(services, "stt", None), getattr(getattr(services, "tts", None), "_inner", None)):
        for entry in getattr(getattr(engine, "chain", None), "entries", []):
            entry.breaker.record_success()


def calls_for(scenarios: list[Scenario], n: int) -> list[Scenario]:
    """N calls, cycling through the scenarios (a booking turn exercises the date parser)."""
    return [scenarios[i % len(scenarios)] for i in range(n)]


async def main(calls: int, short: bool, scenarios_dir: Path) -> int:
    scenarios = load_all([scenarios_dir])
    if short:
        scenarios, calls = [min(scenarios, key=lambda s: len(s.turns))], 1
    services = await warmed_services(scenarios)
    evaluator = Evaluator(services, "local", fast=False)
    for s in scenarios:  # the caller's own voice, synthesized before any call starts
        for i in range(len(s.turns)):
            await evaluator.voice.turn_audio(s, i)
    batch = calls_for(scenarios, calls)
    print(f"{calls} concurrent real-time call(s) over the local transport: "
          f"{', '.join(s.name for s in batch)}", flush=True)
    after_factory = services.vad_factory
    services.vad_factory = InlineSileroVad
    close_breakers(services)
    with cpu_work_on_the_loop():
        before = await run_phase("before", evaluator, batch)
    print(before.line(), flush=True)
    services.vad_factory = after_factory
    close_breakers(services)
    after = await run_phase("after", evaluator, batch)
    print(after.line(), flush=True)

    def ratio(f: str) -> str:
        b = {"median": statistics.median(before.lags_ms), "p95": pct(before.lags_ms, 95), "max": max(before.lags_ms)}
        a = {"median": statistics.median(after.lags_ms), "p95": pct(after.lags_ms, 95), "max": max(after.lags_ms)}
        return f"{a[f] / b[f]:.2f}" if b[f] > 0 else "-"

    print(f"after/before: median x{ratio('median')}, P95 x{ratio('p95')}, max x{ratio('max')}")
    worst = max(after.lags_ms)
    verdict = "OK" if worst < TARGET_MAX_LAG_MS else "OVER"
    print(f"loop_lag: {calls} calls, worst loop lag {max(before.lags_ms):.1f} ms -> {worst:.1f} ms "
          f"(P95 {pct(before.lags_ms, 95):.1f} -> {pct(after.lags_ms, 95):.1f} ms), "
          f"target < {TARGET_MAX_LAG_MS:.0f} ms: {verdict}")
    return 0


def cli() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=DEFAULT_MAX_CALLS, help="concurrent calls (default: capacity)")
    parser.add_argument("--short", action="store_true", help="one short call, to prove the benchmark runs")
    parser.add_argument("--scenarios", type=Path, default=default_scenarios_dir())
    args = parser.parse_args()
    if args.calls < 1:
        parser.error(f"--calls must be at least 1, got {args.calls}")
    configure_logging("WARNING")
    return asyncio.run(main(args.calls, args.short, args.scenarios))


if __name__ == "__main__":
    sys.exit(cli())
