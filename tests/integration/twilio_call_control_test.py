"""Whole calls over Twilio Media Streams whose control goes to Twilio's REST API (a local fake of it)."""
from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from spotfunnel.audio.frames import split_frames
from spotfunnel.audio.levels import rms_dbfs
from spotfunnel.calls.call import CallRecord, CallSetup
from spotfunnel.calls.eval import CallerVoice
from spotfunnel.calls.eval_cli import loopback_server
from spotfunnel.calls.lines import open_line
from spotfunnel.calls.scenario import load_scenario
from spotfunnel.calls.services import fixed_phrases, warm_up
from spotfunnel.clock import FrozenClock
from spotfunnel.conversation.agent import load_agent
from spotfunnel.store.db import Database
from spotfunnel.transports.base import AnsweredBy, InboundEvent
from spotfunnel.transports.twilio import TwilioTransport
from spotfunnel.transports.twilio_control import TwilioCallControl
from spotfunnel.transports.twilio_peer import TwilioPeer, answer_like_twilio

from conftest import EXAMPLES
from twilio_fake import ACCOUNT_SID, AUTH_TOKEN, FakeTwilio, RunningFake

pytestmark = pytest.mark.models

MORE = EXAMPLES.parent / "more"


def audible(frame: bytes | None) -> bool:
    return frame is not None and rms_dbfs(frame) > -52.0  # agent speech, not line silence


@pytest.fixture
def fake() -> Iterator[FakeTwilio]:
    with RunningFake() as running:
        yield running


async def call_until_the_agent_ends_it(services, url: str, directory: object, scenario_file: str  # type: ignore[no-untyped-def]
                                       ) -> tuple[TwilioPeer, CallRecord]:
    """One lockstep Media Streams call: wait out the greeting, say the scenario's turn, stay on the line.

    The caller never hangs up (up to a minute of audio), so the call ends only when the agent ends it.
    """
    scenario = load_scenario(MORE / scenario_file)
    agent = load_agent(scenario.tenant)
    setup = CallSetup(agent=agent, db=await asyncio.to_thread(Database.memory), clock=FrozenClock(scenario.now))
    record = CallRecord(call_id=scenario.name)
    speech = await CallerVoice(services).turn_audio(scenario, 0)
    line, agent_side = await open_line("twilio", services, setup, record, scenario.caller_id, lockstep=True,
                                       server_url=url, directory=directory)
    assert isinstance(line, TwilioPeer)
    heard, quiet = False, 0
    while not (heard and quiet >= 25) and not line.closed:  # the greeting, then half a second of quiet
        loud = audible(await line.exchange(bytes(640)))
        heard, quiet = heard or loud, 0 if loud else quiet + 1
    for frame in split_frames(speech):
        await line.exchange(frame)
    for _ in range(3000):
        if line.closed:
            break
        await line.exchange(bytes(640))
    await asyncio.wait_for(agent_side, 30)
    if not line.closed:
        await line.hangup()
    assert record.error is None, record.error
    return line, record


async def test_person_request_transfers_and_goodbye_hangs_up_at_twilio(services, fake: FakeTwilio) -> None:  # type: ignore[no-untyped-def]
    """'Can I talk to a person?' -> REST update with <Dial> to the hand-off number; 'bye' -> Status=completed."""
    await warm_up(services, fixed_phrases(load_agent("maple-street-salon")))
    control = TwilioCallControl(ACCOUNT_SID, AUTH_TOKEN, api_url=fake.url)  # the real client, Twilio faked
    async with loopback_server(services, control) as (url, directory):
        transferred, _ = await call_until_the_agent_ends_it(services, url, directory, "talk-to-a-person.yaml")
        hung_up, _ = await call_until_the_agent_ends_it(services, url, directory, "goodbye-right-away.yaml")
    assert transferred.ended_reason == "agent hung up" and hung_up.ended_reason == "agent hung up"
    updates = {u.path.rsplit("/", 1)[-1].removesuffix(".json"): u.form for u in fake.updates()}
    assert updates == {
        transferred.call_sid: {"Twiml": ['<?xml version="1.0" encoding="UTF-8"?><Response>'
                                         "<Dial>+14155550199</Dial></Response>"]},
        hung_up.call_sid: {"Status": ["completed"]},
    }


async def test_amd_callback_reaches_the_live_outbound_call(services, fake: FakeTwilio,  # type: ignore[no-untyped-def]
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """POST /twilio/amd during a call: the AnsweredBy comes out of that call's transport to the voice session."""
    seen: list[tuple[str | None, InboundEvent]] = []
    original = TwilioTransport.receive

    async def spying_receive(self: TwilioTransport) -> InboundEvent:
        item = await original(self)
        if isinstance(item, AnsweredBy):
            seen.append((self.call_sid, item))
        return item

    monkeypatch.setattr(TwilioTransport, "receive", spying_receive)
    monkeypatch.setenv("SPOTFUNNEL_API_TOKEN", "s3cret")
    control = TwilioCallControl(ACCOUNT_SID, AUTH_TOKEN, api_url=fake.url)
    async with loopback_server(services, control) as (ws_url, _directory):
        http_url = ws_url.replace("ws://", "http://")
        fake.requests.clear()
        async with httpx.AsyncClient() as client:  # placed through our API, as `spotfunnel dial` does
            placed = await client.post(f"{http_url}/v1/calls", json={"tenant": "maple-street-salon",
                                                                     "to": "+14155550123"},
                                       headers={"Authorization": "Bearer s3cret"})
        [create] = fake.creates()
        webhook = create.one("Url").split("/twilio/voice", 1)[1]  # Twilio calls back our voice URL
        amd = "/twilio/amd" + create.one("AsyncAmdStatusCallback").split("/twilio/amd", 1)[1]
        peer = await answer_like_twilio(http_url, caller="+14155550123", called="+14155550100",
                                        call_sid=placed.json()["call_sid"], webhook="/twilio/voice" + webhook)
        await peer.connect()
        try:
            for _ in range(25):  # half a second of line noise: the call is up and registered
                await peer.exchange(bytes(640))
            async with httpx.AsyncClient() as client:
                r = await client.post(f"{http_url}{amd}", data={
                    "AccountSid": ACCOUNT_SID, "CallSid": peer.call_sid, "AnsweredBy": "machine_end_beep",
                    "MachineDetectionDuration": "3817"})
            assert r.status_code == 204
            for _ in range(100):
                if seen:
                    break
                await peer.exchange(bytes(640))
        finally:
            await peer.hangup()
    assert seen == [(peer.call_sid, AnsweredBy("machine", "machine_end_beep"))]


async def test_refused_transfer_gives_the_caller_the_number_then_hangs_up(services, fake: FakeTwilio) -> None:  # type: ignore[no-untyped-def]
    """Twilio refuses the <Dial> redirect: the caller is not left in dead air; the agent reads out the
    hand-off number, then ends the call at Twilio."""
    await warm_up(services, fixed_phrases(load_agent("maple-street-salon")))
    fake.fail_next((400, 21220, "Invalid parameter: call is not in-progress"))
    control = TwilioCallControl(ACCOUNT_SID, AUTH_TOKEN, api_url=fake.url)
    async with loopback_server(services, control) as (url, directory):
        line, record = await call_until_the_agent_ends_it(services, url, directory, "talk-to-a-person.yaml")
    forms = [u.form for u in fake.updates()]
    assert [list(f) for f in forms] == [["Twiml"], ["Status"]], forms
    assert forms[1] == {"Status": ["completed"]}
    assert line.ended_reason == "agent hung up"
    assert [e.kind for e in record.events.events if e.kind in ("transfer", "transfer_failed", "agent_hangup")] == [
        "transfer", "transfer_failed", "agent_hangup"]
    last_agent_line = [t for t in record.transcript if t["role"] == "agent"][-1]
    assert "reach our team directly at 4 1 5, 5 5 5, 0 1 9 9" in last_agent_line["text"], record.transcript


async def test_outbound_call_answered_by_a_machine_leaves_voicemail_and_ends_at_twilio(  # type: ignore[no-untyped-def]
        services, fake: FakeTwilio) -> None:
    """Outbound over Media Streams: the callee is an answering machine (greeting, beep). The agent says
    nothing over the greeting, leaves the voicemail message after the beep, then ends the call over REST."""
    from outbound_call_test import GREETING, beep, quiet, speak

    agent = load_agent("maple-street-salon")
    await warm_up(services, fixed_phrases(agent))
    setup = CallSetup(agent=agent, db=await asyncio.to_thread(Database.memory),
                      clock=FrozenClock(load_scenario(MORE / "talk-to-a-person.yaml").now))
    record = CallRecord(call_id="outbound-machine")
    control = TwilioCallControl(ACCOUNT_SID, AUTH_TOKEN, api_url=fake.url)
    machine = quiet(300) + await speak(GREETING) + quiet(300)
    async with loopback_server(services, control) as (url, directory):
        line, agent_side = await open_line("twilio", services, setup, record, "+14155550166", lockstep=True,
                                           server_url=url, directory=directory, direction="outbound")
        assert isinstance(line, TwilioPeer)
        over_greeting = [audible(await line.exchange(f)) for f in split_frames(machine)]
        for frame in split_frames(beep()):
            await line.exchange(frame)
        after_beep = []
        for _ in range(1500):
            if line.closed:
                break
            after_beep.append(audible(await line.exchange(bytes(640))))
        await asyncio.wait_for(agent_side, 30)
    assert not any(over_greeting)
    assert sum(after_beep) > 100  # seconds of message, starting after the beep
    assert record.outcome == "voicemail"
    spoken = [e.data["text"] for e in record.events.of("agent_speech_queued")]
    assert spoken == [agent.voicemail(phone="4 1 5, 5 5 5, 0 1 0 0")]
    assert [u.form for u in fake.updates()] == [{"Status": ["completed"]}]
    assert fake.updates()[0].path.endswith(f"/Calls/{line.call_sid}.json")
