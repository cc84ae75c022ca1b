"""Turn latency benchmark: end of the caller's speech -> the agent's first audio, in real time.

Runs the example scenarios through the real call path (VAD, endpointing, faster-whisper STT, the
receptionist policy, piper TTS, the chosen transport) with the simulated caller paced by the wall
clock, and reports per turn and as P50/P95:

* caller-side total: from the caller's last speech frame to the first audible agent frame it hears;
* server-side total and its split (CallRecord.latencies): endpointing wait, STT, policy, TTS first
  audio, transport (first synthesized audio -> first frame handed to the transport);
* the event loop's lag during calls, measured by a 5 ms sleeper task (and the session's own
  worst per-frame processing time).

Usage:
    python benchmarks/turn_latency.py [--short] [--transport local|twilio|sip] [--repeat N] [--scenarios DIR]

Numbers vary from run to run (CPU contention, model warm state); use --repeat N for more samples.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT / "src") not in sys.path:  # runnable without an installed package too
    sys.path.insert(0, str(REPO_ROOT / "src"))

from spotfunnel.calls.eval import Evaluator, ScenarioResult  # noqa: E402
from spotfunnel.calls.eval_cli import load_all, loopback_for, warmed_services  # noqa: E402
from spotfunnel.calls.scenario import Scenario  # noqa: E402
from spotfunnel.observability.logging import configure_logging  # noqa: E402

TARGET_P50_MS = 1000.0
TARGET_P95_MS = 1400.0
TARGET_LOOP_LAG_MS = 20.0
LAG_PROBE_S = 0.005
SHORT_PREFERRED = "hours-question"  # the shortest example call (two caller turns)
STAGES = ("endpointing", "stt", "policy", "tts", "transport")


def default_scenarios_dir() -> Path:
    shared = Path(__file__).resolve().parents[2] / "shared" / "scenarios" / "examples"
    return shared if shared.is_dir() else REPO_ROOT / "tests" / "scenarios"


# ---------------------------------------------------------------- statistics
def p50(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def pct(values: list[float], q: float) -> float:
    """Percentile with linear interpolation between closest ranks (numpy's default, 'inclusive')."""
    if not values:
        return float("nan")
    if len(values) == 1:
        return float(values[0])
    cuts = statistics.quantiles(values, n=100, method="inclusive")  # cuts[k-1] is the k-th percentile
    return cuts[int(q) - 1]


def fmt(v: float | None) -> str:
    if v is None or v != v:  # None or NaN
        return "-"
    return f"{v:.0f}"


# ---------------------------------------------------------------- event loop lag probe
@dataclass
class LoopLagProbe:
    """Sleeps 5 ms in a loop and records how late each wake-up is (ms). Active only while `measuring`."""

    samples: list[tuple[float, float]] = field(default_factory=list)  # (perf_counter at wake-up, lag ms)
    measuring: bool = False
    _task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            t0 = loop.time()
            await asyncio.sleep(LAG_PROBE_S)
            late = (loop.time() - t0 - LAG_PROBE_S) * 1000
            if self.measuring:
                self.samples.append((time.perf_counter(), max(0.0, late)))

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="loop-lag-probe")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @contextlib.contextmanager
    def during(self):  # type: ignore[no-untyped-def]
        self.measuring = True
        try:
            yield
        finally:
            self.measuring = False


# ---------------------------------------------------------------- running
@dataclass
class Run:
    scenario: str
    repeat: int
    result: ScenarioResult
    wall_s: float


async def run_benchmark(scenarios: list[Scenario], transport: str, repeat: int,
                        console: Console) -> tuple[list[Run], LoopLagProbe, float]:
    t0 = time.perf_counter()
    services = await warmed_services(scenarios)
    warm_s = time.perf_counter() - t0
    console.print(f"models warmed up in {warm_s:.1f} s; running {len(scenarios)} scenario(s) x {repeat} "
                  f"in real time over the {transport} transport", highlight=False)

    probe = LoopLagProbe()
    probe.start()
    runs: list[Run] = []
    try:
        async with contextlib.AsyncExitStack() as stack:
            if transport in ("twilio", "sip"):
                url, directory = await stack.enter_async_context(loopback_for(transport, services))
                evaluator = Evaluator(services, transport, False, None, server_url=url, directory=directory)
            else:
                evaluator = Evaluator(services, "local", fast=False)
            # Synthesize the caller's own voice up front, so its TTS does not run during a call.
            for s in scenarios:
                for i in range(len(s.turns)):
                    await evaluator.voice.turn_audio(s, i)
            for rep in range(repeat):
                for s in scenarios:
                    started = time.perf_counter()
                    with probe.during():
                        try:
                            result = await evaluator.run(s)
                        except Exception as exc:  # report it, keep measuring the others
                            result = ScenarioResult(s.name, False, [f"crashed: {type(exc).__name__}: {exc}"])
                    wall = time.perf_counter() - started
                    runs.append(Run(s.name, rep + 1, result, wall))
                    console.print(f"  ran {s.name} (#{rep + 1}) in {wall:.1f} s: "
                                  f"{'PASS' if result.passed else 'FAIL ' + '; '.join(result.failures)}",
                                  highlight=False, markup=False)
    finally:
        await probe.stop()
    return runs, probe, warm_s


# ---------------------------------------------------------------- reporting
def report(runs: list[Run], probe: LoopLagProbe, console: Console) -> bool:
    table = Table(title="Per turn (ms): caller-side total, and the server-side split", show_lines=False)
    for col in ("scenario", "#", "turn", "caller total", "server total", "endpointing", "stt", "policy",
                "tts first audio", "transport", "early", "said"):
        table.add_column(col, justify="left" if col in ("scenario", "said") else "right", no_wrap=col != "said")
    caller_totals: list[float] = []
    server: dict[str, list[float]] = {k: [] for k in ("total", *STAGES)}
    unaccounted: list[float] = []
    oddities: list[str] = []
    session_lag = 0.0
    for run in runs:
        r = run.result
        lats = r.record.latencies if r.record is not None else []
        said = r.trace.said if r.trace is not None else []
        if r.record is not None:
            session_lag = max(session_lag, r.record.max_loop_lag_ms)
        caller = r.turn_latency_ms
        caller_totals += [v for v in caller if v is not None]
        if len(lats) != len(caller):
            oddities.append(f"{run.scenario} #{run.repeat}: {len(caller)} caller turns but {len(lats)} "
                            f"server-side latency records (paired by order below)")
        for i in range(max(len(caller), len(lats))):
            c = caller[i] if i < len(caller) else None
            lat = lats[i] if i < len(lats) else None
            row = [run.scenario, str(run.repeat), str(i + 1), fmt(c)]
            if lat is not None:
                server["total"].append(lat.total)
                for k in STAGES:
                    server[k].append(getattr(lat, k))
                unaccounted.append(lat.total - sum(getattr(lat, k) for k in STAGES))
                row += [fmt(lat.total), *(fmt(getattr(lat, k)) for k in STAGES), "yes" if lat.early else ""]
                for k in STAGES:
                    if getattr(lat, k) < 0:
                        oddities.append(f"{run.scenario} #{run.repeat} turn {i + 1}: {k} is negative "
                                        f"({getattr(lat, k):.1f} ms)")
            else:
                row += ["-"] * 7
            row.append(said[i] if i < len(said) else "")
            table.add_row(*row)
    console.print(table)

    summary = Table(title=f"Summary over {len(server['total'])} server-side / {len(caller_totals)} caller-side "
                          "turns (ms)")
    for col in ("measure", "n", "P50", "P95", "max"):
        summary.add_column(col, justify="left" if col == "measure" else "right")

    def srow(name: str, values: list[float]) -> None:
        summary.add_row(name, str(len(values)), fmt(p50(values)), fmt(pct(values, 95)),
                        fmt(max(values) if values else None))

    srow("caller-side total (end of speech -> first audio heard)", caller_totals)
    srow("server-side total (end of speech -> first frame to transport)", server["total"])
    for k in STAGES:
        srow(f"  {k}" if k != "tts" else "  tts first audio", server[k])
    srow("  total - sum of stages (overlap < 0, gaps > 0)", unaccounted)
    console.print(summary)

    for k in STAGES:
        vals = server[k]
        if vals and all(v == 0 for v in vals):
            oddities.append(f"stage {k!r} is 0 ms on every turn")

    # "During calls" = between a call's first and last event (setup, outbox and judging excluded).
    windows = []
    for run in runs:
        evs = run.result.record.events.events if run.result.record is not None else []
        if evs:
            windows.append((evs[0].wall, evs[-1].wall, run))
    in_call = [(t, v) for t, v in probe.samples if any(a <= t <= b for a, b, _ in windows)]
    lag = sorted(v for _, v in in_call)
    lag_all = sorted(v for _, v in probe.samples)
    lag_max = lag[-1] if lag else float("nan")
    lag_p99 = pct(lag, 99)
    ok = True

    def verdict(label: str, value: float, target: float) -> bool:
        good = value == value and value <= target
        colour = "green" if good else "red"
        console.print(f"{label}: {fmt(value)} ms (target <= {target:.0f} ms) "
                      f"[{colour}]{'PASS' if good else 'MISS'}[/]", highlight=False)
        return good

    console.print("\nTargets (run-to-run variation exists; use --repeat N for more samples):", highlight=False)
    ok &= verdict("caller-side P50", p50(caller_totals), TARGET_P50_MS)
    ok &= verdict("caller-side P95", pct(caller_totals, 95), TARGET_P95_MS)
    ok &= verdict("server-side P50", p50(server["total"]), TARGET_P50_MS)
    ok &= verdict("server-side P95", pct(server["total"], 95), TARGET_P95_MS)
    console.print(f"\nEvent loop lag during calls (5 ms sleeper, {len(lag)} samples): "
                  f"max {lag_max:.1f} ms, P99 {lag_p99:.1f} ms, P50 {p50(lag):.1f} ms", highlight=False)
    ok &= verdict("event loop worst lag during calls", lag_max, TARGET_LOOP_LAG_MS)
    if lag_all:
        console.print(f"(whole scenario runs incl. setup/outbox/judging, {len(lag_all)} samples: "
                      f"max {lag_all[-1]:.1f} ms, P99 {pct(lag_all, 99):.1f} ms)", highlight=False)
    spikes = sorted(in_call, key=lambda x: -x[1])[:3]
    for t, v in spikes:
        if v <= TARGET_LOOP_LAG_MS:
            break
        for a, b, run in windows:
            if a <= t <= b:
                before = [e for e in run.result.record.events.events if e.wall <= t - v / 1000]  # type: ignore[union-attr]
                last = before[-1] if before else None
                what = f"after '{last.kind}' {((t - v / 1000) - last.wall) * 1000:.0f} ms earlier" if last else ""
                console.print(f"  lag spike {v:.0f} ms in {run.scenario} #{run.repeat} at call time "
                              f"{t - a:.2f} s {what}", highlight=False, markup=False)
    console.print(f"voice session worst per-frame processing time (CallRecord.max_loop_lag_ms): "
                  f"{session_lag:.1f} ms", highlight=False)
    failed = [f"{r.scenario} #{r.repeat}" for r in runs if not r.result.passed]
    if failed:
        console.print(f"[yellow]scenario checks failed (latencies still reported): {', '.join(failed)}[/]",
                      highlight=False)
    if oddities:
        console.print("[yellow]notes:[/]")
        for o in oddities:
            console.print(f"  - {o}", highlight=False, markup=False)
    return ok


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--short", action="store_true", help="one scenario, once (CI smoke run)")
    ap.add_argument("--transport", choices=("local", "twilio", "sip"), default="local")
    ap.add_argument("--repeat", type=int, default=1, help="run the scenario set N times")
    ap.add_argument("--scenarios", type=Path, default=None, help="folder of *.yaml scenarios")
    ap.add_argument("--tail-ms", type=int, default=None,
                    help="how long the caller listens after its last turn before hanging up "
                         "(default: the simulated caller's own, 20 s; --short uses 6 s)")
    ap.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = ap.parse_args(argv)

    configure_logging("warning")
    console = Console(width=160)
    folder = args.scenarios or default_scenarios_dir()
    scenarios = load_all([folder])
    repeat = max(1, args.repeat)
    if args.short:
        chosen = [s for s in scenarios if s.name == SHORT_PREFERRED] or [min(scenarios, key=lambda s: len(s.turns))]
        scenarios, repeat = chosen[:1], 1
    tail_ms = args.tail_ms if args.tail_ms is not None else (6000 if args.short else None)
    if tail_ms is not None:
        import spotfunnel.calls.caller as caller_mod

        caller_mod.TAIL_MS = tail_ms  # read at run time by SimulatedCaller._listen_until_end
        console.print(f"caller listens {tail_ms} ms after its last turn", highlight=False)
    console.print(f"scenarios from {folder}: {', '.join(s.name for s in scenarios)}", highlight=False)

    t0 = time.perf_counter()
    runs, probe, _warm = asyncio.run(run_benchmark(scenarios, args.transport, repeat, console))
    ok = report(runs, probe, console)
    console.print(f"\nwall time {time.perf_counter() - t0:.1f} s", highlight=False)
    measured = any(r.result.record is not None and r.result.record.latencies for r in runs)
    if not measured:
        console.print("[red]no turn latency was measured[/]")
        return 1
    if any(any(f.startswith("crashed") for f in r.result.failures) for r in runs):
        return 1
    return 0 if ok or not args.strict else 1


if __name__ == "__main__":
    sys.exit(main())
