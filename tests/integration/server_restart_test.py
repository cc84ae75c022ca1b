"""`spotfunnel serve` as its own process: killed mid-call, the call is closed as abandoned at the next start; SIGTERM exits with calls up."""
from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any, AsyncIterator

import httpx
import pytest

from spotfunnel.audio.frames import SILENCE_FRAME
from spotfunnel.store.calls import CallView, call_by_provider_id
from spotfunnel.store.db import Database
from spotfunnel.store.queries import call_report
from spotfunnel.transports.twilio_peer import TwilioPeer

from call_support import SALON, poll, ring_like_twilio

pytestmark = pytest.mark.models

START_S = 180.0  # loading the models on a busy 2-core machine
EXIT_S = 30.0  # a bound on a prompt exit: without it a stuck call keeps the process forever


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def serve(db_url: str, log: Path) -> AsyncIterator[tuple[subprocess.Popen[bytes], str]]:
    """`spotfunnel serve` on a free loopback port over `db_url`, up once /healthz says ok; killed if left running."""
    port = free_port()
    env = {**os.environ, "SPOTFUNNEL_SERVER_ID": "restart-test"}
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-c", "from spotfunnel.cli import app; app()", "serve",
                                 "--port", str(port), "--db", db_url], stdout=out, stderr=subprocess.STDOUT, env=env)
    http = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=http, timeout=5) as client:
            async def up() -> bool:
                if proc.poll() is not None:
                    pytest.fail(f"the server exited with {proc.returncode}: {log.read_text()[-2000:]}")
                with contextlib.suppress(httpx.HTTPError):
                    return (await client.get("/healthz")).json().get("status") == "ok"
                return False

            await poll(up, "the server up", START_S)
        yield proc, http
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(EXIT_S)


async def talk(peer: TwilioPeer, stop: asyncio.Event) -> None:
    """The caller's side in real time: a frame of silence every 20 ms, echoing marks as playback passes them."""
    loop = asyncio.get_running_loop()
    next_at = loop.time()
    while not stop.is_set() and not peer.closed:
        await peer.exchange(SILENCE_FRAME)
        next_at += 0.02
        await asyncio.sleep(max(0.0, next_at - loop.time()))


async def test_killed_mid_call_then_abandoned_at_restart_and_sigterm_exits(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'calls.db'}"
    log = tmp_path / "server.log"
    db = Database(db_url)
    async with serve(db_url, log) as (proc, http):
        peer = await ring_like_twilio(http)
        call_sid = peer.call_sid
        await peer.connect()
        stop = asyncio.Event()
        caller = asyncio.create_task(talk(peer, stop))

        async def greeting_heard() -> list[CallView]:
            rows = await call_by_provider_id(db, SALON, call_sid)
            return [r for r in rows if any(e.get("role") == "agent" and e.get("text") for e in r.heard)]

        [live] = await poll(greeting_heard, "the greeting heard and on the open call's row", 60)
        assert live.status == "open" and live.direction == "inbound"
        proc.send_signal(signal.SIGKILL)
        proc.wait(EXIT_S)
        stop.set()
        await asyncio.gather(caller, return_exceptions=True)

    heard = [e["text"] for e in live.heard if e.get("role") == "agent"]
    async with serve(db_url, log) as (proc, http):
        [closed] = await call_by_provider_id(db, SALON, call_sid)
        assert closed.status == "abandoned" and closed.outcome == "abandoned"
        assert [e["text"] for e in closed.heard if e.get("role") == "agent"] == heard

        async def reported() -> Any:
            return await call_report(db, closed.call_id)

        report = await poll(reported, "the abandoned call's report written")
        assert report.outcome == "abandoned"
        assert [e["text"] for e in report.transcript if e.get("role") == "agent"] == heard

        # SIGTERM with a call up and one whose caller hung up at once: the server ends both and exits
        quick = await ring_like_twilio(http)
        await quick.connect()
        await quick.hangup()
        peer = await ring_like_twilio(http)
        await peer.connect()
        stop = asyncio.Event()
        caller = asyncio.create_task(talk(peer, stop))

        async def in_call() -> bool:
            async with httpx.AsyncClient(base_url=http) as client:
                return (await client.get("/healthz")).json()["active_calls"] >= 1

        await poll(in_call, "the second call up")
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(proc.wait, EXIT_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the server did not exit within {EXIT_S:g} s of SIGTERM with a call up")
        stop.set()
        await asyncio.gather(caller, return_exceptions=True)
        # uvicorn shuts down gracefully, then re-raises the signal it caught: -SIGTERM is a clean exit
        assert proc.returncode in (0, -signal.SIGTERM), log.read_text()[-2000:]
        assert "Application shutdown complete" in log.read_text()
