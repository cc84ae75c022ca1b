"""The SIP server on loopback against a Python UAC and hand-written datagrams: calls, refusals, bad input."""
from __future__ import annotations

import asyncio
from typing import AsyncIterator

import pytest

from spotfunnel.api.sip_edge import parse_networks
from spotfunnel.transports.base import AudioIn, Dtmf, Hangup, ProtocolIssue
from spotfunnel.transports.sip.call import SipCallTransport
from spotfunnel.transports.sip.peer import SipCallFailed, SipPeer
from spotfunnel.transports.sip.rtp import RtpPacket
from spotfunnel.transports.sip.server import SipServer

from sip_support import EchoHandler, RawSip, lockstep_peer, request, sdp_offer, tone16k, wait_until


@pytest.fixture
async def echo() -> EchoHandler:
    return EchoHandler()


@pytest.fixture
async def server(echo: EchoHandler) -> AsyncIterator[SipServer]:
    srv = SipServer(echo, port=0, max_calls=2)
    await srv.start()
    yield srv
    await srv.stop()


@pytest.fixture
async def raw() -> AsyncIterator[RawSip]:
    client = await RawSip().open()
    yield client
    client.close()


async def talk(peer: SipPeer, frames: int) -> int:
    heard = 0
    for i in range(frames):
        heard += (await peer.exchange(tone16k(frame=i))) is not None
    return heard


async def test_lockstep_call_echoes_audio_and_dtmf_and_ends_with_bye(server: SipServer, echo: EchoHandler) -> None:
    # neither header does anything from an untrusted source: lockstep and the tenant are set in process only
    peer = lockstep_peer(server, called="+14155550100",
                         headers={"X-SpotFunnel-Tenant": "t1", "X-SpotFunnel-Lockstep": "0", "X-SpotFunnel-Caller": "x"})
    await peer.connect()
    assert await talk(peer, 30) == 30
    await peer.send_dtmf("4")
    await peer.hangup()
    await asyncio.wait_for(echo.release.wait(), 5)
    started = echo.events[0]
    assert started.tenant_id is None and "lockstep" not in started.params  # type: ignore[union-attr]
    assert started.caller_id == "+15550100001" and echo.calls[0].lockstep  # type: ignore[union-attr]
    assert len(echo.of(AudioIn)) == 30 and [d.digit for d in echo.of(Dtmf)] == ["4"]
    assert echo.of(Hangup)[0].reason == "caller hung up"
    assert len(peer.received) == 30 and server.active_calls == 0


async def test_agent_hangup_sends_bye_and_transfer_sends_refer(server: SipServer, echo: EchoHandler) -> None:
    peer = lockstep_peer(server, called="+14155550100")
    await peer.connect()
    await talk(peer, 3)
    await peer.send_dtmf("9")
    assert await peer.wait_closed(5) and peer.ended_reason == "agent hung up"

    second = lockstep_peer(server, called="+14155550100")
    await second.connect()
    await talk(second, 3)
    await second.send_dtmf("0")
    assert await second.wait_closed(5)
    assert second.transferred_to is not None and "+14155550199" in second.transferred_to


async def test_options_and_retransmissions_get_the_same_answer(server: SipServer, raw: RawSip) -> None:
    options = request("OPTIONS", raw.port)
    raw.send(options, server.address)
    first = await raw.reply()
    raw.send(options, server.address)
    again = await raw.reply()
    assert first is not None and first.status == 200 and "INVITE" in (first.get("Allow") or "")
    assert again is not None and again.serialise() == first.serialise()
    assert server.stats["retransmissions"] == 1


async def test_no_common_codec_is_488(server: SipServer, raw: RawSip) -> None:
    raw.send(request("INVITE", raw.port, body=sdp_offer(4000, "9 18")), server.address)
    final = await raw.final()
    assert final is not None and final.status == 488 and "no common codec" in (final.get("Warning") or "")


async def test_busy_at_capacity_and_when_draining(server: SipServer, raw: RawSip) -> None:
    peers = [SipPeer(server.address, called="+14155550100") for _ in range(2)]
    for p in peers:
        await p.connect()
    with pytest.raises(SipCallFailed) as refused:
        await SipPeer(server.address, called="+14155550100").connect()
    assert refused.value.status == 486
    for p in peers:
        await p.hangup()
    assert await wait_until(lambda: server.active_calls == 0)
    server.draining = True
    raw.send(request("INVITE", raw.port, body=sdp_offer(4000)), server.address)
    final = await raw.final()
    assert final is not None and final.status == 486 and "draining" in (final.get("Warning") or "")


async def test_cancel_while_ringing_gets_487(echo: EchoHandler, raw: RawSip) -> None:
    srv = SipServer(echo, port=0, answer_delay_s=2.0)
    await srv.start()
    try:
        branch = "z9hG4bKcancelme"
        raw.send(request("INVITE", raw.port, call_id="c1", branch=branch, body=sdp_offer(4000)), srv.address)
        ringing = [await raw.reply(), await raw.reply()]
        assert [m.status for m in ringing if m] == [100, 180]
        raw.send(request("CANCEL", raw.port, call_id="c1", branch=branch), srv.address)
        answers = {(m.status, m.cseq[1]) for m in [await raw.reply(), await raw.reply()] if m}
        assert answers == {(200, "CANCEL"), (487, "INVITE")}
        await asyncio.sleep(2.2)
        assert srv.active_calls == 0 and echo.calls == []  # never answered
    finally:
        await srv.stop()


async def test_bye_for_an_unknown_call_is_481(server: SipServer, raw: RawSip) -> None:
    raw.send(request("BYE", raw.port, to_tag="nope"), server.address)
    final = await raw.final()
    assert final is not None and final.status == 481


async def test_malformed_sip_never_crashes_the_server(server: SipServer, raw: RawSip) -> None:
    junk = [b"\x00\x01\x02 binary", b"NOT SIP AT ALL\r\n\r\n", b"INVITE sip:x SIP/2.0\r\n\r\n", b"\r\n\r\n",
            b"SIP/2.0 200 OK\r\nCSeq: 1 BYE\r\n\r\n", b"A" * 70_000]
    for data in junk:
        raw.send(data, server.address)
    assert await raw.reply(0.5) is None  # nothing to answer: logged and ignored
    broken = request("INVITE", raw.port, body=sdp_offer(4000)).replace(b"Max-Forwards: 70", b"Max Forwards 70")
    raw.send(broken, server.address)
    bad = await raw.final()
    assert bad is not None and bad.status == 400 and "Name: value" in (bad.get("Warning") or "")
    raw.send(request("OPTIONS", raw.port).replace(b"CSeq: 1 OPTIONS", b"CSeq: x"), server.address)
    bad_cseq = await raw.final()
    assert bad_cseq is not None and bad_cseq.status == 400
    raw.send(request("OPTIONS", raw.port), server.address)
    ok = await raw.final()
    assert ok is not None and ok.status == 200  # still serving
    assert server.stats["malformed"] >= 5 and server.stats["bad_request"] == 2


async def test_bad_rtp_reordered_duplicated_and_wrong_types_are_handled(server: SipServer, echo: EchoHandler) -> None:
    peer = SipPeer(server.address, called="+14155550100")
    await peer.connect()
    codec = peer.codec
    assert codec is not None
    ssrc, send = 4242, peer.send_raw_rtp
    from spotfunnel.audio.g711 import ulaw_encode
    from spotfunnel.audio.resample import resample_once

    payload = ulaw_encode(resample_once(tone16k(), 16000, 8000))
    order = [0, 1, 3, 2, 4, 4, 5, 7, 6, 8, 9]  # swapped pairs and a duplicate
    for seq in order:
        send(RtpPacket(0, seq, seq * 160, ssrc, payload).to_bytes())
        await asyncio.sleep(0.005)
    send(RtpPacket(8, 10, 1600, ssrc, payload).to_bytes())  # PCMA on a PCMU call
    send(RtpPacket(96, 11, 1760, ssrc, payload).to_bytes())  # a type nobody agreed
    send(b"\x12\x34 not rtp")
    send(b"")
    # every datagram but the empty one (which may not arrive as one) reached the call
    assert await wait_until(lambda: bool(echo.calls) and echo.calls[0].stats.get("packets_in", 0) >= len(order) + 3)
    await peer.hangup()
    await asyncio.wait_for(echo.release.wait(), 5)
    transport = echo.calls[0]
    issues = " | ".join(i.message for i in echo.of(ProtocolIssue))
    assert "payload type 8" in issues and "payload type 96" in issues and "malformed RTP" in issues
    assert transport.stats["packets_duplicate"] == 1 and transport.codec.jitter.stats["lost"] == 0
    assert transport.stats["loud_frames_in"] >= 9  # every tone packet was played, in order
    again = lockstep_peer(server, called="+14155550100")
    await again.connect()  # the server is still answering
    await again.hangup()


async def test_reinvite_keeps_the_call_and_info_dtmf_is_a_digit(server: SipServer, echo: EchoHandler,
                                                                 raw: RawSip) -> None:
    peer = lockstep_peer(server, called="+14155550100")
    await peer.connect()
    await talk(peer, 2)
    in_dialog = dict(call_id=peer.call_id, to_tag=peer.remote_tag, cseq=5)
    raw.send(request("INVITE", raw.port, body=sdp_offer(4000), **in_dialog).replace(  # type: ignore[arg-type]
        b"tag=t1", f"tag={peer.local_tag}".encode()), server.address)
    reinvite = await raw.final()
    assert reinvite is not None and reinvite.status == 200 and b"m=audio" in reinvite.body
    info = request("INFO", raw.port, call_id=peer.call_id, to_tag=peer.remote_tag, cseq=6,
                   extra="Content-Type: application/dtmf-relay\r\n").replace(b"Content-Length: 0",
                                                                            b"Content-Length: 24")
    raw.send(info + b"Signal=3\r\nDuration=160\r\n", server.address)
    answered = await raw.final()
    assert answered is not None and answered.status == 200
    assert await talk(peer, 2) == 2  # the call is still up
    await peer.hangup()
    await asyncio.wait_for(echo.release.wait(), 5)
    assert [d.digit for d in echo.of(Dtmf)] == ["3"]


async def test_callers_ptime_of_30_ms_is_answered_in_kind(server: SipServer, echo: EchoHandler) -> None:
    peer = SipPeer(server.address, called="+14155550100", codecs=("PCMA",), ptime=30)
    await peer.connect()
    assert peer.codec is not None and peer.codec.agreed.ptime == 30
    for i in range(30):
        await peer.exchange(tone16k(frame=i))
        await asyncio.sleep(0.02)
    assert await wait_until(lambda: len(peer.received) >= 15)
    await peer.hangup()
    assert {(p.payload_type, p.payload_bytes) for p in peer.received} == {(8, 240)}  # PCMA, 30 ms packets
    steps = {(b.timestamp - a.timestamp) % 2**32 for a, b in zip(peer.received, peer.received[1:])}
    assert steps == {240}


async def test_edge_refuses_a_number_no_tenant_answers_with_404() -> None:
    from typing import Any, cast

    from spotfunnel.api.sip_edge import SipEdge
    from spotfunnel.calls.directory import CallDirectory

    directory = CallDirectory(default_setup=cast(Any, None))
    edge = SipEdge(cast(Any, None), directory, port=0)  # admission needs no engines
    await edge.start()
    try:
        with pytest.raises(SipCallFailed) as refused:
            await SipPeer(edge.server.address, called="+19995550000").connect()
        assert refused.value.status == 404
    finally:
        await edge.stop()


async def test_edge_refuses_callers_outside_the_allowed_networks_with_403() -> None:
    from typing import Any, cast

    from spotfunnel.api.sip_edge import SipEdge
    from spotfunnel.calls.directory import CallDirectory

    directory = CallDirectory(default_setup=cast(Any, None))
    edge = SipEdge(cast(Any, None), directory, port=0, allow=["10.0.0.0/8", "203.0.113.7"])
    await edge.start()
    try:
        with pytest.raises(SipCallFailed) as refused:  # 127.0.0.1 is not a trunk address
            await SipPeer(edge.server.address, called="+14155550100").connect()
        assert refused.value.status == 403
        edge.allow = parse_networks(["127.0.0.0/8"])
        with pytest.raises(SipCallFailed) as past_the_acl:  # let through: the number decides now
            await SipPeer(edge.server.address, called="+19995550000").connect()
        assert past_the_acl.value.status == 404
    finally:
        await edge.stop()


def test_allowed_networks_must_be_addresses() -> None:
    assert [str(n) for n in parse_networks(["10.1.2.3/8", "203.0.113.7", "2001:db8::/32"])] == [
        "10.0.0.0/8", "203.0.113.7/32", "2001:db8::/32"]
    with pytest.raises(ValueError, match="'trunk.example' is not an IP address or network"):
        parse_networks(["trunk.example"])


async def test_caller_behind_nat_gets_rtp_where_its_rtp_comes_from(server: SipServer, echo: EchoHandler,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The caller's SDP names a port nothing listens on (a NAT rewrote it): symmetric RTP answers the
    address its packets really come from, so the caller still hears the agent."""
    import spotfunnel.transports.sip.peer as peer_module

    real_offer = peer_module.build_offer
    monkeypatch.setattr(peer_module, "build_offer", lambda host, port, *a, **kw: real_offer(host, port + 7, *a, **kw))
    peer = lockstep_peer(server, called="+14155550100", lockstep_timeout_s=3.0)
    await peer.connect()
    assert await talk(peer, 20) >= 19  # every agent packet came back to the real socket
    await peer.hangup()
    await asyncio.wait_for(echo.release.wait(), 5)


async def test_a_call_winding_down_after_bye_keeps_its_seat() -> None:
    """A caller who hangs up at once frees the dialog at BYE, but the call still runs (its report,
    its last writes): until the handler has finished, the seat is taken and a new INVITE gets 486."""
    wind_down = asyncio.Event()

    async def slow_to_finish(transport: SipCallTransport) -> None:
        while not isinstance(await transport.receive(), Hangup):
            pass
        await wind_down.wait()  # the call's own clean-up after the caller left

    srv = SipServer(slow_to_finish, port=0, max_calls=1)
    await srv.start()
    try:
        first = SipPeer(srv.address, called="+14155550100")
        await first.connect()
        await first.hangup()
        assert await wait_until(lambda: not srv._dialogs)  # the dialog is gone with the BYE...
        assert srv.active_calls == 1  # ...but the call still holds its seat
        with pytest.raises(SipCallFailed) as refused:
            await SipPeer(srv.address, called="+14155550100").connect()
        assert refused.value.status == 486
        wind_down.set()
        assert await wait_until(lambda: srv.active_calls == 0)
        second = SipPeer(srv.address, called="+14155550100")
        await second.connect()  # the seat is free again
        await second.hangup()
    finally:
        wind_down.set()
        await srv.stop()
