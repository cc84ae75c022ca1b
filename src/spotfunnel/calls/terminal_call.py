"""`spotfunnel call`: one call from the terminal, in process or to a running server over Twilio's protocol."""
from __future__ import annotations

import asyncio
import uuid
from datetime import datetime
from pathlib import Path

from rich.console import Console

from spotfunnel.audio.wav import AudioFileError, read_wav_pcm16k, write_stereo_wav
from spotfunnel.calls.call import CallRecord, CallSetup
from spotfunnel.calls.caller import CallerLine, CallerTurn, SimulatedCaller, trim_silence
from spotfunnel.calls.lines import open_line
from spotfunnel.calls.services import embedded_services, fixed_phrases, warm_up
from spotfunnel.clock import FrozenClock, SystemClock
from spotfunnel.conversation.agent import AgentConfigError, load_agent
from spotfunnel.integrations.sms import SmsSink
from spotfunnel.store.db import Database
from spotfunnel.store.queries import sms_sent
from spotfunnel.voice.events import CallEvent
from spotfunnel.workflows.jobs import default_handlers
from spotfunnel.workflows.worker import OutboxWorker


async def place_call(*, say: list[str], wavs: list[Path], server: str | None, tenant: str, caller_id: str,
                     now: str | None, out: Path, fast: bool, console: Console) -> int:
    try:
        agent = load_agent(tenant)
        clock = FrozenClock(datetime.fromisoformat(now)) if now else SystemClock()
    except (AgentConfigError, ValueError) as exc:
        console.print(f"[red]{exc}[/]")
        return 2
    services = embedded_services()
    await warm_up(services, fixed_phrases(agent))
    turns = await _turns(say, wavs, console)
    if turns is None:
        return 2
    db = await asyncio.to_thread(Database.memory)
    record = CallRecord(call_id=f"cli-{uuid.uuid4().hex[:8]}")
    record.events.subscribe(lambda ev: _show(ev, console))
    setup = CallSetup(agent=agent, db=db, clock=clock)
    line: CallerLine
    if server:
        from spotfunnel.transports.twilio_peer import answer_like_twilio

        try:  # rung like Twilio rings it: the server's webhook answers with the stream to open
            line = await answer_like_twilio(server, caller=caller_id, called=agent.profile.phone)
        except ValueError as exc:
            console.print(f"[red]{server} did not take the call: {exc}[/]")
            return 1
        url = line.url
        await line.connect()
        done: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        agent_side: asyncio.Future[object] = done
        console.print(f"[dim]calling {url} (the agent's words are on the server's log)[/]")
    else:
        line, agent_side = await open_line("local", services, setup, record, caller_id, lockstep=fast)
    # a server paces caller audio in real time (--fast runs only in process)
    caller = SimulatedCaller(line, turns, record.events, realtime=not fast or server is not None)
    caller.on_reply = lambda said, ms: console.print(f"[cyan]  latency[/] {ms:.0f} ms after {said!r}")
    trace = await caller.run()
    await asyncio.wait_for(agent_side, 30)
    if not server:
        await OutboxWorker(db, default_handlers(db, SmsSink(db))).run_until_idle()
        console.print(f"[bold]outcome:[/] {record.outcome}")
        for sms in await sms_sent(db, agent.profile.id):
            console.print(f"[bold]SMS to {sms.to}:[/] {sms.body}")
    write_stereo_wav(out, bytes(trace.caller_pcm), bytes(trace.agent_pcm))
    console.print(f"recording (caller left, agent right): {out}")
    return 0


async def _turns(say: list[str], wavs: list[Path], console: Console) -> list[CallerTurn] | None:
    from spotfunnel.providers.tts.piper_local import PiperLocalTts

    voice = PiperLocalTts(length_scale=1.08, noise_scale=0.0, noise_w_scale=0.0)
    turns = []
    for text in say:
        pcm = b"".join([c async for c in voice.synthesize(text)])
        turns.append(CallerTurn(text, trim_silence(pcm)))
    for path in wavs:
        try:
            turns.append(CallerTurn(path.name, trim_silence(await asyncio.to_thread(read_wav_pcm16k, path))))
        except AudioFileError as exc:
            console.print(f"[red]{exc}[/]")
            return None
    return turns


def _show(ev: CallEvent, console: Console) -> None:
    if ev.kind == "caller_turn" and ev.data.get("text"):
        early = " (early end of turn)" if ev.data.get("early") else ""
        console.print(f"[green]caller:[/] {ev.data['text']}{early}")
    elif ev.kind == "agent_speech_queued":
        console.print(f"[magenta]agent:[/]  {ev.data['text']}")
    elif ev.kind == "agent_interrupted":
        console.print(f"[yellow]agent interrupted; the caller heard:[/] {ev.data.get('heard')}")
