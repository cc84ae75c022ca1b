"""The `spotfunnel` command: serve, call, eval, doctor, dial."""
from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from rich.console import Console

from spotfunnel.observability.logging import configure_logging

if TYPE_CHECKING:
    from spotfunnel.store.db import Database

app = typer.Typer(add_completion=False, help="SpotFunnel: production phone agents that book appointments.")
console = Console(stderr=True)
# What commands write by default lands in .spotfunnel/ (git-ignored, owner-only): data and recordings.
DEFAULT_DB = "sqlite:///.spotfunnel/spotfunnel.db"
DEFAULT_RECORDING = Path(".spotfunnel/calls/call.wav")


@app.command()
def serve(host: str = "127.0.0.1", port: int = 8080, db: str = typer.Option(DEFAULT_DB, help="database URL"),
          log_level: str = "info",
          sip_port: Optional[int] = typer.Option(None, "--sip-port", help="also answer SIP calls (UDP) on this "
                                                                        "port, e.g. 5060; off by default"),
          sip_max_calls: int = typer.Option(4, "--sip-max-calls", min=1, help="SIP calls at once; more get 486 "
                                                                              "Busy Here"),
          sip_advertise_host: Optional[str] = typer.Option(
              None, "--sip-advertise-host", help="the address put in SIP Contact and SDP for callers to reach "
                                                 "(your public IP behind NAT); default: the bound host, or the "
                                                 "outbound interface's address when bound to 0.0.0.0"),
          sip_allow: Optional[list[str]] = typer.Option(
              None, "--sip-allow", help="only these addresses or networks may place SIP calls (repeatable, "
                                        "e.g. --sip-allow 203.0.113.0/24); others get 403; default: any")) -> None:
    """Run the server (Twilio webhook + Media Streams) with the embedded models and the demo tenant."""
    import uvicorn

    from spotfunnel.api.app import create_app
    from spotfunnel.api.limits import server_limits

    configure_logging(log_level)
    database = _open_database(db)
    console.print(f"[bold]SpotFunnel[/] starting on http://{host}:{port} (loading models, a few seconds)...")
    console.print("Place a call to the demo salon from another terminal:\n"
                  f"  .venv/bin/spotfunnel call --server http://{host}:{port} "
                  "--say \"Hi, I'd like to book a haircut on Thursday at 3 pm.\" --say \"Nina Patel.\" "
                  "--say \"Yes.\" --say \"Yes, that's right.\" --say \"No, that's all.\"\n"
                  f"Twilio: point your number's voice webhook at https://<public host>/twilio/voice")
    from spotfunnel.api.browser import announce_when_ready

    web = announce_when_ready(create_app(database), console.print, host, port)  # the talk page URL, once up
    if sip_port is None:
        uvicorn.run(web, host=host, port=port, log_level=log_level, **server_limits())
        return
    from spotfunnel.api.sip_edge import parse_networks, serve_with_sip
    from spotfunnel.transports.sip.udp import WILDCARD_HOSTS, outbound_host

    try:
        parse_networks(sip_allow or [])
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--sip-allow") from None

    sip_host = sip_advertise_host or (outbound_host(host) if host in WILDCARD_HOSTS else host)
    console.print(f"SIP: calls to sip:+14155550100@{sip_host}:{sip_port} (UDP, PCMU/PCMA) reach the demo salon")
    asyncio.run(serve_with_sip(web, host=host, port=port, log_level=log_level,
                               sip_port=sip_port, sip_max_calls=sip_max_calls,
                               sip_advertise_host=sip_advertise_host, sip_allow=sip_allow))


@app.command()
def call(
    say: list[str] = typer.Option([], "--say", help="a caller turn as text (synthesized); repeat for each turn"),
    wav: list[Path] = typer.Option([], "--wav", help="a caller turn as a WAV file; repeat for each turn"),
    server: Optional[str] = typer.Option(None, help="call a running server (http://host:port) over Twilio Media "
                                                   "Streams; without it the call runs in process"),
    tenant: str = "maple-street-salon",
    caller_id: str = "+14155550166",
    now: Optional[str] = typer.Option(None, help="freeze the call's clock (ISO time with offset)"),
    out: Path = typer.Option(DEFAULT_RECORDING, help="stereo recording: caller left, agent right"),
    fast: bool = typer.Option(False, help="run faster than real time (no latency figures)"),
) -> None:
    """Place one call to an agent and print the live transcript with per-turn latency."""
    from spotfunnel.calls.terminal_call import place_call
    from spotfunnel.store.db import make_private_folder

    if not say and not wav:
        console.print("[red]Give the caller's turns with --say TEXT or --wav FILE (repeat for each turn).[/]")
        raise typer.Exit(2)
    try:
        make_private_folder(out.parent)  # a recording is the caller's voice: its folder is owner-only when made
    except OSError as exc:
        console.print(f"spotfunnel call: --out {out}: cannot create its folder ({exc.strerror or exc}); "
                      "pick another path", markup=False, soft_wrap=True, highlight=False)
        raise typer.Exit(2)
    code = asyncio.run(place_call(say=say, wavs=wav, server=server, tenant=tenant, caller_id=caller_id, now=now,
                                  out=out, fast=fast, console=console))
    raise typer.Exit(code)


@app.command("eval")
def eval_(
    paths: list[Path] = typer.Argument(..., help="scenario files or folders"),
    fast: bool = typer.Option(False, "--fast", help="feed audio as fast as it is processed"),
    as_json: bool = typer.Option(False, "--json", help="end with one JSON line of results"),
    concurrency: int = typer.Option(1, "--concurrency", min=1, max=32),
    transport: str = typer.Option("local", "--transport", help="local | twilio | sip"),
    wav_dir: Optional[Path] = typer.Option(None, help="save each call as a stereo WAV here"),
) -> None:
    """Run call scenarios through the whole voice path and report PASS/FAIL."""
    from spotfunnel.calls.eval_cli import run_eval

    configure_logging("warning")
    code = asyncio.run(run_eval(paths, fast=fast, as_json=as_json, concurrency=concurrency, transport=transport,
                                wav_dir=wav_dir, out=sys.stdout, console=console))
    raise typer.Exit(code)


@app.command()
def doctor(
    tenant: Optional[str] = typer.Option(None, "--tenant", help="check only this tenant (default: all)"),
    tenants_dir: Optional[Path] = typer.Option(None, "--tenants-dir", help="folder of tenant overlays"),
) -> None:
    """Check the deployment: tenant config and numbers, local models, credentials, codec round trips."""
    from spotfunnel.ops.doctor import render, run_doctor

    report = run_doctor(tenant=tenant, tenants_dir=tenants_dir)
    render(report, Console())
    raise typer.Exit(0 if report.ok else 1)


@app.command()
def dial(
    tenant: str = typer.Option(..., "--tenant", help="the tenant whose agent places the call"),
    to: str = typer.Option(..., "--to", help="the number to call, E.164 (+14155550123)"),
    server: str = typer.Option("http://127.0.0.1:8080", "--server", help="the running SpotFunnel server"),
) -> None:
    """Place an outbound call through Twilio (answering-machine detection on); needs Twilio credentials on the server."""
    from spotfunnel.api.dial import dial as place

    raise typer.Exit(place(server, tenant, to, console))


def _open_database(url: str) -> "Database":
    """The server's database; a URL that cannot be used ends the command with one line and exit code 2."""
    from sqlalchemy.exc import ArgumentError

    from spotfunnel.store.db import Database, DatabaseLocationError

    try:
        return Database(url)
    except DatabaseLocationError as exc:
        console.print(f"spotfunnel serve: --db {url}: {exc}", markup=False, soft_wrap=True, highlight=False)
    except (ArgumentError, ValueError) as exc:
        console.print(f"spotfunnel serve: --db {url!r} is not a database URL ({exc}); use sqlite:///path/to/file.db "
                      "or postgresql://user@host/dbname", markup=False, soft_wrap=True, highlight=False)
    raise typer.Exit(2)


if __name__ == "__main__":
    app()
