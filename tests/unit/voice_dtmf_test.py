"""Keys pressed become caller turns: at once when they answer, on "#", or after a pause in audio time."""
from __future__ import annotations

import asyncio

from spotfunnel.transports.base import CallStarted
from spotfunnel.transports.local import LocalCallerLine, LocalTransport
from spotfunnel.voice.endpointing import TurnTaking
from spotfunnel.voice.session import VoiceSession, VoiceTurn
from spotfunnel.voice.vad import EnergyFrameVad

from voice_fakes import ScriptedStt, ToneTts, silence_frames


async def start() -> tuple[VoiceSession, LocalCallerLine, asyncio.Task[None], list[tuple[VoiceTurn, int]]]:
    transport = LocalTransport(lockstep=True)
    line = LocalCallerLine(transport)
    session = VoiceSession(transport, ScriptedStt([]), ToneTts(), EnergyFrameVad(), TurnTaking(), no_input_ms=60_000)
    await line.start(CallStarted(call_id="t", caller_id="+14155550100", called="+14155550101"))
    await transport.receive()
    turns: list[tuple[VoiceTurn, int]] = []

    async def answer() -> None:
        while True:
            turns.append((await session.turns.get(), session.frame))
            session.turn_answered()

    answerer = asyncio.create_task(answer())
    task = asyncio.create_task(session.run())
    task.add_done_callback(lambda _t: answerer.cancel())
    return session, line, task, turns


async def press(line: LocalCallerLine, keys: str) -> None:
    for key in keys:
        await line.send_dtmf(key)
        await line.exchange(silence_frames(20)[0])


async def test_each_key_is_a_turn_by_default() -> None:
    session, line, task, turns = await start()
    await press(line, "12")
    await line.exchange(silence_frames(20)[0])
    assert [(t.kind, t.text) for t, _ in turns] == [("dtmf", "1"), ("dtmf", "2")]
    await line.hangup()
    await task


async def test_a_number_is_collected_until_the_pound_key() -> None:
    session, line, task, turns = await start()
    session.completes_keys = lambda keys: False  # the conversation waits for a whole number
    await press(line, "4155550177")
    assert turns == []
    await press(line, "#")
    assert [t.text for t, _ in turns] == ["4155550177"]
    await line.hangup()
    await task


async def test_keys_without_pound_are_a_turn_after_three_seconds_of_audio() -> None:
    session, line, task, turns = await start()
    session.completes_keys = lambda keys: False
    await press(line, "41")
    await line.send_dtmf("5")
    pressed_at = session.frame  # the last key arrives after this frame
    for frame in silence_frames(3200):
        await line.exchange(frame)
    [(turn, at)] = turns
    assert turn.text == "415" and at - pressed_at == 3000 // 20
    await line.hangup()
    await task
