"""A speculative decode the busy engine drops costs the turn nothing: the final decode still runs."""
from __future__ import annotations

import asyncio

from spotfunnel.providers.resilient import ResilientStt
from spotfunnel.resilience.engine_queue import EngineQueue
from spotfunnel.voice.vad import EnergyFrameVad

from resilience_fakes import GatedEngine, QueuedStt, until
from voice_fakes import feed, silence_frames, start_session, tone_frames


async def test_a_dropped_speculation_falls_back_to_the_final_decode() -> None:
    engine = GatedEngine()
    queue = EngineQueue("fake-stt", threads=1, max_waiting=4)
    provider = QueuedStt(queue, engine)
    other_call = asyncio.create_task(queue.run(engine.work, "another call's turn"))
    await until(lambda: engine.started == ["another call's turn"])
    try:
        session, line, task = await start_session(ResilientStt([provider]), EnergyFrameVad())
        await feed(line, tone_frames(400) + silence_frames(300))  # the early pause: speculation refused
        assert session.events.of("speculation_started") and queue.stats.dropped_speculative == 1
        engine.release("another call's turn", "decode-2")
        await feed(line, silence_frames(400))  # the 600 ms pause ends the turn: a final decode
        await line.hangup()
        await task
    finally:
        engine.release_all()
    await other_call
    assert [(t.kind, t.text) for t in session.received] == [("speech", "done:decode-2")]
    assert engine.started == ["another call's turn", "decode-2"]  # the speculation never ran


async def test_turns_nobody_reads_are_capped_not_queued_without_bound() -> None:
    from spotfunnel.transports.local import LocalCallerLine, LocalTransport
    from spotfunnel.voice.session import MAX_PENDING_TURNS, VoiceSession
    from voice_fakes import ScriptedStt, ToneTts

    transport = LocalTransport(lockstep=False)
    line = LocalCallerLine(transport)
    session = VoiceSession(transport, ScriptedStt([]), ToneTts(), EnergyFrameVad(), no_input_ms=20)
    session.completes_keys = lambda _keys: True  # every key is a turn: a keypad flood
    task = asyncio.create_task(session.run())
    for _ in range(MAX_PENDING_TURNS + 10):
        await line.send_dtmf("5")
    await line.hangup()
    await task
    assert session.turns.qsize() == MAX_PENDING_TURNS
    assert len(session.events.of("turn_dropped")) == 10
