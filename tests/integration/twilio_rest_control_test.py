"""TwilioCallControl with the real `twilio` client against a local fake of Twilio's REST API (Calls)."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from spotfunnel.resilience.breaker import BreakerState
from spotfunnel.transports.twilio_control import (
    OutboundCall,
    TwilioCallControl,
    TwilioControlError,
    transfer_twiml,
    validate_e164,
)

from twilio_fake import ACCOUNT_SID, AUTH_TOKEN, FakeTwilio, RunningFake

CALL = "CA" + "1" * 32
CALL_PATH = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls/{CALL}.json"


@pytest.fixture(scope="module")
def running() -> Iterator[FakeTwilio]:
    with RunningFake() as fake:
        yield fake


@pytest.fixture
def fake(running: FakeTwilio) -> FakeTwilio:
    running.requests.clear()
    running.failures.clear()
    running.ended.clear()
    return running


def control(fake: FakeTwilio, delays: list[float] | None = None, **kwargs: object) -> TwilioCallControl:
    async def no_wait(seconds: float) -> None:
        if delays is not None:
            delays.append(seconds)

    return TwilioCallControl(ACCOUNT_SID, AUTH_TOKEN, api_url=fake.url, sleep=no_wait, **kwargs)  # type: ignore[arg-type]


async def test_transfer_redirects_the_call_to_dial_twiml(fake: FakeTwilio) -> None:
    info = await control(fake).transfer(CALL, "+1 (415) 555-0199", say="Connecting you now.")
    [req] = fake.requests
    assert (req.method, req.path) == ("POST", CALL_PATH)
    assert req.content_type.startswith("application/x-www-form-urlencoded")
    assert set(req.form) == {"Twiml"}
    assert req.one("Twiml") == ('<?xml version="1.0" encoding="UTF-8"?><Response><Say>Connecting you now.</Say>'
                                "<Dial>+14155550199</Dial></Response>")
    assert (info.sid, info.status) == (CALL, "in-progress")


async def test_hangup_sets_status_completed(fake: FakeTwilio) -> None:
    info = await control(fake).hangup(CALL)
    [req] = fake.requests
    assert (req.method, req.path, req.form) == ("POST", CALL_PATH, {"Status": ["completed"]})
    assert info.status == "completed"


async def test_outbound_call_carries_amd_and_status_callbacks(fake: FakeTwilio) -> None:
    call = OutboundCall(to="+14155550123", from_="+14155550100",
                        url="https://voice.example.com/twilio/voice?tenant=maple-street-salon",
                        status_callback="https://voice.example.com/twilio/status?tenant=maple-street-salon",
                        amd_callback="https://voice.example.com/twilio/amd")
    info = await control(fake).place_call(call)
    [req] = fake.creates()
    assert req.form == {
        "To": ["+14155550123"], "From": ["+14155550100"], "Url": [call.url], "Method": ["POST"],
        "StatusCallback": [call.status_callback], "StatusCallbackMethod": ["POST"],
        "StatusCallbackEvent": ["initiated", "ringing", "answered", "completed"],
        "MachineDetection": ["DetectMessageEnd"], "AsyncAmd": ["true"],
        "AsyncAmdStatusCallback": [call.amd_callback], "AsyncAmdStatusCallbackMethod": ["POST"],
    }
    assert info.sid.startswith("CA") and len(info.sid) == 34
    assert (info.status, info.direction, info.to, info.from_) == ("queued", "outbound-api", "+14155550123",
                                                                  "+14155550100")


async def test_429_and_500_are_retried_with_backoff(fake: FakeTwilio) -> None:
    fake.fail_next((500, 20500, "Internal Server Error"), (429, 20429, "Too Many Requests"))
    delays: list[float] = []
    info = await control(fake, delays).hangup(CALL)
    assert info.status == "completed"
    assert len(fake.requests) == 3 and len(delays) == 2


async def test_unknown_call_is_a_clear_error_and_not_retried(fake: FakeTwilio) -> None:
    fake.ended.add(CALL)
    ctl = control(fake)
    with pytest.raises(TwilioControlError) as err:
        await ctl.transfer(CALL, "+14155550199")
    assert (err.value.status, err.value.code) == (404, 20404)
    message = str(err.value)
    assert "Twilio transfer failed" in message and "does not know this call" in message
    assert "https://www.twilio.com/docs/errors/20404" in message
    assert len(fake.requests) == 1
    assert ctl.breaker.state is BreakerState.CLOSED  # Twilio answered: not a failure of the service


@pytest.mark.parametrize("error", [(404, 20404, "The requested resource was not found"),
                                   (400, 21220, "Call is not in-progress. Cannot redirect.")])
async def test_hanging_up_a_call_that_already_ended_counts_as_done(fake: FakeTwilio,
                                                                   error: tuple[int, int, str]) -> None:
    fake.fail_next(error)
    info = await control(fake).hangup(CALL)
    assert (info.sid, info.status) == (CALL, "completed")
    assert len(fake.requests) == 1


async def test_creating_a_call_is_not_retried_after_a_500(fake: FakeTwilio) -> None:
    """A 500 may have created the call: retrying could ring the person twice."""
    fake.fail_next((500, 20500, "Internal Server Error"))
    call = OutboundCall("+14155550123", "+14155550100", "https://x.example/v", "https://x.example/s",
                        "https://x.example/a")
    with pytest.raises(TwilioControlError, match="Twilio had a server error"):
        await control(fake).place_call(call)
    assert len(fake.creates()) == 1
    fake.fail_next((503, 20503, "Service Unavailable"))  # 503: nothing was done, safe to retry
    assert (await control(fake).place_call(call)).status == "queued"
    assert len(fake.creates()) == 3


async def test_breaker_opens_after_repeated_server_errors(fake: FakeTwilio) -> None:
    ctl = control(fake, attempts=1)
    fake.fail_next(*[(500, 20500, "Internal Server Error")] * 3)
    for _ in range(3):
        with pytest.raises(TwilioControlError):
            await ctl.hangup(CALL)
    assert ctl.breaker.state is BreakerState.OPEN
    with pytest.raises(TwilioControlError, match="not attempted: circuit 'twilio-rest' is open"):
        await ctl.hangup(CALL)
    assert len(fake.requests) == 3  # the open breaker sent nothing


async def test_wrong_credentials_name_the_variables(fake: FakeTwilio) -> None:
    ctl = TwilioCallControl(ACCOUNT_SID, "wrong-token", api_url=fake.url)
    with pytest.raises(TwilioControlError) as err:
        await ctl.transfer(CALL, "+14155550199")
    assert err.value.code == 20003 and "TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN" in str(err.value)


async def test_from_env_needs_both_credentials_and_honours_the_api_url(fake: FakeTwilio) -> None:
    assert TwilioCallControl.from_env({"TWILIO_ACCOUNT_SID": ACCOUNT_SID}) is None
    assert TwilioCallControl.from_env({"TWILIO_AUTH_TOKEN": AUTH_TOKEN}) is None
    ctl = TwilioCallControl.from_env({"TWILIO_ACCOUNT_SID": ACCOUNT_SID, "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
                                      "SPOTFUNNEL_TWILIO_API_URL": fake.url})
    assert ctl is not None and (await ctl.hangup(CALL)).status == "completed"
    assert [r.path for r in fake.requests] == [CALL_PATH]


@pytest.mark.parametrize("number, problem", [("4155550123", "must start with +"), ("+1415555", "not a valid"),
                                             ("+1 call me", "not a phone number")])
def test_e164_validation_says_what_is_wrong(number: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem) as err:
        validate_e164(number, "number to call")
    assert "+14155550123" in str(err.value)  # and shows the right form


def test_transfer_twiml_without_say() -> None:
    assert transfer_twiml("+14155550199") == ('<?xml version="1.0" encoding="UTF-8"?><Response>'
                                              "<Dial>+14155550199</Dial></Response>")
