"""The voice session on a scripted timeline: turns, early end of turn, barge-in, heard text."""
from __future__ import annotations

import asyncio

import numpy as np

from spotfunnel.audio.frames import SILENCE_FRAME
from spotfunnel.transports.base import CallStarted
from spotfunnel.transports.local import LocalCallerLine, LocalTransport
from spotfunnel.voice.endpointing import TurnTaking
from spotfunnel.voice.session import VoiceSession
from spotfunnel.voice.vad import EnergyFrameVad

from voice_fakes import ScriptedStt, ToneTts, silence_frames, tone_frames


def audible(frame: bytes | None) -> bool:
    return frame is not None and np.abs(np.frombuffer(frame, dtype=np.int16)).max() > 1000


class Session(VoiceSession):
    """Collects turns the way the conversation would, answering each at once (silently)."""

    received: list

    async def answer_turns(self) -> None:
        self.received = []
        while True:
            self.received.append(await self.turns.get())
            self.turn_answered()


async def start(stt: ScriptedStt) -> tuple[Session, LocalCallerLine, asyncio.Task[None]]:
    transport = LocalTransport(lockstep=True)
    line = LocalCallerLine(transport)
    session = Session(transport, stt, ToneTts(), EnergyFrameVad(), TurnTaking(), no_input_ms=3000)
    await line.start(CallStarted(call_id="t", caller_id="+14155550100", called="+14155550101"))
    await transport.receive()  # the CallStarted is the call layer's; the session takes the rest
    answerer = asyncio.create_task(session.answer_turns())
    task = asyncio.create_task(session.run())
    task.add_done_callback(lambda _t: answerer.cancel())
    return session, line, task


async def feed(line: LocalCallerLine, frames: list[bytes]) -> list[bytes | None]:
    return [await line.exchange(f) for f in frames]


async def test_a_caller_turn_is_recognised_after_the_silence_window() -> None:
    stt = ScriptedStt(["hello there"])
    session, line, task = await start(stt)
    await feed(line, tone_frames(400) + silence_frames(700))
    turn = session.received[0]
    assert turn.kind == "speech" and turn.text == "hello there" and not turn.early
    assert session.events.of("caller_turn")[0].frame == 20 + 30  # 400 ms speech + 600 ms silence
    await line.hangup()
    await task


async def test_early_end_of_turn_when_the_answer_is_complete() -> None:
    stt = ScriptedStt(["Maria Lopez"])
    session, line, task = await start(stt)
    session.completes_answer = lambda text: text == "Maria Lopez"
    await feed(line, tone_frames(400) + silence_frames(700))
    turn = session.received[0]
    assert turn.early
    assert session.events.of("caller_turn")[0].frame < 20 + 30
    assert len(stt.calls) == 1  # the speculative recognition was used, not repeated
    await line.hangup()
    await task


async def test_barge_in_stops_the_agent_within_200_ms_and_keeps_what_was_heard() -> None:
    session, line, task = await start(ScriptedStt(["wait"]))
    handle = session.say("one two three four five six seven eight nine ten")  # 2 s of tone
    heard = await feed(line, silence_frames(600))
    assert all(audible(f) for f in heard[1:])
    after = await feed(line, tone_frames(600))
    last_agent_frame = max(i for i, f in enumerate(after) if audible(f))
    assert (last_agent_frame + 1) * 20 <= 200
    result = await handle.result()
    assert result.interrupted
    assert result.heard.startswith("one two") and result.heard != result.text
    assert session.events.of("agent_interrupted")
    await line.hangup()
    await task


async def test_a_short_noise_does_not_stop_the_agent() -> None:
    session, line, task = await start(ScriptedStt([]))
    handle = session.say("one two three four five")
    await feed(line, silence_frames(200) + tone_frames(60) + silence_frames(1200))
    result = await handle.result()
    assert not result.interrupted and result.heard == result.text
    await line.hangup()
    await task


async def test_silence_raises_no_input_in_audio_time() -> None:
    session, line, task = await start(ScriptedStt([]))
    await feed(line, [SILENCE_FRAME] * 151)
    turn = session.received[0]
    assert turn.kind == "no_input"
    await line.hangup()
    await task


async def test_failed_recognition_is_reported_not_raised() -> None:
    class BrokenStt(ScriptedStt):
        async def transcribe(self, pcm: bytes, *, vocabulary: list[str]):  # type: ignore[override]
            raise RuntimeError("engine down")

    session, line, task = await start(BrokenStt([]))
    await feed(line, tone_frames(400) + silence_frames(700))
    turn = session.received[0]
    assert turn.kind == "stt_failed" and "engine down" in turn.detail
    await line.hangup()
    await task
