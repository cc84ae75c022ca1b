"""Call capacity benchmark: how many concurrent Twilio calls this machine serves in real time with the local models.

For each level N, N calls of one scenario run at once over Twilio Media Streams against the real
server on loopback, the simulated callers paced by the wall clock. Reported per level:

* event-loop lag: a 10 ms sleeper task's overshoot, median and P95 (audio frames are 20 ms: a
  lag near that means frames queue up and the caller hears gaps);
* audio real-time factor: wall time of each call / the audio time it carried (1.00 = real time);
* whether every call passed its scenario.

The highest level whose P95 loop lag stays under 20 ms and whose RTF stays under 1.05 is the
capacity to set as SPOTFUNNEL_MAX_CALLS. Callers run in the same process as the server, so the
figures are pessimistic (the callers' own codec and pacing work is counted too).

Usage:
    python benchmarks/call_capacity.py [--short] [--levels 1,2,3,4] [--scenario FILE]
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT / "src") not in sys.path:  # runnable without an installed package too
    sys.path.insert(0, str(REPO_ROOT / "src"))

from spotfunnel.audio.frames import FRAME_BYTES  # noqa: E402
from spotfunnel.calls.eval import Evaluator, ScenarioResult  # noqa: E402
from spotfunnel.calls.eval_cli import load_all, loopback_server, warmed_services  # noqa: E402
from spotfunnel.observability.logging import configure_logging  # noqa: E402

DEFAULT_SCENARIO = REPO_ROOT / "tests" / "scenarios" / "examples" / "hours-question.yaml"
PROBE_S = 0.010
LAG_LIMIT_MS = 20.0
RTF_LIMIT = 1.05


async def _probe_lag(stop: asyncio.Event, lags_ms: list[float]) -> None:
    while not stop.is_set():
        t0 = time.perf_counter()
        await asyncio.sleep(PROBE_S)
        lags_ms.append(max(0.0, (time.perf_counter() - t0 - PROBE_S) * 1000))


async def _timed_call(ev: Evaluator, scenario: object) -> tuple[ScenarioResult, float]:
    t0 = time.perf_counter()
    result = await ev.run(scenario)  # type: ignore[arg-type]
    wall = time.perf_counter() - t0
    trace = result.trace
    audio_s = len(trace.caller_pcm) / FRAME_BYTES * 0.020 if trace is not None else 0.0
    return result, wall / audio_s if audio_s else float("inf")


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))] if ordered else 0.0


async def run(levels: list[int], scenario_path: Path) -> int:
    scenarios = load_all([scenario_path])
    services = await warmed_services(scenarios)
    capacity = 0
    print(f"{'calls':>5}  {'lag p50 ms':>10}  {'lag p95 ms':>10}  {'lag max ms':>10}  {'RTF p50':>7}  "
          f"{'RTF max':>7}  passed")
    async with loopback_server(services) as (url, directory):
        for level in levels:
            ev = Evaluator(services, "twilio", fast=False, server_url=url, directory=directory)
            stop, lags = asyncio.Event(), list[float]()
            probe = asyncio.create_task(_probe_lag(stop, lags))
            outcomes = await asyncio.gather(*[_timed_call(ev, scenarios[0]) for _ in range(level)])
            stop.set()
            await probe
            rtfs = [rtf for _r, rtf in outcomes]
            passed = sum(r.passed for r, _rtf in outcomes)
            p95, rtf_max = _p95(lags), max(rtfs)
            print(f"{level:>5}  {statistics.median(lags):>10.1f}  {p95:>10.1f}  {max(lags):>10.1f}  "
                  f"{statistics.median(rtfs):>7.3f}  {rtf_max:>7.3f}  {passed}/{level}", flush=True)
            if p95 < LAG_LIMIT_MS and rtf_max < RTF_LIMIT and passed == level:
                capacity = level
    print(f"capacity: {capacity} concurrent Twilio calls in real time (P95 loop lag < {LAG_LIMIT_MS:g} ms, "
          f"RTF < {RTF_LIMIT}); set SPOTFUNNEL_MAX_CALLS={capacity}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--short", action="store_true", help="one level of one call (proves it still runs)")
    parser.add_argument("--levels", default="1,2,3,4,6", help="comma-separated concurrent call counts")
    parser.add_argument("--scenario", type=Path, default=DEFAULT_SCENARIO)
    args = parser.parse_args()
    configure_logging("warning")
    levels = [1] if args.short else [int(x) for x in args.levels.split(",") if x.strip()]
    return asyncio.run(run(levels, args.scenario))


if __name__ == "__main__":
    raise SystemExit(main())
