"""Signed Twilio webhooks against create_app: 403 / close 1008 unless signed, proxies honoured, keyless default open."""
from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect
from structlog.testing import capture_logs
from twilio.request_validator import RequestValidator

from spotfunnel.api.app import create_app
from spotfunnel.api.security import UNVERIFIED_WARNING
from spotfunnel.store.db import Database

TOKEN = "test-auth-token"
FORM = {"CallSid": "CA1", "From": "+14155550111", "To": "+14155550100"}
SIGN = RequestValidator(TOKEN).compute_signature


def client(token: str | None) -> TestClient:
    """The real app, lifespan not entered: the webhook routes need no models (the engines load lazily)."""
    return TestClient(create_app(Database("sqlite://"), run_worker=False, twilio_auth_token=token))


def test_signed_voice_webhook_gets_twiml() -> None:
    r = client(TOKEN).post("/twilio/voice", data=FORM,
                           headers={"X-Twilio-Signature": SIGN("http://testserver/twilio/voice", FORM)})
    assert r.status_code == 200 and "<Connect><Stream" in r.text


@pytest.mark.parametrize("signature", [None, "bm90IGEgc2lnbmF0dXJl", "SIGNED_OTHER_PARAMS"])
def test_unsigned_or_wrongly_signed_voice_webhook_is_403_and_logged(signature: str | None) -> None:
    if signature == "SIGNED_OTHER_PARAMS":
        signature = SIGN("http://testserver/twilio/voice", {**FORM, "To": "+19995550000"})
    headers = {"X-Twilio-Signature": signature} if signature else {}
    with capture_logs() as logs:
        r = client(TOKEN).post("/twilio/voice", data=FORM, headers=headers)
    assert r.status_code == 403 and "Connect" not in r.text
    [entry] = [e for e in logs if e["event"] == "twilio.signature.rejected"]
    assert entry["path"] == "/twilio/voice" and entry["remote"].startswith("testclient")
    assert entry["reason"] == ("invalid signature" if signature else "missing signature")


def test_forwarded_proto_and_host_are_the_signed_url_and_the_stream_url() -> None:
    public = "https://voice.example.com/twilio/voice"
    headers = {"X-Twilio-Signature": SIGN(public, FORM), "X-Forwarded-Proto": "https",
               "X-Forwarded-Host": "voice.example.com"}
    r = client(TOKEN).post("/twilio/voice", data=FORM, headers=headers)
    assert r.status_code == 200 and re.search(r'url="wss://voice\.example\.com/twilio/media/[\w-]{32}"', r.text)
    # the same signature does not pass for the URL the server sees locally
    assert client(TOKEN).post("/twilio/voice", data=FORM,
                              headers={"X-Twilio-Signature": SIGN(public, FORM)}).status_code == 403


def _stream_url(api: TestClient, headers: dict[str, str]) -> str:
    signed = {"X-Twilio-Signature": SIGN("https://voice.example.com/twilio/voice", FORM), **headers}
    found = re.search(r'<Stream url="([^"]+)"', api.post("/twilio/voice", data=FORM, headers=signed).text)
    assert found
    return found.group(1)


PROXIED = {"X-Forwarded-Proto": "https", "Host": "voice.example.com"}


@pytest.mark.parametrize("headers", [{}, {"X-Twilio-Signature": "bm90IGEgc2lnbmF0dXJl"}, "SIGNED_OTHER_STREAM"])
def test_unsigned_media_stream_is_refused_before_accept(headers: dict[str, str] | str) -> None:
    api = client(TOKEN)
    url = _stream_url(api, PROXIED)
    if headers == "SIGNED_OTHER_STREAM":  # a genuine signature captured from another call's stream
        headers = {"X-Twilio-Signature": SIGN(_stream_url(api, PROXIED), {})}
    assert isinstance(headers, dict)
    with capture_logs() as logs:
        with pytest.raises(WebSocketDisconnect) as refused:
            with api.websocket_connect(url.removeprefix("wss://voice.example.com"), headers={**PROXIED, **headers}):
                pass
    assert refused.value.code == 1008
    assert any(e["event"] == "twilio.signature.rejected" and e["path"].startswith("/twilio/media/") for e in logs)


def test_media_stream_signed_over_its_own_wss_url_is_accepted_once() -> None:
    api = client(TOKEN)
    url = _stream_url(api, PROXIED)
    headers = {"X-Twilio-Signature": SIGN(url, {}), **PROXIED}
    path = url.removeprefix("wss://voice.example.com")
    with api.websocket_connect(path, headers=headers):
        pass  # accepted: the ticket is claimed
    with pytest.raises(WebSocketDisconnect) as replayed:
        with api.websocket_connect(path, headers=headers) as ws:
            ws.receive_text()
    assert replayed.value.code == 1008  # the same URL and signature open nothing a second time


def test_without_a_token_webhooks_pass(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("TWILIO_AUTH_TOKEN", raising=False)
    api = client(None)
    assert api.post("/twilio/voice", data=FORM).status_code == 200


@pytest.mark.models
def test_start_up_warns_once_when_webhooks_are_unverified(services, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("TWILIO_AUTH_TOKEN", raising=False)
    app = create_app(Database("sqlite://"), services=services, run_worker=False)
    with capture_logs() as logs:
        with TestClient(app) as running:
            assert running.get("/healthz").json()["status"] == "ok"
    assert [e["detail"] for e in logs if e["event"] == "twilio.signature.disabled"] == [UNVERIFIED_WARNING]
    signed = create_app(Database("sqlite://"), services=services, run_worker=False, twilio_auth_token=TOKEN)
    with capture_logs() as logs:
        with TestClient(signed):
            pass
    assert not [e for e in logs if e["event"] == "twilio.signature.disabled"]


def test_token_from_the_environment_is_enforced(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", TOKEN)
    assert client(None).post("/twilio/voice", data=FORM).status_code == 403
    assert client("").post("/twilio/voice", data=FORM).status_code == 200  # explicit '' turns checks off
