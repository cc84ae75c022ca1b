"""TwilioTransport carrying out hang-up and transfer through an injected call control, and AMD events."""
from __future__ import annotations

import asyncio

import pytest
from structlog.testing import capture_logs

from spotfunnel.transports.base import AnsweredBy, AudioIn, CallStarted, Hangup
from spotfunnel.transports.twilio import ControlRequest, TwilioTransport
from spotfunnel.transports.twilio_control import CallInfo, TwilioControlError

from twilio_transport_test import CONNECTED, FakeWebSocket, media, start


class RecordingControl:
    """Stands in for TwilioCallControl: records requests, optionally fails them like Twilio would."""

    def __init__(self, fail: str | None = None) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.fail = fail

    async def transfer(self, call_sid: str, to: str, say: str | None = None) -> CallInfo:
        self.calls.append(("transfer", call_sid, to))
        if self.fail:
            raise TwilioControlError(self.fail, status=400, code=21220)
        return CallInfo(call_sid, "in-progress")

    async def hangup(self, call_sid: str) -> CallInfo:
        self.calls.append(("hangup", call_sid))
        if self.fail:
            raise TwilioControlError(self.fail, status=404, code=20404)
        return CallInfo(call_sid, "completed")


async def started(control: RecordingControl | None) -> tuple[TwilioTransport, FakeWebSocket]:
    ws = FakeWebSocket([CONNECTED, start()])
    transport = TwilioTransport(ws, control=control)
    assert isinstance(await transport.receive(), CallStarted)
    return transport, ws


async def test_hangup_closes_the_stream_and_ends_the_call_at_twilio() -> None:
    control = RecordingControl()
    t, ws = await started(control)
    await t.hangup()
    assert ws.closed and control.calls == [("hangup", "CA1")]
    assert t.control_requests == [ControlRequest("hangup")] and t.control_requests[0].outcome == "done"
    assert await t.receive() == Hangup("agent hung up")


async def test_transfer_redirects_and_ends_the_stream() -> None:
    control = RecordingControl()
    t, ws = await started(control)
    await t.transfer("+14155550199")
    assert control.calls == [("transfer", "CA1", "+14155550199")]
    assert ws.closed and t.control_requests[0].outcome == "done"
    assert await t.receive() == Hangup("transferred to +14155550199")


async def test_a_refused_transfer_is_recorded_and_the_line_stays_open() -> None:
    t, ws = await started(RecordingControl(fail="Twilio transfer failed: the call is no longer in progress"))
    with capture_logs() as logs:
        await t.transfer("+14155550199")
    assert not ws.closed
    assert t.control_requests[0].outcome.startswith("failed: Twilio transfer failed")
    [failed] = [e for e in logs if e["event"] == "twilio.control.failed"]
    assert failed["call_sid"] == "CA1" and "no longer in progress" in failed["error"]


async def test_a_failed_rest_hangup_still_closes_the_stream() -> None:
    t, ws = await started(RecordingControl(fail="Twilio hangup failed: Twilio does not know this call"))
    await t.hangup()
    assert ws.closed and t.control_requests[0].outcome.startswith("failed:")


async def test_without_control_requests_are_recorded_and_logged_not_dropped() -> None:
    t, ws = await started(None)
    with capture_logs() as logs:
        await t.transfer("+14155550199")
        await t.hangup()
    assert [r.outcome.split(":")[0] for r in t.control_requests] == ["not carried out", "not carried out"]
    assert "TWILIO_ACCOUNT_SID" in t.control_requests[0].outcome
    assert [(e["action"], e["to"]) for e in logs if e["event"] == "twilio.control.not_carried_out"] == [
        ("transfer", "+14155550199"), ("hangup", None)]
    assert ws.closed  # hang-up still closes the stream


async def test_the_rest_hangup_completes_even_when_the_asking_task_is_cancelled() -> None:
    """Closing the stream ends the voice session, which cancels the conversation task that hung up."""
    release = asyncio.Event()

    class SlowControl(RecordingControl):
        async def hangup(self, call_sid: str) -> CallInfo:
            await release.wait()
            return await super().hangup(call_sid)

    control = SlowControl()
    t, ws = await started(control)
    asking = asyncio.create_task(t.hangup())
    while not ws.closed:
        await asyncio.sleep(0)
    asking.cancel()
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await asking
    for _ in range(100):  # a few loop turns for the shielded request to finish
        if t.control_requests[0].outcome:
            break
        await asyncio.sleep(0)
    assert control.calls == [("hangup", "CA1")] and t.control_requests[0].outcome == "done"


async def test_delivered_amd_verdict_comes_out_before_the_next_message() -> None:
    ws = FakeWebSocket([CONNECTED, start()])
    t = TwilioTransport(ws)
    assert isinstance(await t.receive(), CallStarted)
    t.deliver(AnsweredBy("machine", "machine_end_beep"))
    ws.push(media(bytes([0xFF]) * 160, 2))
    assert await t.receive() == AnsweredBy("machine", "machine_end_beep")
    assert isinstance(await t.receive(), AudioIn)
    ws.push(None)
    while not isinstance(await t.receive(), Hangup):  # the resampler's tail comes first
        pass
    t.deliver(AnsweredBy("human", "human"))  # after the end nothing more is queued
    assert isinstance(await t.receive(), Hangup)
