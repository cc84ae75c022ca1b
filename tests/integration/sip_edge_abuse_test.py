"""The SIP edge against a hostile or broken peer over real UDP sockets: bad addresses, reflection, bursts, junk."""
from __future__ import annotations

import asyncio
import logging
from typing import Any, AsyncIterator

import pytest
from prometheus_client import REGISTRY

import spotfunnel.transports.sip.in_dialog as in_dialog_module
from spotfunnel.transports.base import AudioIn
from spotfunnel.transports.sip.call import MAX_PACED
from spotfunnel.transports.sip.message import header_param
from spotfunnel.transports.sip.peer import SipPeer
from spotfunnel.transports.sip.rtp import RtpPacket
from spotfunnel.transports.sip.server import SipServer
from spotfunnel.transports.sip.udp import open_udp

from sip_support import EchoHandler, RawSip, request, sdp_offer, tone16k, wait_until


@pytest.fixture
async def raw() -> AsyncIterator[RawSip]:
    client = await RawSip().open()
    yield client
    client.close()


@pytest.fixture
async def echo_server() -> AsyncIterator[tuple[SipServer, EchoHandler]]:
    echo = EchoHandler()
    srv = SipServer(echo, port=0)
    await srv.start()
    yield srv, echo
    await srv.stop()


async def answers_options(srv: SipServer, host: str = "127.0.0.1") -> bool:
    """The SIP socket is still up: a fresh client's OPTIONS gets its 200."""
    other = await RawSip(host).open()
    try:
        other.send(request("OPTIONS", other.port), srv.address)
        reply = await other.final()
        return reply is not None and reply.status == 200
    finally:
        other.close()


BAD_ADDRESSES = [
    ("Record-Route: <sip:127.0.0.1:99999;lr>\r\n", "Record-Route"),
    ("Record-Route: <sip:127.0.0.1:65536;lr>\r\n", "Record-Route"),
    ("Record-Route: <sip:bad_host!:5060;lr>\r\n", "Record-Route"),
    ("Record-Route: <sip:10.0.0.999;lr>\r\n", "Record-Route"),
    ("Via: SIP/2.0/UDP 127.0.0.1:70000;branch=z9hG4bKx\r\n", "Via"),
]


@pytest.mark.parametrize(("header", "named"), BAD_ADDRESSES)
async def test_a_bad_host_or_port_in_the_invite_gets_400_naming_it(echo_server: tuple[SipServer, EchoHandler],
                                                                   raw: RawSip, header: str, named: str) -> None:
    srv, echo = echo_server
    raw.send(request("INVITE", raw.port, body=sdp_offer(4000), extra=header), srv.address)
    final = await raw.final()
    assert final is not None and final.status == 400, final
    assert named in (final.get("Warning") or "")
    assert srv._dialogs == {} and echo.calls == [] and await answers_options(srv)


@pytest.mark.parametrize(("sdp_change", "named"), [("m=audio 4000 ", "m=audio 65536 "),
                                                   ("c=IN IP4 127.0.0.1", "c=IN IP4 300.1.1.1"),
                                                   ("c=IN IP4 127.0.0.1", "c=IN IP4 victim.example")])
async def test_a_bad_sdp_address_is_refused_488_with_the_reason(echo_server: tuple[SipServer, EchoHandler],
                                                                raw: RawSip, sdp_change: str, named: str) -> None:
    srv, echo = echo_server
    raw.send(request("INVITE", raw.port, body=sdp_offer(4000).replace(sdp_change, named)), srv.address)
    final = await raw.final()
    assert final is not None and final.status == 488, final
    assert named.split()[-1] in (final.get("Warning") or "")
    assert echo.calls == [] and await answers_options(srv)


async def test_a_send_to_an_impossible_port_is_refused_and_the_socket_lives() -> None:
    """The BYE path's last step: asyncio closes a UDP transport whose sendto raises OverflowError."""
    received: list[bytes] = []
    sock = await open_udp("127.0.0.1", 0, lambda data, _a: received.append(data), "test")
    try:
        refused = [sock.send(b"bye", ("127.0.0.1", 99999)), sock.send(b"bye", ("not an address", 5060))]
        await asyncio.sleep(0)  # asyncio closes a transport whose sendto failed on its next turn
        assert not sock.closed and sock.lost is None
        assert refused == [False, False] and sock.stats["refused"] == 2
        assert sock.send(b"still here", sock.address)
        assert await wait_until(lambda: received == [b"still here"])
    finally:
        sock.close()


async def test_a_failure_inside_one_dialog_ends_that_dialog_only(echo_server: tuple[SipServer, EchoHandler],
                                                                 raw: RawSip, monkeypatch: pytest.MonkeyPatch) -> None:
    srv, echo = echo_server
    victim = SipPeer(srv.address, called="+14155550100")
    bystander = SipPeer(srv.address, called="+14155550100")
    await victim.connect()
    await bystander.connect()

    def broken_digits(_body: bytes) -> list[str]:
        raise RuntimeError("a bug in INFO handling")

    monkeypatch.setattr(in_dialog_module, "info_digits", broken_digits)
    raw.send(request("INFO", raw.port, call_id=victim.call_id, to_tag=victim.remote_tag, cseq=9,
                     body="Signal=5\r\n").replace(b"application/sdp", b"application/dtmf-relay")
             .replace(b"From: <sip:+14155550111@127.0.0.1:" + str(raw.port).encode() + b">;tag=t1",
                      f"From: <sip:x@127.0.0.1>;tag={victim.local_tag}".encode()), srv.address)
    assert await victim.wait_closed(5), "the failed dialog was not ended with a BYE"
    assert srv.stats["dialog_errors"] == 1 and victim.call_id not in srv._dialogs
    assert await answers_options(srv)
    assert srv.active_calls == 1 and not bystander.closed  # the other call is untouched
    await bystander.hangup()


async def test_no_rtp_goes_to_a_third_address_the_sdp_names(echo_server: tuple[SipServer, EchoHandler],
                                                             raw: RawSip) -> None:
    """Reflection: an INVITE from 127.0.0.1 naming 127.0.0.2 in its SDP; we send only once RTP latches us."""
    srv, echo = echo_server
    at_victim: list[bytes] = []
    at_caller: list[bytes] = []
    victim = await open_udp("127.0.0.2", 0, lambda data, _a: at_victim.append(data), "victim")
    caller_media = await open_udp("127.0.0.1", 0, lambda data, _a: at_caller.append(data), "caller-media")
    try:
        offer = sdp_offer(victim.address[1]).replace("c=IN IP4 127.0.0.1", "c=IN IP4 127.0.0.2")
        invite = request("INVITE", raw.port, call_id="reflect", body=offer)
        raw.send(invite, srv.address)
        ok = await raw.final()
        assert ok is not None and ok.status == 200
        raw.send(request("ACK", raw.port, call_id="reflect", to_tag=header_param(ok.get("To") or "", "tag") or ""),
                 srv.address)
        assert await wait_until(lambda: bool(echo.calls) and echo.calls[0].stats.get("packets_out", 0) >= 25)
        # the agent has produced half a second of audio: none of it went to the address the SDP named
        assert at_victim == [] and srv.stats["rtp_held"] >= 25
        our_port = int(ok.body.decode().split("m=audio ")[1].split()[0])
        caller_media.send(RtpPacket(0, 1, 160, 0xC0FFEE, b"\xff" * 160).to_bytes(), ("127.0.0.1", our_port))
        assert await wait_until(lambda: len(at_caller) >= 5), "RTP from the caller did not latch the path"
        assert at_victim == []
    finally:
        victim.close()
        caller_media.close()


async def test_a_burst_of_rtp_does_not_run_the_call_clock_ahead(echo_server: tuple[SipServer, EchoHandler]) -> None:
    """5 s of RTP sent at once: the agent is handed audio at most as fast as the wall clock runs (plus the cap)."""
    srv, echo = echo_server
    peer = SipPeer(srv.address, called="+14155550100")
    await peer.connect()
    try:
        assert await wait_until(lambda: bool(echo.calls))
        call = echo.calls[0]
        loop = asyncio.get_running_loop()
        before, started_at = len(echo.of(AudioIn)), loop.time()
        for i in range(250):  # 5 s of caller audio, sent as fast as the loop can encode it
            await peer.exchange(tone16k(frame=i))
        assert await wait_until(lambda: call.stats.get("packets_in", 0) >= 250)
        handed, elapsed = len(echo.of(AudioIn)) - before, loop.time() - started_at
        ticks = int(elapsed / 0.02) + 2
        assert handed <= ticks, f"{handed} frames of audio time handed over in {ticks} ticks of wall time"
        assert call.stats["frames_dropped_fast"] >= 250 - MAX_PACED - ticks
    finally:
        await peer.hangup()


def junk_lines(records: list[logging.LogRecord]) -> list[str]:
    return [r.getMessage() for r in records if "malformed" in r.getMessage() or "unreadable" in r.getMessage()
            or "bad request" in r.getMessage()]


async def test_a_junk_flood_is_counted_rate_limited_in_the_log_and_then_ignored(
        echo_server: tuple[SipServer, EchoHandler], raw: RawSip, caplog: pytest.LogCaptureFixture) -> None:
    srv, _echo = echo_server
    malformed_before = REGISTRY.get_sample_value("spotfunnel_sip_junk_datagrams_total", {"kind": "malformed"}) or 0
    caplog.set_level(logging.INFO, logger="spotfunnel.transports.sip")
    for i in range(300):
        junk = (b"\x00\xffnot sip at all %d\r\n\r\n" % i if i % 2
                else request("INVITE", raw.port).replace(b"CSeq: 1 INVITE", b"CSeq: one INVITE"))
        raw.send(junk, srv.address)
        if i % 10 == 9:
            await asyncio.sleep(0.002)  # let the server read: a loopback socket buffer holds only so much
    assert await wait_until(lambda: srv.stats["malformed"] + srv.junk.stats["ignored"] >= 250), srv.junk.stats
    assert srv.stats["malformed"] == srv.junk.ignore_after  # counted until the source was ignored
    assert srv.junk.stats["sources_ignored"] == 1 and srv.junk.ignored_hosts == 1
    assert len(junk_lines(caplog.records)) <= 3, junk_lines(caplog.records)
    malformed_after = REGISTRY.get_sample_value("spotfunnel_sip_junk_datagrams_total", {"kind": "malformed"}) or 0
    assert malformed_after - malformed_before == srv.junk.ignore_after
    raw.send(request("OPTIONS", raw.port), srv.address)  # even a good request from it goes unanswered now
    while (await raw.reply(0.3)) is not None:
        pass  # the 400s answered before the source was ignored
    assert len(srv._responses) <= srv.junk.ignore_after + 1 and srv._dialogs == {}
    assert await answers_options(srv, "127.0.0.2")  # every other host is served as before
    assert (await srv.health())["status"] == "ok"  # and so is our own probe from the ignored host


async def test_junk_from_many_sources_keeps_memory_flat() -> None:
    from spotfunnel.transports.sip.junk import JunkGuard

    now = [0.0]
    guard = JunkGuard(max_sources=16, ignore_after=3, clock=lambda: now[0])
    for i in range(10_000):
        guard.junk(f"10.0.{i // 250}.{i % 250}", 5060, "junk")
        now[0] += 0.001
    assert len(guard) == 16 and guard.stats["malformed"] == 10_000
    for _ in range(3):
        guard.junk("192.0.2.1", 5060, "junk")
    assert guard.ignoring("192.0.2.1") and not guard.ignoring("192.0.2.2")
    now[0] += guard.ignore_for_s
    assert not guard.ignoring("192.0.2.1")  # ignored for a while, not forever


async def test_an_invite_flood_past_the_dialog_cap_gets_503(raw: RawSip) -> None:
    srv = SipServer(EchoHandler(), port=0, max_dialogs=2, answer_delay_s=5.0)
    await srv.start()
    try:
        for n in range(3):
            raw.send(request("INVITE", raw.port, call_id=f"flood-{n}", body=sdp_offer(4000)), srv.address)
        replies: list[Any] = []
        while (reply := await raw.reply(1.0)) is not None:
            replies.append(reply)
        assert [r.status for r in replies if r.call_id == "flood-2"] == [503]
        assert len(srv._dialogs) == 2 and srv.stats["overloaded"] == 1
    finally:
        await srv.stop()
