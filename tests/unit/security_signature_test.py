"""X-Twilio-Signature checks: Twilio's published test vector, proxy-aware URLs, the keyless default."""
from __future__ import annotations

from starlette.datastructures import URL, FormData, Headers
from structlog.testing import capture_logs

from spotfunnel.api.security import UNVERIFIED_WARNING, TwilioSignatureVerifier, public_url

# The example from Twilio's request-validation docs and twilio-python's own test suite
# (tests/unit/test_request_validator.py): token 12345, this URL and these POST params.
TOKEN = "12345"
URL_ = "https://mycompany.com/myapp.php?foo=1&bar=2"
PARAMS = {"CallSid": "CA1234567890ABCDE", "Caller": "+14158675309", "Digits": "1234",
          "From": "+14158675309", "To": "+18005551212"}
SIGNATURE = "RSOYDt4T1cUTdK1PDd93/VVr8B8="


def test_twilio_published_vector_validates() -> None:
    verifier = TwilioSignatureVerifier(TOKEN)
    assert verifier.enabled
    assert verifier.is_valid(URL_, PARAMS, SIGNATURE)


def test_wrong_missing_or_tampered_signature_fails() -> None:
    verifier = TwilioSignatureVerifier(TOKEN)
    assert not verifier.is_valid(URL_, PARAMS, None)
    assert not verifier.is_valid(URL_, PARAMS, "")
    assert not verifier.is_valid(URL_, PARAMS, "0/KCTR6DLpKmkAf8muzZqo1nDgQ=")
    assert not verifier.is_valid(URL_, {**PARAMS, "Digits": "9999"}, SIGNATURE)
    assert not verifier.is_valid(URL_.replace("foo=1", "foo=2"), PARAMS, SIGNATURE)
    assert not TwilioSignatureVerifier("54321").is_valid(URL_, PARAMS, SIGNATURE)


def test_form_data_multidict_is_signed_like_a_dict() -> None:
    form = FormData(list(PARAMS.items()))
    assert TwilioSignatureVerifier(TOKEN).is_valid(URL_, form, SIGNATURE)


def test_public_url_honours_forwarded_proto_and_host() -> None:
    local = URL("http://10.0.0.5:8080/twilio/voice?x=1")
    assert public_url(local, Headers({"host": "10.0.0.5:8080"})) == "http://10.0.0.5:8080/twilio/voice?x=1"
    behind = Headers({"host": "internal:8080", "x-forwarded-proto": "https, http",
                      "x-forwarded-host": "voice.example.com"})
    assert public_url(local, behind) == "https://voice.example.com/twilio/voice?x=1"
    ws = URL("ws://internal:8080/twilio/media")
    assert public_url(ws, Headers({"host": "voice.example.com", "x-forwarded-proto": "https"}),
                      websocket=True) == "wss://voice.example.com/twilio/media"


def test_configured_reads_env_and_explicit_token_wins(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", TOKEN)
    assert TwilioSignatureVerifier.configured().enabled
    assert not TwilioSignatureVerifier.configured("").enabled
    monkeypatch.delenv("TWILIO_AUTH_TOKEN")
    assert not TwilioSignatureVerifier.configured().enabled
    assert TwilioSignatureVerifier.configured(TOKEN).enabled


def test_without_token_everything_passes_and_the_warning_is_logged_once() -> None:
    verifier = TwilioSignatureVerifier(None)
    assert verifier.is_valid(URL_, PARAMS, None)
    with capture_logs() as logs:
        verifier.warn_if_disabled()
        verifier.warn_if_disabled()
    assert [entry["detail"] for entry in logs] == [UNVERIFIED_WARNING]
    with capture_logs() as logs:
        TwilioSignatureVerifier(TOKEN).warn_if_disabled()
    assert logs == []
