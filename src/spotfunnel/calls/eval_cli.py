"""The eval command's driver: loads scenarios, starts what the transport needs, prints the report."""
from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import IO, Any, AsyncIterator

from rich.console import Console

from spotfunnel.calls.eval import Evaluator, ScenarioResult, latency_summary, run_all
from spotfunnel.calls.scenario import Scenario, ScenarioError, find_scenarios, load_scenario
from spotfunnel.calls.services import CallServices, embedded_services, fixed_phrases, warm_up
from spotfunnel.conversation.agent import AgentConfigError, load_agent
from spotfunnel.transports.twilio_control import TwilioCallControl


def load_all(paths: list[Path]) -> list[Scenario]:
    scenarios = [load_scenario(p) for p in find_scenarios(paths)]
    if not scenarios:
        raise ScenarioError(f"no *.yaml scenarios under {', '.join(map(str, paths))}")
    names = [s.name for s in scenarios]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ScenarioError(f"scenario names must be unique; repeated: {', '.join(dupes)}")
    return scenarios


async def warmed_services(scenarios: list[Scenario]) -> CallServices:
    """The embedded engines, loaded, with the fixed phrases of every tenant the scenarios call cached."""
    services = embedded_services()
    phrases: list[str] = []
    for tenant in sorted({s.tenant for s in scenarios}):
        with contextlib.suppress(AgentConfigError):  # an unknown tenant fails its scenario later, clearly
            phrases += fixed_phrases(load_agent(tenant))
    await warm_up(services, phrases)
    return services


@contextlib.asynccontextmanager
async def loopback_server(services: CallServices,
                          twilio_control: TwilioCallControl | None = None) -> AsyncIterator[tuple[str, Any]]:
    """The real server app on 127.0.0.1 (random port) in this process, for the twilio transport.

    Call control goes to `twilio_control` only: simulated CallSids must never reach a real Twilio account.
    """
    from spotfunnel.api.app import create_app
    from spotfunnel.api.loopback import serve_on_loopback
    from spotfunnel.store.db import Database

    # loopback only: the simulated Twilio peer does not sign its requests
    app = create_app(Database("sqlite://"), services=services, run_worker=False, twilio_auth_token="",
                     twilio_control=twilio_control)
    async with serve_on_loopback(app) as port:
        yield f"ws://127.0.0.1:{port}", app.state.spotfunnel.directory


def loopback_for(transport: str, services: CallServices) -> contextlib.AbstractAsyncContextManager[tuple[str, Any]]:
    """The server the caller's line dials: the HTTP app for twilio, a SIP UAS for sip."""
    if transport == "sip":
        from spotfunnel.api.sip_edge import loopback_sip

        return loopback_sip(services)
    return loopback_server(services)


async def run_eval(paths: list[Path], *, fast: bool, as_json: bool, concurrency: int, transport: str,
                   wav_dir: Path | None, out: IO[str], console: Console) -> int:
    try:
        scenarios = load_all(paths)
    except ScenarioError as exc:
        console.print(f"[red]scenario error[/]\n{exc}", markup=True, highlight=False)
        return 2
    if transport not in ("local", "twilio", "sip"):
        console.print(f"[red]unknown transport {transport!r}; use local, twilio or sip[/]")
        return 2
    services = await warmed_services(scenarios)
    if transport in ("twilio", "sip"):
        async with loopback_for(transport, services) as (url, directory):
            ev = Evaluator(services, transport, fast, wav_dir, server_url=url, directory=directory)
            results = await run_all(ev, scenarios, concurrency)
    else:
        results = await run_all(Evaluator(services, transport, fast, wav_dir), scenarios, concurrency)
    _report(results, as_json, out)
    return 0 if all(r.passed for r in results) else 1


def _report(results: list[ScenarioResult], as_json: bool, out: IO[str]) -> None:
    for r in results:
        lat = [x for x in r.turn_latency_ms if x is not None]
        extra = f"  (turn latency ms: {', '.join(str(round(x)) for x in lat)})" if lat else ""
        print(f"{'PASS' if r.passed else 'FAIL'} {r.name}{extra}", file=out)
        for f in r.failures:
            print(f"     - {f}", file=out)
    passed = sum(r.passed for r in results)
    summary = latency_summary(results)
    if summary["p50"] is None:  # --fast runs in audio time: there is no wall-clock latency to report
        print(f"{passed}/{len(results)} passed; turn latency not measured (--fast runs faster than real time)",
              file=out)
    else:
        print(f"{passed}/{len(results)} passed; turn latency p50={summary['p50']} p95={summary['p95']} "
              f"max={summary['max']} ms", file=out)
    if as_json:
        print(json.dumps({"scenarios": len(results), "passed": passed,
                          "failed": [r.name for r in results if not r.passed], "turn_latency_ms": summary,
                          "results": [r.as_json() for r in results]}), file=out)
