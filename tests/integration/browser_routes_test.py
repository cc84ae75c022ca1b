"""The browser routes' guards, without a browser: other sites' pages, oversized offers, and the call limit."""
from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from spotfunnel.api.app import create_app
from spotfunnel.api.browser import MAX_CALLS_ENV, MAX_SDP_CHARS, same_origin
from spotfunnel.store.db import Database

OFFER = {"sdp": "v=0", "tenant": "maple-street-salon"}


def client() -> TestClient:
    """The real app, lifespan not entered: these refusals happen before any model is needed."""
    return TestClient(create_app(Database("sqlite://"), run_worker=False, twilio_auth_token=""),
                      base_url="http://127.0.0.1:8080")


def test_same_origin_compares_the_page_with_the_server() -> None:
    assert same_origin({"host": "127.0.0.1:8080", "origin": "http://127.0.0.1:8080"})
    assert same_origin({"host": "127.0.0.1:8080"})  # not a browser: no Origin
    assert not same_origin({"host": "127.0.0.1:8080", "origin": "https://evil.example"})
    assert not same_origin({"host": "127.0.0.1:8080", "origin": "http://127.0.0.1:9999"})
    behind_proxy = {"host": "127.0.0.1:8080", "x-forwarded-host": "voice.example.com"}
    assert same_origin({**behind_proxy, "origin": "https://voice.example.com"})
    assert not same_origin({**behind_proxy, "origin": "https://evil.example"})


def test_an_offer_from_another_sites_page_is_refused() -> None:
    r = client().post("/webrtc/offer", json=OFFER, headers={"Origin": "https://evil.example"})
    assert r.status_code == 403 and "talk page" in r.json()["detail"]


def test_a_websocket_from_another_sites_page_is_refused() -> None:
    with pytest.raises(WebSocketDisconnect) as closed:
        with client().websocket_connect("/browser/ws", headers={"Origin": "https://evil.example"}) as ws:
            ws.receive_json()
    assert closed.value.code == 1008


def test_an_oversized_offer_is_refused_before_it_is_parsed() -> None:
    r = client().post("/webrtc/offer", json={**OFFER, "sdp": "a" * (MAX_SDP_CHARS + 1)})
    assert r.status_code == 422 and "sdp" in r.text


def test_a_call_beyond_the_limit_is_refused_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MAX_CALLS_ENV, "1")
    api = client()
    with api.websocket_connect("/browser/ws") as first:  # holds the only seat, waiting for its start
        with api.websocket_connect("/browser/ws") as second:
            refused = second.receive_json()
            assert refused["type"] == "refused" and f"{MAX_CALLS_ENV}=1" in refused["message"]
            with pytest.raises(WebSocketDisconnect) as closed:
                second.receive_json()
            assert closed.value.code == 1013
        r = api.post("/webrtc/offer", json=OFFER)
        assert r.status_code == 429 and "try again" in r.json()["detail"]
        first.close()


def test_a_socket_that_never_starts_a_call_gives_its_seat_back(monkeypatch: pytest.MonkeyPatch) -> None:
    from spotfunnel.transports.browser_guard import BrowserLimits

    monkeypatch.setenv(MAX_CALLS_ENV, "1")
    api = client()
    api.app.state.browser_limits = BrowserLimits(start_timeout_s=0.3)  # type: ignore[attr-defined]
    for _ in range(2):  # the second socket gets the seat the idle first one gave back
        with api.websocket_connect("/browser/ws") as idle:
            messages = []
            with pytest.raises(WebSocketDisconnect):
                while True:
                    messages.append(idle.receive_json())
            assert all(m.get("type") != "refused" for m in messages), messages


def test_an_offer_body_over_its_cap_is_refused_before_it_is_read() -> None:
    from spotfunnel.api.limits import ROUTE_BODY_CAPS

    cap = ROUTE_BODY_CAPS["/webrtc/offer"]
    r = client().post("/webrtc/offer", content=b"{" + b" " * cap + b"}", headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and "/webrtc/offer" in r.text


def test_an_offer_with_hundreds_of_media_sections_is_refused_before_aiortc_builds_them() -> None:
    sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n" + "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n" * 300
    r = client().post("/webrtc/offer", json={**OFFER, "sdp": sdp})
    assert r.status_code == 400 and "300 media sections" in r.json()["detail"]


def test_an_offer_for_a_tenant_the_server_does_not_have_is_refused() -> None:
    r = client().post("/webrtc/offer", json={**OFFER, "tenant": "../etc/passwd"})
    assert r.status_code == 404 and "maple-street-salon" in r.json()["detail"]
