"""Marks drive the playout clock: speech is finished when the far end echoes its last mark, heard text
is what the echoes confirmed, and marks echoed by a clear (barge-in) count for nothing."""
from __future__ import annotations

import asyncio

import numpy as np

from spotfunnel.audio.frames import FRAME_BYTES
from spotfunnel.transports.base import CallStarted
from spotfunnel.transports.local import LocalCallerLine, LocalTransport
from spotfunnel.voice.endpointing import TurnTaking
from spotfunnel.voice.playout import PlayoutClock, SpeechHandle
from spotfunnel.voice.session import VoiceSession
from spotfunnel.voice.vad import EnergyFrameVad

from voice_fakes import ScriptedStt, ToneTts, silence_frames, tone_frames

WORDS = "a b c d e f g h i j"  # one 20 ms frame per word


def speech(text: str = WORDS) -> SpeechHandle:
    handle = SpeechHandle(text)
    handle.begin_sentence(text)
    handle.add_audio(b"\x10\x00" * (FRAME_BYTES // 2) * len(text.split()))
    handle.end_sentence()
    handle.finish_synthesis()
    return handle


async def test_speech_is_finished_only_when_its_final_mark_is_echoed() -> None:
    clock = PlayoutClock(echoes_marks=True, mark_every=4)
    handle = speech()
    clock.enqueue(handle)
    marks = [m for _ in range(10) for m in clock.tick().marks]
    assert len(marks) == 3  # after frames 4 and 8, and the final one after frame 10
    assert not handle.done and clock.busy  # all sent, still playing at the far end
    assert clock.mark_played(marks[0]) == [] and clock.mark_played(marks[1]) == []
    assert [h.id for h in clock.mark_played(marks[2]) or []] == [handle.id]
    result = await handle.result()
    assert result.heard == WORDS and not result.interrupted and not clock.busy


async def test_without_echoes_speech_is_finished_when_its_frames_were_sent() -> None:
    clock = PlayoutClock(echoes_marks=False)
    handle = speech()
    clock.enqueue(handle)
    ticks = [clock.tick() for _ in range(10)]
    assert all(not t.marks for t in ticks) and ticks[-1].settled == [handle]
    assert (await handle.result()).heard == WORDS


async def test_heard_text_is_what_echoes_confirmed_plus_the_ticks_since() -> None:
    clock = PlayoutClock(echoes_marks=True, mark_every=3)
    handle = speech()
    clock.enqueue(handle)
    marks = [m for _ in range(8) for m in clock.tick().marks]  # marks after frames 3 and 6
    assert clock.mark_played(marks[0]) == []  # the far end has played 3 frames...
    clock.tick()  # ...and one more tick of audio time since: 4 heard, 9 sent
    [result] = clock.interrupt()
    assert result.interrupted and result.heard == "a b c d"
    # Twilio echoes the marks still pending when it clears its buffer: they must not count.
    assert clock.mark_played(marks[1]) is None
    assert (await handle.result()).heard == "a b c d"


async def test_quiet_ticks_between_turns_do_not_count_as_the_next_speech_heard() -> None:
    clock = PlayoutClock(echoes_marks=True, mark_every=100)
    first = speech("a b")
    clock.enqueue(first)
    [final] = [m for _ in range(2) for m in clock.tick().marks]
    clock.mark_played(final)
    for _ in range(50):
        clock.tick()  # the caller talks for a second while the agent is quiet
    second = speech()
    clock.enqueue(second)
    for _ in range(3):
        clock.tick()  # 3 frames sent: the far end has had 2 ticks to play them
    [result] = clock.interrupt()
    assert result.heard == "a b"


async def test_a_lost_final_echo_does_not_hold_the_call_forever() -> None:
    clock = PlayoutClock(echoes_marks=True, echo_timeout=5)
    handle = speech("a b")
    clock.enqueue(handle)
    settled = [h for _ in range(8) for h in clock.tick().settled]
    assert settled == [handle] and (await handle.result()).heard == "a b"


def audible(frame: bytes | None) -> bool:
    return frame is not None and np.abs(np.frombuffer(frame, dtype=np.int16)).max() > 1000


async def test_session_over_the_local_line_marks_sentences_and_settles_on_echoes() -> None:
    transport = LocalTransport(lockstep=True)
    line = LocalCallerLine(transport)
    session = VoiceSession(transport, ScriptedStt(["wait"]), ToneTts(), EnergyFrameVad(), TurnTaking())
    await line.start(CallStarted(call_id="t", caller_id="+14155550100", called="+14155550101"))
    await transport.receive()
    run = asyncio.create_task(session.run())
    first = session.say("One. Two three.")  # 200 ms, then 400 ms of tone
    second = session.say("four five six seven eight nine ten eleven twelve thirteen")  # 2 s
    for frame in silence_frames(700):
        await line.exchange(frame)
    assert (await first.result()).heard == "One. Two three."
    played = [e.data["name"] for e in session.events.of("mark_played")]
    # 600 ms of audio: at the sentence end (200 ms, also the 200 ms tick), at 400 ms, and the final mark.
    assert len([name for name in played if name.startswith(f"speech-{first.id}-")]) == 3
    heard_before = [await line.exchange(f) for f in tone_frames(600)]  # the caller talks over it
    assert not audible(heard_before[-1])
    result = await second.result()
    # The local line plays each frame as it arrives, so it holds no marks to echo at the clear; the
    # clock-level test above covers a far end with a buffer, as Twilio's.
    assert result.interrupted and result.heard and result.heard != result.text
    await line.hangup()
    await run
