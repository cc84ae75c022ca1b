"""SIP edge hardening without a server: the bounded response cache, inbound queue cap, outbound address, CLI option."""
from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from spotfunnel.audio.g711 import ulaw_encode
from spotfunnel.transports.base import AudioIn, CallStarted, Dtmf, MarkPlayed
from spotfunnel.transports.sip import call as call_module
from spotfunnel.transports.sip import udp
from spotfunnel.transports.sip.call import SipCallTransport
from spotfunnel.transports.sip.media import SipMediaCodec
from spotfunnel.transports.sip.message import SipMessage
from spotfunnel.transports.sip.responses import ResponseCache
from spotfunnel.transports.sip.retransmit import T1, retransmit
from spotfunnel.transports.sip.rtp import RtpPacket
from spotfunnel.transports.sip.rtp_path import RtpPath
from spotfunnel.transports.sip.sdp import AgreedMedia


def options(call_id: str, branch: str, cseq: str = "1 OPTIONS") -> SipMessage:
    msg = SipMessage(method="OPTIONS", uri="sip:x@127.0.0.1")
    msg.add("Via", f"SIP/2.0/UDP 127.0.0.1:5062;branch={branch}")
    msg.add("Call-ID", call_id)
    msg.add("CSeq", cseq)
    return msg


def test_response_cache_keys_transactions_by_call_id_cseq_and_branch() -> None:
    cache = ResponseCache()
    cache.put(options("a", "z9hG4bK1"), b"answer a")
    assert cache.get(options("a", "z9hG4bK1")) == b"answer a"
    assert cache.get(options("b", "z9hG4bK1")) is None  # same branch, another call
    assert cache.get(options("a", "z9hG4bK1", "2 OPTIONS")) is None  # same branch, another CSeq
    assert cache.get(options("a", "z9hG4bK2")) is None


def test_response_cache_is_bounded_and_never_serves_stale_answers() -> None:
    now = [0.0]
    cache = ResponseCache(max_entries=3, max_age_s=32.0, clock=lambda: now[0])
    for i in range(5):
        cache.put(options(f"c{i}", "z9hG4bK1"), f"{i}".encode())
    assert len(cache) == 3 and cache.get(options("c0", "z9hG4bK1")) is None  # the oldest went first
    now[0] = 40.0
    assert cache.get(options("c4", "z9hG4bK1")) is None  # the transaction is long over
    cache.put(options("new", "z9hG4bK1"), b"new")
    assert len(cache) == 1  # stale entries are pruned on insert


async def test_inbound_queue_is_capped_when_the_agent_does_not_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(call_module, "MAX_PENDING", 50)
    agreed = AgreedMedia("PCMU", 0, 20, 101, "127.0.0.1", 4000)
    codec = SipMediaCodec(agreed, realtime=False)
    transport = SipCallTransport(CallStarted(call_id="flood", caller_id="a", called="b"), codec, lambda _p: None,
                                 control=None, lockstep=True)  # type: ignore[arg-type]
    payload = ulaw_encode(bytes(480 * 2))
    for seq in range(200):  # three frames per packet, nobody reading
        transport.on_rtp(RtpPacket(0, seq, seq * 480, 7, payload).to_bytes())
    assert len(transport._pending) == 50
    assert transport.stats["events_dropped"] >= 200 * 3 + 1 - 50
    assert isinstance(await transport.receive(), CallStarted)  # what was queued first is still there


async def test_retransmit_resends_until_the_outcome_and_pauses_on_request() -> None:
    loop = asyncio.get_running_loop()
    sent: list[float] = []
    future: asyncio.Future[str] = loop.create_future()

    def send() -> None:  # the answer comes right after the third copy, however slow the machine is
        sent.append(loop.time())
        if len(sent) == 3:
            future.set_result("final")

    assert await retransmit(send, future, 30.0) == "final"
    assert len(sent) == 3  # nothing is resent once the outcome is in
    gaps = [b - a for a, b in zip(sent, sent[1:])]
    assert gaps[0] >= T1 - 0.01 and gaps[1] >= 2 * T1 - 0.01  # T1, then doubling
    paused: list[int] = []
    never: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    assert await retransmit(lambda: paused.append(1), never, 1.0, pause=lambda: True) is None
    assert len(paused) == 1 and never.cancelled()


async def test_a_full_inbound_queue_still_takes_digits_and_marks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(call_module, "MAX_PENDING", 10)
    codec = SipMediaCodec(AgreedMedia("PCMU", 0, 20, 101, "127.0.0.1", 4000), realtime=False)
    transport = SipCallTransport(CallStarted(call_id="busy", caller_id="a", called="b"), codec, lambda _p: None,
                                 control=None, lockstep=True)  # type: ignore[arg-type]
    payload = ulaw_encode(bytes(160))
    for seq in range(20):
        transport.on_rtp(RtpPacket(0, seq, seq * 160, 7, payload).to_bytes())
    assert len(transport._pending) == 10 and transport.stats["events_dropped"] > 0
    transport.on_dtmf("5")
    await transport.send_mark("greeting")
    queued = list(transport._pending)
    assert isinstance(queued[-2], Dtmf) and isinstance(queued[-1], MarkPlayed)  # control gets past the cap
    transport.on_rtp(RtpPacket(0, 20, 3200, 7, payload).to_bytes())
    assert sum(isinstance(e, AudioIn) for e in transport._pending) == 9  # audio is still capped


def _path(remote: tuple[str, int] = ("192.0.2.10", 4000), signalling: str = "192.0.2.10",
          direction: str = "sendrecv") -> tuple[RtpPath, list[tuple[bytes, tuple[str, int]]]]:
    sent: list[tuple[bytes, tuple[str, int]]] = []
    path = RtpPath("c", remote, signalling, {}, direction)
    path.socket = type("FakeSocket", (), {"send": lambda _s, data, addr: sent.append((data, addr))})()  # type: ignore[assignment]
    return path, sent


def test_rtp_trust_matches_ipv4_mapped_sources_of_a_dual_stack_socket() -> None:
    got: list[bytes] = []
    path, _sent = _path(signalling="::ffff:198.51.100.4")
    path.receiver = got.append
    packet = RtpPacket(0, 1, 160, 7, bytes(160)).to_bytes()
    path.on_datagram(packet, ("::ffff:192.0.2.10", 4000))  # bound to ::, the SDP host a.b.c.d arrives mapped
    path.on_datagram(packet, ("198.51.100.4", 4002))  # the signalling host, seen unmapped
    path.on_datagram(packet, ("::ffff:203.0.113.66", 4000))
    assert len(got) == 2 and path.stats["rtp_untrusted"] == 1


def test_rfc2543_hold_and_an_initial_hold_stop_our_rtp() -> None:
    path, sent = _path()
    path.retarget(("0.0.0.0", 4000), "sendrecv")  # c=0.0.0.0 holds whatever the direction says
    path.send(b"x")
    assert not path.sending and sent == [] and path.remote == ("192.0.2.10", 4000)
    path.retarget(("192.0.2.10", 4000), "sendrecv")
    path.send(b"y")
    assert sent == [(b"y", ("192.0.2.10", 4000))]
    held, _ = _path(direction="recvonly")
    assert not held.sending


class _RoutedSocket:
    """Stands in for a UDP socket: `connect` picks a route; `getsockname` is the interface address."""

    routes: dict[int, str | None] = {}

    def __init__(self, family: int, _kind: int) -> None:
        self.family = family

    def __enter__(self) -> _RoutedSocket:
        return self

    def __exit__(self, *_exc: Any) -> None:
        pass

    def connect(self, _address: Any) -> None:
        if self.routes.get(self.family) is None:
            raise OSError("Network is unreachable")

    def getsockname(self) -> tuple[str, int]:
        return str(self.routes[self.family]), 40000


def test_outbound_host_is_the_routed_interface_or_loopback_with_a_warning(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(socket, "socket", _RoutedSocket)
    monkeypatch.setattr(_RoutedSocket, "routes", {socket.AF_INET: "192.0.2.44", socket.AF_INET6: None})
    assert udp.outbound_host("0.0.0.0") == "192.0.2.44"
    monkeypatch.setattr(_RoutedSocket, "routes", {socket.AF_INET: None, socket.AF_INET6: "2001:db8::5"})
    assert udp.outbound_host("::") == "2001:db8::5"
    monkeypatch.setattr(_RoutedSocket, "routes", {})
    assert udp.outbound_host("0.0.0.0") == "127.0.0.1"
    assert "--sip-advertise-host" in caplog.text


def test_serve_passes_sip_advertise_host_to_the_sip_edge(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    import spotfunnel.api.app
    import spotfunnel.api.browser
    import spotfunnel.api.sip_edge
    import spotfunnel.cli
    import spotfunnel.store.db
    from spotfunnel.cli import app

    seen: dict[str, Any] = {}

    async def fake_serve_with_sip(_app: Any, **kwargs: Any) -> None:
        seen.update(kwargs)

    monkeypatch.setattr(spotfunnel.cli, "configure_logging", lambda _level: None)  # logs stay on pytest's stderr
    monkeypatch.setattr(spotfunnel.api.app, "create_app", lambda _db: object())
    monkeypatch.setattr(spotfunnel.store.db, "Database", lambda _url: object())
    monkeypatch.setattr(spotfunnel.api.browser, "announce_when_ready", lambda web, *_a: web)
    monkeypatch.setattr(spotfunnel.api.sip_edge, "serve_with_sip", fake_serve_with_sip)
    result = CliRunner().invoke(app, ["serve", "--db", "sqlite://", "--host", "0.0.0.0", "--sip-port", "5060",
                                      "--sip-advertise-host", "203.0.113.9"])
    assert result.exit_code == 0, result.output
    assert seen["sip_advertise_host"] == "203.0.113.9" and seen["sip_port"] == 5060
    assert seen["sip_allow"] is None
    result = CliRunner().invoke(app, ["serve", "--db", "sqlite://", "--sip-port", "5060",
                                      "--sip-allow", "203.0.113.0/24", "--sip-allow", "198.51.100.7"])
    assert result.exit_code == 0, result.output
    assert seen["sip_allow"] == ["203.0.113.0/24", "198.51.100.7"]
    result = CliRunner().invoke(app, ["serve", "--db", "sqlite://", "--sip-port", "5060", "--sip-allow", "trunk"])
    assert result.exit_code == 2 and "'trunk' is not an IP address or network" in result.output


async def test_serve_with_sip_gives_the_edge_its_advertise_host(monkeypatch: pytest.MonkeyPatch) -> None:
    import types

    import uvicorn

    from spotfunnel.api import sip_edge

    made: dict[str, Any] = {}

    class FakeEdge:
        def __init__(self, *_a: Any, **kwargs: Any) -> None:
            made.update(kwargs)

        async def start(self) -> None: ...

        async def stop(self) -> None: ...

    class FakeUvicorn:
        started = True

        def __init__(self, _config: Any) -> None: ...

        async def serve(self) -> None: ...

    monkeypatch.setattr(sip_edge, "SipEdge", FakeEdge)
    monkeypatch.setattr(uvicorn, "Server", FakeUvicorn)
    monkeypatch.setattr(uvicorn, "Config", lambda *_a, **_k: None)
    web = types.SimpleNamespace(state=types.SimpleNamespace(spotfunnel=types.SimpleNamespace(
        services=None, directory=None)))
    await sip_edge.serve_with_sip(web, host="0.0.0.0", port=8080, log_level="info", sip_port=5060,
                                  sip_max_calls=2, sip_advertise_host="203.0.113.9")
    assert made["advertise_host"] == "203.0.113.9" and made["host"] == "0.0.0.0"
