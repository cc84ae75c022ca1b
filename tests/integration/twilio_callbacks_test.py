"""Twilio's webhooks beyond the voice call: status and AMD callbacks, the outbound TwiML, POST /v1/calls, dial."""
from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from rich.console import Console
from structlog.testing import capture_logs
from twilio.request_validator import RequestValidator
from typer.testing import CliRunner

from spotfunnel.api.app import create_app
from spotfunnel.api.dial import dial
from spotfunnel.cli import app as cli
from spotfunnel.store.db import Database
from spotfunnel.transports.base import AnsweredBy, CallStarted
from spotfunnel.transports.twilio import TwilioTransport
from spotfunnel.transports.twilio_control import TwilioCallControl

from twilio_fake import ACCOUNT_SID, AUTH_TOKEN, FakeTwilio, RunningFake

TOKEN = "test-auth-token"
SIGN = RequestValidator(TOKEN).compute_signature
STATUS = {"CallSid": "CA" + "2" * 32, "AccountSid": ACCOUNT_SID, "CallStatus": "no-answer",
          "Direction": "outbound-api", "From": "+14155550100", "To": "+14155550123", "CallDuration": "0",
          "SequenceNumber": "3", "Timestamp": "Sun, 22 Nov 2026 05:00:00 +0000", "CallbackSource": "call-progress-events"}



def place(api: TestClient, fake: FakeTwilio, to: str = "+14155550123") -> tuple[str, str]:
    """Place an outbound call through POST /v1/calls; (our dial id from its webhook URL, Twilio's CallSid)."""
    fake.requests.clear()
    r = api.post("/v1/calls", json={"tenant": "maple-street-salon", "to": to}, headers={"Authorization": "Bearer s3cret"})
    assert r.status_code == 201, r.text
    [create] = fake.creates()
    dial_id = create.one("Url").split("?outbound=", 1)[1]
    return dial_id, r.json()["call_sid"]


def signed_post(api: TestClient, path: str, form: dict[str, str]) -> Any:
    return api.post(path, data=form, headers={"X-Twilio-Signature": SIGN(f"http://testserver{path}", form)})


def client(control: TwilioCallControl | None = None) -> TestClient:
    """The real app, lifespan not entered: these routes need no models."""
    return TestClient(create_app(Database("sqlite://"), run_worker=False, twilio_auth_token=TOKEN,
                                 twilio_control=control))


@pytest.fixture(autouse=True)
def no_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "SPOTFUNNEL_PUBLIC_URL", "SPOTFUNNEL_API_TOKEN"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def placing(fake: FakeTwilio, monkeypatch: pytest.MonkeyPatch) -> TestClient:
    """The app with call control at the fake Twilio and an API token, ready to place calls."""
    monkeypatch.setenv("SPOTFUNNEL_API_TOKEN", "s3cret")
    return client(TwilioCallControl(ACCOUNT_SID, AUTH_TOKEN, api_url=fake.url))


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeTwilio]:
    with RunningFake() as running:
        yield running


# ---- status callbacks ------------------------------------------------------------------------


# "RSOYDt4T1cUTdK1PDd93/VVr8B8=" is Twilio's published test vector (tests/unit/security_signature_test.py):
# a genuine signature, but of another URL and params, so it must not pass here.
@pytest.mark.parametrize("signature", [None, "bm90IGEgc2lnbmF0dXJl", "RSOYDt4T1cUTdK1PDd93/VVr8B8=",
                                       "SIGNED_OTHER_URL"])
def test_unsigned_or_wrongly_signed_status_callback_is_403(signature: str | None) -> None:
    if signature == "SIGNED_OTHER_URL":
        signature = SIGN("http://testserver/twilio/status?tenant=other", STATUS)
    headers = {"X-Twilio-Signature": signature} if signature else {}
    with capture_logs() as logs:
        r = client().post("/twilio/status?tenant=maple-street-salon", data=STATUS, headers=headers)
    assert r.status_code == 403
    assert [e["path"] for e in logs if e["event"] == "twilio.signature.rejected"] == ["/twilio/status"]
    assert not [e for e in logs if e["event"].startswith("twilio.call") or e["event"].startswith("twilio.outbound")]


def test_signed_final_status_of_an_outbound_call_is_logged_and_counted(placing: TestClient, fake: FakeTwilio) -> None:
    labels = {"tenant": "maple-street-salon", "status": "no-answer"}
    before = REGISTRY.get_sample_value("spotfunnel_outbound_calls_total", labels) or 0.0
    dial_id, sid = place(placing, fake)
    with capture_logs() as logs:
        r = signed_post(placing, f"/twilio/status?outbound={dial_id}", {**STATUS, "CallSid": sid})
    assert r.status_code == 204
    [ended] = [e for e in logs if e["event"] == "twilio.outbound.ended"]
    assert (ended["call_sid"], ended["status"], ended["to"], ended["tenant"]) == (
        sid, "no-answer", "+14155550123", "maple-street-salon")
    assert REGISTRY.get_sample_value("spotfunnel_outbound_calls_total", labels) == before + 1


def test_a_status_callback_for_a_call_we_did_not_place_is_not_counted() -> None:
    labels = {"tenant": "maple-street-salon", "status": "no-answer"}
    before = REGISTRY.get_sample_value("spotfunnel_outbound_calls_total", labels) or 0.0
    with capture_logs() as logs:  # the old form of our URL, which named the tenant: the request no longer picks it
        r = signed_post(client(), "/twilio/status?tenant=maple-street-salon", STATUS)
    assert r.status_code == 204 and not [e for e in logs if e["event"] == "twilio.outbound.ended"]
    assert (REGISTRY.get_sample_value("spotfunnel_outbound_calls_total", labels) or 0.0) == before


def test_progress_status_is_logged_not_counted(placing: TestClient, fake: FakeTwilio) -> None:
    dial_id, sid = place(placing, fake)
    with capture_logs() as logs:
        r = signed_post(placing, f"/twilio/status?outbound={dial_id}", {**STATUS, "CallSid": sid,
                                                                       "CallStatus": "ringing"})
    assert r.status_code == 204
    assert [e["status"] for e in logs if e["event"] == "twilio.call.status"] == ["ringing"]
    assert not [e for e in logs if e["event"] == "twilio.outbound.ended"]


# ---- answering-machine detection ------------------------------------------------------------


class SilentSocket:
    async def receive_text(self) -> str:
        raise ConnectionError("not used")

    async def send_text(self, data: str) -> None:
        pass


def amd_form(label: str, sid: str = "CA" + "3" * 32) -> dict[str, str]:
    return {"AccountSid": ACCOUNT_SID, "CallSid": sid, "AnsweredBy": label, "MachineDetectionDuration": "4123"}


def live_transport(sid: str) -> TwilioTransport:
    transport = TwilioTransport(SilentSocket())
    transport.handle_text(json.dumps({"event": "start", "sequenceNumber": "1", "streamSid": "MZ3", "start": {
        "streamSid": "MZ3", "callSid": sid, "customParameters": {},
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}}))
    return transport


@pytest.mark.parametrize("label, kind", [("machine_end_beep", "machine"), ("human", "human"), ("fax", "fax"),
                                         ("machine_start", "machine"), ("unknown", "unknown")])
async def test_amd_result_reaches_the_live_call(label: str, kind: str, placing: TestClient, fake: FakeTwilio) -> None:
    dial_id, sid = place(placing, fake)
    transport = live_transport(sid)
    assert isinstance(await transport.receive(), CallStarted)
    placing.app.state.spotfunnel.twilio_calls.add(transport.call_sid, transport)
    r = signed_post(placing, f"/twilio/amd?outbound={dial_id}", amd_form(label, sid))
    assert r.status_code == 204
    assert await transport.receive() == AnsweredBy(kind, label)


def test_an_amd_result_for_a_call_we_did_not_place_is_refused(placing: TestClient, fake: FakeTwilio) -> None:
    dial_id, sid = place(placing, fake)
    other = signed_post(placing, f"/twilio/amd?outbound={dial_id}", amd_form("machine_end_beep", "CA" + "9" * 32))
    bare = signed_post(placing, "/twilio/amd", amd_form("machine_end_beep", sid))
    assert other.status_code == bare.status_code == 404 and "not an outbound call" in other.json()["detail"]
    assert len(placing.app.state.spotfunnel.twilio_calls._early) == 0  # nothing held for a call not ours


async def test_amd_result_before_the_stream_starts_is_held_for_the_call(placing: TestClient, fake: FakeTwilio) -> None:
    api = placing
    dial_id, sid = place(api, fake)
    r = signed_post(api, f"/twilio/amd?outbound={dial_id}", amd_form("machine_end_silence", sid))
    assert r.status_code == 204
    transport = live_transport(sid)
    assert isinstance(await transport.receive(), CallStarted)
    api.app.state.spotfunnel.twilio_calls.add(transport.call_sid, transport)
    assert await transport.receive() == AnsweredBy("machine", "machine_end_silence")


def test_unsigned_amd_callback_is_403() -> None:
    assert client().post("/twilio/amd", data=amd_form("human")).status_code == 403


# ---- the outbound call's TwiML --------------------------------------------------------------


def test_outbound_voice_webhook_binds_the_stream_to_the_call_we_placed(placing: TestClient, fake: FakeTwilio) -> None:
    dial_id, sid = place(placing, fake)
    form = {"CallSid": sid, "AccountSid": ACCOUNT_SID, "Direction": "outbound-api",
            "From": "+14155550100", "To": "+14155550123", "CallStatus": "in-progress"}
    r = signed_post(placing, f"/twilio/voice?outbound={dial_id}", form)
    assert r.status_code == 200
    params = dict(re.findall(r'<Parameter name="([^"]+)" value="([^"]*)" />', r.text))
    assert list(params) == ["stream_token"]  # who the call is stays on the server, in the ticket
    [ticket] = placing.app.state.spotfunnel.directory.tickets._pending.values()
    assert (ticket.token, ticket.call_sid, ticket.direction, ticket.caller, ticket.called, ticket.tenant) == (
        params["stream_token"], sid, "outbound", "+14155550123", "+14155550100", "maple-street-salon")
    # the same dial answered for another CallSid is not ours: no stream
    replay = signed_post(placing, f"/twilio/voice?outbound={dial_id}", {**form, "CallSid": "CA" + "8" * 32})
    assert "<Stream" not in replay.text and "<Hangup />" in replay.text


# ---- placing a call: POST /v1/calls and spotfunnel dial -------------------------------------


def test_place_call_creates_it_at_twilio_with_our_callbacks(fake: FakeTwilio, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPOTFUNNEL_API_TOKEN", "s3cret")
    monkeypatch.setenv("SPOTFUNNEL_PUBLIC_URL", "https://voice.example.com/")
    fake.requests.clear()
    api = client(TwilioCallControl(ACCOUNT_SID, AUTH_TOKEN, api_url=fake.url))
    r = api.post("/v1/calls", json={"tenant": "maple-street-salon", "to": "+1 415 555 0123"},
                 headers={"Authorization": "Bearer s3cret"})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["call_sid"].startswith("CA") and body["status"] == "queued"
    assert (body["to"], body["from"]) == ("+14155550123", "+14155550100")
    [create] = fake.creates()
    dial = re.fullmatch(r"https://voice\.example\.com/twilio/voice\?outbound=([\w-]{24})", create.one("Url"))
    assert dial, create.one("Url")  # our own id of the call, not the tenant: the webhook cannot pick who calls
    assert create.one("StatusCallback") == f"https://voice.example.com/twilio/status?outbound={dial.group(1)}"
    assert create.one("AsyncAmdStatusCallback") == f"https://voice.example.com/twilio/amd?outbound={dial.group(1)}"


@pytest.mark.parametrize("body, auth, code, message", [
    ({"tenant": "maple-street-salon", "to": "+14155550123"}, None, 401, "missing or wrong API token"),
    ({"tenant": "maple-street-salon", "to": "555-0123"}, "Bearer s3cret", 422, "not in E.164 form"),
    ({"tenant": "no-such-salon", "to": "+14155550123"}, "Bearer s3cret", 404, "no-such-salon"),
    ({"tenant": "maple-street-salon", "to": "+14155550123"}, "Bearer s3cret", 503, "set TWILIO_ACCOUNT_SID"),
])
def test_place_call_refusals_say_what_to_do(body: dict[str, str], auth: str | None, code: int, message: str,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPOTFUNNEL_API_TOKEN", "s3cret")
    r = client().post("/v1/calls", json=body, headers={"Authorization": auth} if auth else {})
    assert r.status_code == code and message in r.json()["detail"]


@pytest.mark.parametrize("headers", [{}, {"X-Forwarded-For": "203.0.113.9"}, {"Host": "voice.example.com"}])
def test_without_an_api_token_nobody_may_place_calls(headers: dict[str, str]) -> None:
    app = create_app(Database("sqlite://"), run_worker=False, twilio_auth_token=TOKEN, twilio_control=None)
    local = TestClient(app, base_url="http://127.0.0.1:8080", client=("127.0.0.1", 50123))  # even on loopback
    r = local.post("/v1/calls", json={"tenant": "maple-street-salon", "to": "+14155550123"}, headers=headers)
    assert r.status_code == 403 and "set SPOTFUNNEL_API_TOKEN on the server" in r.json()["detail"]


def test_dial_rejects_a_bad_number_before_calling_anyone() -> None:
    result = CliRunner().invoke(cli, ["dial", "--tenant", "maple-street-salon", "--to", "+1415555",
                                      "--server", "http://127.0.0.1:9"])
    assert result.exit_code == 2
    assert "'+1415555' is not a valid phone number" in result.output and "E.164" in result.output


def test_dial_reports_missing_credentials_from_the_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPOTFUNNEL_API_TOKEN", "s3cret")
    out = io.StringIO()
    code = dial("http://testserver", "maple-street-salon", "+14155550123", Console(file=out, width=300),
                client=client())
    assert code == 1
    assert "the call was not placed (HTTP 503)" in out.getvalue()
    assert "set TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN" in out.getvalue()


def test_dial_places_the_call(fake: FakeTwilio, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPOTFUNNEL_API_TOKEN", "s3cret")
    out = io.StringIO()
    api = client(TwilioCallControl(ACCOUNT_SID, AUTH_TOKEN, api_url=fake.url))
    assert dial("http://testserver", "maple-street-salon", "+14155550123", Console(file=out, width=300),
                client=api) == 0
    assert re.search(r"Twilio call CA[0-9a-f]{32} \(queued\)", out.getvalue())
