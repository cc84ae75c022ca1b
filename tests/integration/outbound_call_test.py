"""Outbound calls and keypad answers, whole calls over the local transport with the real local models.

The far end is scripted audio: an answering machine's greeting (piper) and its beep (numpy), a person
saying "Hello?", or a caller who presses keys. Times are audio time (20 ms frames)."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pytest

from spotfunnel.audio.frames import SAMPLE_RATE, SILENCE_FRAME, split_frames
from spotfunnel.audio.levels import rms_dbfs
from spotfunnel.calls.call import CallRecord, CallSetup, run_call
from spotfunnel.calls.caller import trim_silence
from spotfunnel.calls.services import CallServices
from spotfunnel.clock import FrozenClock
from spotfunnel.conversation.agent import load_agent
from spotfunnel.providers.tts.piper_local import PiperLocalTts
from spotfunnel.store.db import Database
from spotfunnel.store.ledger import BookingLedger
from spotfunnel.transports.base import AnsweredBy, CallStarted
from spotfunnel.transports.local import LocalCallerLine, LocalTransport
from spotfunnel.voice.vad import SileroFrameVad
from spotfunnel.voice.voicemail import AnswerDetector, Answerer

pytestmark = pytest.mark.models

GREETING = ("Hi, you've reached the Johnson family. We can't come to the phone right now. "
            "Please leave a message after the tone.")
NOW = "2026-12-08T10:00:00-08:00"


async def speak(text: str) -> bytes:
    tts = PiperLocalTts(length_scale=1.0, noise_scale=0.0, noise_w_scale=0.0)
    return trim_silence(b"".join([c async for c in tts.synthesize(text)]))


def beep(ms: int = 500, hz: float = 1000.0) -> bytes:
    t = np.arange(SAMPLE_RATE * ms // 1000) / SAMPLE_RATE
    return (np.sin(2 * np.pi * hz * t) * 0.3 * 32767).astype("<i2").tobytes()


def quiet(ms: int) -> bytes:
    return SILENCE_FRAME * (ms // 20)


@dataclass
class FarEnd:
    """The called party's handset over the local line, one 20 ms frame per step (lockstep)."""

    line: LocalCallerLine
    transport: LocalTransport
    frame: int = 0
    audible: list[int] = field(default_factory=list)  # frames at which agent audio was heard

    async def play(self, pcm: bytes) -> None:
        for frame in split_frames(pcm):
            if self.line.closed:
                return
            heard = await self.line.exchange(frame)
            self.frame += 1
            if heard is not None and rms_dbfs(heard) > -50:
                self.audible.append(self.frame)

    async def until_agent_quiet(self, quiet_ms: int = 700, limit_ms: int = 30_000) -> None:
        """Listen until the agent has spoken and then been quiet for `quiet_ms`."""
        start = self.frame
        while not self.line.closed and self.frame - start < limit_ms // 20:
            await self.play(SILENCE_FRAME)
            spoke = any(f > start for f in self.audible)
            if spoke and self.frame - self.audible[-1] >= quiet_ms // 20:
                return


async def call(services: CallServices, direction: str, caller_id: str = "+14155550166",
               ) -> tuple[FarEnd, CallRecord, asyncio.Future[CallRecord], BookingLedger]:
    agent = load_agent("maple-street-salon")
    db = await asyncio.to_thread(Database.memory)
    clock = FrozenClock(datetime.fromisoformat(NOW))
    setup = CallSetup(agent=agent, db=db, clock=clock)
    record = CallRecord(call_id=f"{direction}-test")
    transport = LocalTransport(lockstep=True)
    line = LocalCallerLine(transport)
    done = asyncio.ensure_future(run_call(transport, services, lambda _s: setup, lambda _s: record))
    await line.start(CallStarted(call_id=record.call_id, caller_id=caller_id, called=agent.profile.phone,
                                 tenant_id=agent.profile.id, params={"direction": direction}))
    return FarEnd(line, transport), record, done, BookingLedger(db, agent.profile, clock)


def agent_lines(record: CallRecord) -> list[str]:
    return [e.data["text"] for e in record.events.of("agent_speech_queued")]


async def test_the_detector_on_a_recorded_greeting_and_a_spoken_hello() -> None:
    greeting, hello = await speak(GREETING), await speak("Hello?")
    decisions = {}
    for name, audio in (("machine", quiet(400) + greeting + quiet(300) + beep() + quiet(1000)),
                        ("human", quiet(300) + hello + quiet(2000))):
        detector, vad = AnswerDetector(), SileroFrameVad()
        decisions[name] = [(v, detector.frame * 20) for f in split_frames(audio) for v in detector.push(f, vad.probability(f))]
    greeting_end_ms = 400 + len(greeting) // 32
    beep_end_ms = greeting_end_ms + 300 + 500
    [(machine, machine_ms), (beep_heard, beep_ms)] = decisions["machine"]
    assert machine is Answerer.MACHINE and machine_ms < greeting_end_ms  # decided while it still talks
    assert beep_heard is Answerer.BEEP and beep_end_ms <= beep_ms <= beep_end_ms + 60
    [(human, human_ms)] = decisions["human"]
    assert human is Answerer.HUMAN and human_ms <= 300 + len(hello) // 32 + 900


async def test_an_answering_machine_gets_the_voicemail_message_after_its_beep(services: CallServices) -> None:
    far, record, done, ledger = await call(services, "outbound")
    greeting = await speak(GREETING)
    await far.play(quiet(300) + greeting + quiet(300))
    assert not far.audible  # the agent stays quiet while the machine talks
    await far.play(beep())
    beep_end = far.frame
    await far.until_agent_quiet()
    await far.play(quiet(400))
    await asyncio.wait_for(done, 30)
    assert far.line.closed and far.line.ended_reason == "agent hung up"
    assert far.audible[0] > beep_end  # the message starts after the beep
    assert agent_lines(record) == [load_agent("maple-street-salon").voicemail(phone="4 1 5, 5 5 5, 0 1 0 0")]
    assert record.outcome == "voicemail" and not await ledger.active()
    [heard] = [t for t in record.transcript if t["role"] == "agent"]
    assert not heard["interrupted"] and "call us back" in heard["text"]


async def test_a_person_saying_hello_gets_the_opening_line(services: CallServices) -> None:
    far, record, done, _ = await call(services, "outbound")
    hello = await speak("Hello?")
    await far.play(quiet(300) + hello)
    hello_end = far.frame
    await far.until_agent_quiet()
    lines = agent_lines(record)
    assert lines == ["Hi, this is Maple Street Salon calling. Would you like to book an appointment with us?"]
    assert hello_end < far.audible[0] <= hello_end + 60  # after the short greeting's pause, not much later
    await far.line.hangup()
    await asyncio.wait_for(done, 30)


async def test_a_machine_that_paused_like_a_person_is_caught_by_its_beep(services: CallServices) -> None:
    far, record, done, _ = await call(services, "outbound")
    await far.play(quiet(300) + await speak("Hi!") + quiet(1000))  # a person would wait here
    assert [e.data["kind"] for e in record.events.of("answerer")] == ["human"]
    await far.play(await speak("You've reached Sam. Leave a message after the tone.") + quiet(300))
    await far.play(beep())
    beep_end = far.frame
    await far.until_agent_quiet()
    await far.play(quiet(400))
    await asyncio.wait_for(done, 30)
    lines = agent_lines(record)
    assert lines[0].startswith("Hi, this is Maple Street Salon calling") and "call us back" in lines[-1]
    assert record.outcome == "voicemail" and far.line.ended_reason == "agent hung up"
    assert any(f > beep_end for f in far.audible)


async def test_the_providers_machine_end_beep_starts_the_message_at_once(services: CallServices) -> None:
    far, record, done, _ = await call(services, "outbound")
    greeting = await speak(GREETING)
    await far.play(quiet(300) + greeting[: len(greeting) // 3])
    far.transport.inbound.put_nowait(AnsweredBy("machine", "machine_end_beep"))  # as the Twilio edge delivers it
    said_at = far.frame
    await far.until_agent_quiet()
    await far.play(quiet(400))
    await asyncio.wait_for(done, 30)
    assert far.audible[0] <= said_at + 5  # no waiting for the agent's own detector
    assert record.outcome == "voicemail" and far.line.ended_reason == "agent hung up"
    assert [e.data["source"] for e in record.events.of("answerer")][0] == "provider"


async def test_the_providers_beep_after_a_human_verdict_still_leaves_the_message(services: CallServices) -> None:
    far, record, done, _ = await call(services, "outbound")
    await far.play(quiet(300) + await speak("Hi!") + quiet(1000))  # the agent takes it for a person
    assert [e.data["kind"] for e in record.events.of("answerer")] == ["human"]
    await far.until_agent_quiet()
    far.transport.inbound.put_nowait(AnsweredBy("machine", "machine_end_beep"))  # Twilio heard a beep
    said_at = far.frame
    await far.until_agent_quiet()
    await far.play(quiet(400))
    await asyncio.wait_for(done, 30)
    lines = agent_lines(record)
    assert "call us back" in lines[-1] and record.outcome == "voicemail"
    assert far.line.ended_reason == "agent hung up"
    assert any(f > said_at for f in far.audible)


async def test_a_booking_confirmed_by_pressing_1(services: CallServices) -> None:
    far, record, done, ledger = await call(services, "inbound")
    await far.until_agent_quiet()  # the greeting
    for text in ("I'd like to book a haircut for tomorrow at 3 pm.", "Maria Lopez."):
        await far.play(quiet(300) + await speak(text))
        await far.until_agent_quiet()
    assert "calling from" in agent_lines(record)[-1]
    await far.line.send_dtmf("1")  # yes, the number I'm calling from
    await far.until_agent_quiet()
    assert "Just to confirm" in agent_lines(record)[-1]
    await far.line.send_dtmf("1")  # press 1 to confirm
    await far.until_agent_quiet()
    [booking] = await ledger.active()
    assert (booking.name, booking.phone, booking.service_id) == ("Maria Lopez", "+14155550166", "haircut")
    assert record.events.of("dtmf")
    await far.line.hangup()
    await asyncio.wait_for(done, 30)
    assert record.outcome == "booked"
