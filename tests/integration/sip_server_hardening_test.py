"""The SIP server under bad luck and bad actors: failing setup, retransmissions, CANCEL mid-setup, stray RTP, re-INVITEs."""
from __future__ import annotations

import asyncio
import re
from typing import Any, AsyncIterator

import pytest

import spotfunnel.transports.sip.server as server_module
from spotfunnel.transports.base import AudioIn
from spotfunnel.transports.sip.message import header_param
from spotfunnel.transports.sip.peer import SipPeer
from spotfunnel.transports.sip.rtp import RtpPacket
from spotfunnel.transports.sip.server import IncomingCall, SipServer
from spotfunnel.transports.sip.udp import UdpSocket, open_udp

from sip_support import EchoHandler, RawSip, request, sdp_offer, tone16k, wait_until


@pytest.fixture
async def raw() -> AsyncIterator[RawSip]:
    client = await RawSip().open()
    yield client
    client.close()


async def started(srv: SipServer) -> SipServer:
    await srv.start()
    return srv


async def test_admission_that_raises_gets_500_and_forgets_the_call(raw: RawSip) -> None:
    def admit(_call: IncomingCall) -> None:
        raise RuntimeError("directory down")

    srv = await started(SipServer(EchoHandler(), port=0, admit=admit))
    try:
        raw.send(request("INVITE", raw.port, call_id="boom", body=sdp_offer(4000)), srv.address)
        final = await raw.final()
        assert final is not None and final.status == 500
        assert srv._dialogs == {} and srv.active_calls == 0 and srv.stats["setup_failed"] == 1
    finally:
        await srv.stop()


async def test_call_setup_that_raises_gets_500_and_closes_the_rtp_port(raw: RawSip,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[UdpSocket] = []

    async def recording_open_udp(*args: Any) -> UdpSocket:
        sock = await open_udp(*args)
        opened.append(sock)
        return sock

    def broken_transport(*_a: Any, **_k: Any) -> None:
        raise RuntimeError("no transport today")

    monkeypatch.setattr(server_module, "open_udp", recording_open_udp)
    monkeypatch.setattr(server_module, "SipCallTransport", broken_transport)
    srv = await started(SipServer(EchoHandler(), port=0))
    try:
        raw.send(request("INVITE", raw.port, body=sdp_offer(4000)), srv.address)
        final = await raw.final()
        assert final is not None and final.status == 500
        assert [s.closed for s in opened[1:]] == [True] and srv._dialogs == {}
    finally:
        await srv.stop()


async def test_invite_retransmitted_during_setup_is_no_second_call(raw: RawSip) -> None:
    echo = EchoHandler()
    srv = await started(SipServer(echo, port=0, answer_delay_s=3.0))  # ample for a busy machine to resend first
    try:
        invite = request("INVITE", raw.port, call_id="once", body=sdp_offer(4000))
        raw.send(invite, srv.address)
        assert [(await raw.reply()), (await raw.reply())][1].status == 180  # type: ignore[union-attr]
        srv._responses.clear()  # the cached answer is gone (evicted under load): the dialog still knows it
        raw.send(invite, srv.address)
        again = await raw.reply(0.3)
        assert again is not None and again.status == 180 and srv.stats["retransmissions"] == 1
        final = await raw.final(6.0)
        assert final is not None and final.status == 200
        assert await wait_until(lambda: len(echo.calls) == 1)
        assert len(echo.calls) == 1 and srv.active_calls == 1
    finally:
        await srv.stop()


async def test_cancel_while_the_rtp_port_opens_leaks_no_socket(raw: RawSip, monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[UdpSocket] = []
    cancel_handled = asyncio.Event()

    async def slow_open_udp(host: str, port: int, on_datagram: Any, label: str) -> UdpSocket:
        if label.startswith("rtp"):
            await cancel_handled.wait()  # the port opens only once the CANCEL is through
        sock = await open_udp(host, port, on_datagram, label)
        opened.append(sock)
        return sock

    monkeypatch.setattr(server_module, "open_udp", slow_open_udp)
    srv = await started(SipServer(EchoHandler(), port=0))
    try:
        raw.send(request("INVITE", raw.port, call_id="c2", branch="z9hG4bKslow", body=sdp_offer(4000)), srv.address)
        assert (await raw.reply()).status == 100  # type: ignore[union-attr]
        raw.send(request("CANCEL", raw.port, call_id="c2", branch="z9hG4bKslow"), srv.address)
        answers = [await raw.reply(), await raw.reply()]
        assert sorted(m.status or 0 for m in answers if m) == [200, 487]
        cancel_handled.set()
        assert await wait_until(lambda: len(opened) == 2 and opened[1].closed)
        assert await wait_until(lambda: not srv._tasks)  # `_answer` ran to its end
        assert await raw.reply(0.2) is None  # and no 180 after the 487
        rtp_sockets = opened[1:]
        assert len(rtp_sockets) == 1 and rtp_sockets[0].closed
    finally:
        await srv.stop()


async def test_wildcard_bind_advertises_the_outbound_address(raw: RawSip, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server_module, "outbound_host", lambda _bound: "192.0.2.77", raising=False)
    srv = await started(SipServer(EchoHandler(), host="0.0.0.0", port=0))
    try:
        assert srv.advertise_host == "192.0.2.77"
        raw.send(request("INVITE", raw.port, body=sdp_offer(4000)), ("127.0.0.1", srv.port))
        ok = await raw.final()
        assert ok is not None and ok.status == 200
        assert b"c=IN IP4 192.0.2.77" in ok.body and "@192.0.2.77:" in (ok.get("Contact") or "")
    finally:
        await srv.stop()
    explicit = SipServer(EchoHandler(), host="0.0.0.0", port=0, advertise_host="203.0.113.5")
    assert explicit.advertise_host == "203.0.113.5"


async def test_responses_are_cached_per_call_id_not_per_branch_alone(raw: RawSip) -> None:
    srv = await started(SipServer(EchoHandler(), port=0))
    try:
        for call_id in ("first", "second"):  # a caller that reuses its branch across transactions
            raw.send(request("OPTIONS", raw.port, call_id=call_id, branch="z9hG4bKsame"), srv.address)
            answer = await raw.final()
            assert answer is not None and answer.call_id == call_id
        assert srv.stats["retransmissions"] == 0
    finally:
        await srv.stop()


async def test_rtp_from_an_untrusted_host_is_dropped_and_counted() -> None:
    echo = EchoHandler()
    srv = await started(SipServer(echo, port=0))
    stranger = await open_udp("127.0.0.2", 0, lambda _d, _a: None, "stranger")
    try:
        peer = SipPeer(srv.address, called="+14155550100")
        await peer.connect()
        media = peer._remote_media
        assert media is not None
        for seq in range(20):
            stranger.send(RtpPacket(0, seq, seq * 160, 99, bytes(160)).to_bytes(), media)
        assert await wait_until(lambda: srv.stats["rtp_untrusted"] >= 20), srv.stats
        assert srv.stats["rtp_untrusted"] == 20
        transport = echo.calls[0]
        assert transport.stats.get("packets_in", 0) == 0  # none of it reached the call
        dialog = srv._dialogs[peer.call_id]
        assert dialog.rtp is not None and dialog.rtp.remote[0] == "127.0.0.1"  # never latched to the stranger
        await peer.hangup()
    finally:
        stranger.close()
        await srv.stop()


async def test_reinvite_applies_hold_and_a_new_rtp_address(raw: RawSip) -> None:
    echo = EchoHandler()
    srv = await started(SipServer(echo, port=0))
    heard: list[bytes] = []
    moved = await open_udp("127.0.0.1", 0, lambda data, _a: heard.append(data), "moved")
    try:
        peer = SipPeer(srv.address, called="+14155550100")
        await peer.connect()

        async def reinvite(cseq: int, port: int, direction: str) -> Any:
            msg = request("INVITE", raw.port, call_id=peer.call_id, to_tag=peer.remote_tag, cseq=cseq,
                          body=sdp_offer(port, extra=f"a={direction}\r\n"))
            raw.send(msg.replace(b"tag=t1", f"tag={peer.local_tag}".encode()), srv.address)
            return await raw.final()

        hold = await reinvite(5, 4000, "sendonly")
        assert hold is not None and hold.status == 200 and b"a=recvonly" in hold.body
        rtp = srv._dialogs[peer.call_id].rtp
        assert rtp is not None and peer.codec is not None and peer._remote_media is not None
        for i in range(5):  # on hold the caller's RTP comes from the new address: the path latches to it
            for packet in peer.codec.encode_frame(tone16k(frame=i), slot=i):
                moved.send(packet, peer._remote_media)
        assert await wait_until(lambda: rtp.remote == ("127.0.0.1", moved.address[1]))
        frames = len(echo.of(AudioIn))
        assert await wait_until(lambda: len(echo.of(AudioIn)) >= frames + 10)  # the agent answers each frame...
        assert heard == [] and not rtp.sending  # ...and none of it goes out while the caller holds
        resume = await reinvite(6, moved.address[1], "sendrecv")
        assert resume is not None and resume.status == 200 and b"a=sendrecv" in resume.body
        # RFC 3264 8: the same session, its version one higher with each new answer
        [(hold_id, hold_version)] = re.findall(rb"o=\S+ (\d+) (\d+) ", hold.body)
        [(resume_id, resume_version)] = re.findall(rb"o=\S+ (\d+) (\d+) ", resume.body)
        assert hold_id == resume_id and int(resume_version) == int(hold_version) + 1 and int(hold_version) >= 2
        assert srv._dialogs[peer.call_id].rtp.remote == ("127.0.0.1", moved.address[1])  # type: ignore[union-attr]
        assert peer.codec is not None and peer._remote_media is not None
        for i in range(10):  # the caller's RTP now comes from the new address too
            for packet in peer.codec.encode_frame(tone16k(frame=i), slot=i):
                moved.send(packet, peer._remote_media)
            await asyncio.sleep(0.02)
        assert await wait_until(lambda: len(heard) >= 5)  # resumed: the agent's audio goes to the new address
        assert rtp.sending and echo.of(AudioIn)
        await peer.hangup()
    finally:
        moved.close()
        await srv.stop()


async def test_reinvite_while_ringing_is_refused_with_retry_after(raw: RawSip) -> None:
    srv = await started(SipServer(EchoHandler(), port=0, answer_delay_s=2.0))
    try:
        raw.send(request("INVITE", raw.port, call_id="r1", branch="z9hG4bKring", body=sdp_offer(4000)), srv.address)
        ringing = [await raw.reply(), await raw.reply()]
        assert ringing[1] is not None and ringing[1].status == 180
        tag = header_param(ringing[1].get("To") or "", "tag") or ""
        raw.send(request("INVITE", raw.port, call_id="r1", to_tag=tag, cseq=2, body=sdp_offer(4002)), srv.address)
        refused = await raw.final()
        assert refused is not None and refused.status == 500 and refused.get("Retry-After") is not None
        raw.send(request("CANCEL", raw.port, call_id="r1", branch="z9hG4bKring"), srv.address)
        assert {m.status for m in [await raw.reply(), await raw.reply()] if m} == {200, 487}
    finally:
        await srv.stop()


async def test_initial_offer_on_hold_is_answered_recvonly_and_gets_no_rtp(raw: RawSip) -> None:
    srv = await started(SipServer(EchoHandler(), port=0))
    try:
        raw.send(request("INVITE", raw.port, call_id="held", body=sdp_offer(4000, extra="a=sendonly\r\n")),
                 srv.address)
        ok = await raw.final()
        assert ok is not None and ok.status == 200 and b"a=recvonly" in ok.body
        rtp = srv._dialogs["held"].rtp
        assert rtp is not None and not rtp.sending
    finally:
        await srv.stop()


async def test_offerless_reinvite_after_hold_offers_sendrecv_and_the_ack_resumes_rtp(raw: RawSip) -> None:
    srv = await started(SipServer(EchoHandler(), port=0))
    heard: list[bytes] = []
    moved = await open_udp("127.0.0.1", 0, lambda data, _a: heard.append(data), "moved")
    try:
        peer = SipPeer(srv.address, called="+14155550100")
        await peer.connect()

        def in_dialog(method: str, cseq: int, body: str = "") -> None:
            msg = request(method, raw.port, call_id=peer.call_id, to_tag=peer.remote_tag, cseq=cseq, body=body)
            raw.send(msg.replace(b"tag=t1", f"tag={peer.local_tag}".encode()), srv.address)

        rtp = srv._dialogs[peer.call_id].rtp
        assert rtp is not None
        for cseq, hold_port, ack_body in ((5, 4000, sdp_offer(moved.address[1])), (8, moved.address[1], "")):
            in_dialog("INVITE", cseq, sdp_offer(hold_port, extra="a=sendonly\r\n"))  # hold
            hold = await raw.final()
            assert hold is not None and b"a=recvonly" in hold.body and not rtp.sending
            in_dialog("INVITE", cseq + 1)  # no offer: ours must let the call resume, not mirror the hold
            offer = await raw.final()
            assert offer is not None and offer.status == 200 and b"a=sendrecv" in offer.body
            assert not rtp.sending  # until the ACK answers
            in_dialog("ACK", cseq + 1, ack_body)
            assert await wait_until(lambda: rtp.sending), f"ACK {ack_body!r} did not resume"
            assert rtp.remote == ("127.0.0.1", moved.address[1])  # the first ACK's answer moved the RTP
        assert await wait_until(lambda: len(heard) >= 5)
        await peer.hangup()
    finally:
        moved.close()
        await srv.stop()


async def test_in_dialog_requests_need_our_to_tag(raw: RawSip) -> None:
    echo = EchoHandler()
    srv = await started(SipServer(echo, port=0))
    try:
        raw.send(request("INVITE", raw.port, call_id="d1", body=sdp_offer(4000)), srv.address)
        ok = await raw.final()
        assert ok is not None and ok.status == 200
        tag = header_param(ok.get("To") or "", "tag") or ""
        dialog = srv._dialogs["d1"]
        raw.send(request("ACK", raw.port, call_id="d1", to_tag="forged"), srv.address)
        raw.send(request("OPTIONS", raw.port), srv.address)  # a marker: the ACK before it was handled
        assert (await raw.final()).cseq[1] == "OPTIONS"  # type: ignore[union-attr]
        assert not dialog.acked.is_set()  # a wrong-tag ACK is ignored
        for method in ("BYE", "INFO"):
            raw.send(request(method, raw.port, call_id="d1", to_tag="forged", cseq=2), srv.address)
            refused = await raw.final()
            assert refused is not None and refused.status == 481 and refused.cseq[1] == method
        assert srv.active_calls == 1 and not dialog.ended
        raw.send(request("ACK", raw.port, call_id="d1", to_tag=tag), srv.address)
        assert await wait_until(dialog.acked.is_set)
        raw.send(request("BYE", raw.port, call_id="d1", to_tag=tag, cseq=3), srv.address)
        bye = await raw.final()
        assert bye is not None and bye.status == 200 and srv.active_calls == 0
    finally:
        await srv.stop()


async def test_a_source_admission_refuses_gets_403_even_when_busy(raw: RawSip) -> None:
    srv = await started(SipServer(EchoHandler(), port=0, max_calls=0, admit=lambda _call: (403, "Forbidden")))
    try:
        raw.send(request("INVITE", raw.port, body=sdp_offer(4000)), srv.address)
        refused = await raw.final()
        assert refused is not None and refused.status == 403 and refused.get("Warning") is None  # no load info
        srv.admit = None
        raw.send(request("INVITE", raw.port, body=sdp_offer(4000)), srv.address)
        busy = await raw.final()
        assert busy is not None and busy.status == 486 and srv.stats["busy"] == 1
    finally:
        await srv.stop()
