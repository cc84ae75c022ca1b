"""A SIP user agent client that plays the caller's phone against a SIP server (tests, eval, benchmarks)."""
from __future__ import annotations

import asyncio
import logging
import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType

from spotfunnel.transports.base import AudioIn, ProtocolIssue
from spotfunnel.transports.sip.dialog import new_branch, new_tag
from spotfunnel.transports.sip.dtmf import event_payloads
from spotfunnel.transports.sip.media import SipMediaCodec
from spotfunnel.transports.sip.message import (
    SipMessage, SipParseError, header_param, parse_message, response_to, uri_host_port,
)
from spotfunnel.transports.sip.retransmit import retransmit
from spotfunnel.transports.sip.rtp import RtpError, parse_rtp
from spotfunnel.transports.sip.sdp import build_offer, negotiate, parse_sdp
from spotfunnel.transports.sip.udp import UdpSocket, open_udp

__all__ = ["ReceivedRtp", "SipCallFailed", "SipPeer"]

log = logging.getLogger(__name__)

Address = tuple[str, int]


class SipCallFailed(Exception):
    """The server refused the call (or never answered); `status` is its final response code (0: none)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"SIP call refused: {status} {reason}" if status else f"SIP call failed: {reason}")
        self.status, self.reason = status, reason


@dataclass(frozen=True)
class ReceivedRtp:
    """One RTP packet from the agent, as it arrived."""

    sequence: int
    timestamp: int
    ssrc: int
    payload_type: int
    marker: bool
    payload_bytes: int
    arrived: float


class SipPeer:
    """The caller's phone: INVITE with an SDP offer, RTP both ways, RFC 4733 DTMF, BYE.

    `exchange(frame)` sends one 20 ms caller frame as RTP and returns the 20 ms of agent audio the
    caller hears meanwhile (PCM16 16 kHz, 640 bytes) or None; with `lockstep` it first waits for
    one agent RTP packet (the server must be told in process, `SipServer.expect_call(peer.call_id, ...)`). Every agent packet is kept in `received` for checks. A BYE or REFER from
    the server closes the line (`ended_reason`, `transferred_to`).
    """

    def __init__(self, server: str | Address, *, called: str, caller: str = "+15550100001",
                 headers: Mapping[str, str] | None = None, lockstep: bool = False,
                 codecs: tuple[str, ...] = ("PCMU", "PCMA"), ptime: int = 20, host: str = "127.0.0.1",
                 lockstep_timeout_s: float = 30.0) -> None:
        self.server: Address = uri_host_port(server) if isinstance(server, str) else server
        self.called, self.caller, self.host = called, caller, host
        self.extra_headers = dict(headers or {})
        self.lockstep = lockstep  # our side only: the server runs a call in lockstep when its own process says so
        self.codecs, self.ptime, self.lockstep_timeout_s = codecs, ptime, lockstep_timeout_s
        self.call_id = f"{uuid.uuid4().hex}@{host}"
        self.local_tag = new_tag()
        self.remote_tag = ""
        self.closed = False
        self.ended_reason: str | None = None
        self.transferred_to: str | None = None
        self.codec: SipMediaCodec | None = None
        self.received: list[ReceivedRtp] = []
        self.issues: list[str] = []
        self._sip: UdpSocket | None = None
        self._rtp: UdpSocket | None = None
        self._remote_media: Address | None = None
        self._cseq = 1
        self._pending: dict[str, asyncio.Future[SipMessage]] = {}
        self._provisional: set[str] = set()
        self._playback: deque[bytes] = deque()
        self._arrived = asyncio.Condition()
        self._credits = 0
        self._slot = 0

    # ---- call setup ------------------------------------------------------------------------

    async def connect(self, timeout_s: float = 10.0) -> None:
        """Place the call: INVITE, wait for the answer, ACK. Raises SipCallFailed when refused."""
        self._sip = await open_udp(self.host, 0, self._on_sip, "sip-peer")
        self._rtp = await open_udp(self.host, 0, self._on_rtp, "rtp-peer")
        offer = build_offer(self.host, self._rtp.address[1], self.codecs, self.ptime)
        invite = self._request("INVITE", new_branch(), body=offer.encode(), content_type="application/sdp")
        try:
            final = await self._transact(invite, timeout_s)
        except BaseException:
            self._close_sockets()
            raise
        status = final.status or 0
        if status >= 300 or status < 200:
            self._send(self._ack(invite, final).serialise())
            self._close_sockets()
            raise SipCallFailed(status, final.reason)
        self._answered(invite, final)

    def _answered(self, invite: SipMessage, ok: SipMessage) -> None:
        self.remote_tag = header_param(ok.get("To") or "", "tag") or ""
        agreed = negotiate(parse_sdp(ok.body.decode("utf-8")), self.codecs)
        self._remote_media = (agreed.remote_host, agreed.remote_port)
        self.codec = SipMediaCodec(agreed, realtime=False, label=f"peer {self.call_id}")
        self._send(self._ack(invite, ok).serialise())

    def _request(self, method: str, branch: str, *, body: bytes = b"", content_type: str | None = None,
                 cseq: int | None = None) -> SipMessage:
        host, port = self.server
        msg = SipMessage(method=method, uri=f"sip:{self.called}@{host}:{port}")
        assert self._sip is not None
        local = self._sip.address
        msg.add("Via", f"SIP/2.0/UDP {local[0]}:{local[1]};branch={branch};rport")
        msg.add("Max-Forwards", "70")
        msg.add("From", f"<sip:{self.caller}@{local[0]}:{local[1]}>;tag={self.local_tag}")
        to = f"<sip:{self.called}@{host}:{port}>" + (f";tag={self.remote_tag}" if self.remote_tag else "")
        msg.add("To", to)
        msg.add("Call-ID", self.call_id)
        if cseq is None:
            self._cseq += 1 if method not in ("INVITE", "ACK") else 0
            cseq = self._cseq
        msg.add("CSeq", f"{cseq} {method}")
        msg.add("Contact", f"<sip:{self.caller}@{local[0]}:{local[1]}>")
        if method == "INVITE":
            for name, value in self.extra_headers.items():
                msg.add(name, value)
        if content_type:
            msg.add("Content-Type", content_type)
        msg.body = body
        return msg

    def _ack(self, invite: SipMessage, final: SipMessage) -> SipMessage:
        """ACK: same branch for a refusal (RFC 3261 17.1.1.3), a new one for a 2xx (13.2.2.4)."""
        ok = 200 <= (final.status or 0) < 300
        self.remote_tag = self.remote_tag or header_param(final.get("To") or "", "tag") or ""
        ack = self._request("ACK", new_branch() if ok else invite.branch, cseq=invite.cseq[0])
        return ack

    async def _transact(self, request: SipMessage, timeout_s: float) -> SipMessage:
        """Send with retransmission (T1 doubling) until a final response; provisional ones stop resending."""
        future: asyncio.Future[SipMessage] = asyncio.get_running_loop().create_future()
        self._pending[request.branch] = future
        data = request.serialise()
        try:
            final = await retransmit(lambda: self._send(data), future, timeout_s,
                                     pause=lambda: request.branch in self._provisional)
        finally:
            self._pending.pop(request.branch, None)
            self._provisional.discard(request.branch)
        if final is None:
            raise SipCallFailed(0, f"no final response to {request.method} within {timeout_s:g} s")
        return final

    # ---- signalling in ---------------------------------------------------------------------

    def _on_sip(self, data: bytes, addr: Address) -> None:
        try:
            msg = parse_message(data)
        except SipParseError as exc:
            log.warning("sip peer: unreadable message from the server: %s", exc)
            return
        if not msg.is_request:
            future = self._pending.get(msg.branch)
            if future is None or future.done():
                return
            if (msg.status or 0) >= 200:
                future.set_result(msg)
            else:
                self._provisional.add(msg.branch)
            return
        if msg.method == "ACK":
            return
        if msg.method == "BYE":
            self._reply(msg, addr, 200, "OK")
            self._mark_closed("agent hung up")
            asyncio.get_running_loop().call_later(1.0, self._close_sockets)  # after a retransmitted BYE
        elif msg.method == "REFER":
            self.transferred_to = msg.get("Refer-To")
            self._reply(msg, addr, 202, "Accepted")
        else:
            self._reply(msg, addr, 200, "OK")

    def _reply(self, request: SipMessage, addr: Address, status: int, reason: str) -> None:
        if self._sip is not None:
            self._sip.send(response_to(request, status, reason).serialise(), addr)

    def _send(self, data: bytes) -> None:
        if self._sip is not None:
            self._sip.send(data, self.server)

    # ---- media -----------------------------------------------------------------------------

    def _on_rtp(self, data: bytes, addr: Address) -> None:
        loop = asyncio.get_running_loop()
        try:
            packet = parse_rtp(data)
        except RtpError as exc:
            self.issues.append(f"unreadable RTP from the server: {exc}")
            return
        self.received.append(ReceivedRtp(packet.sequence, packet.timestamp, packet.ssrc, packet.payload_type,
                                         packet.marker, len(packet.payload), loop.time()))
        if self.codec is None:
            return
        for event in self.codec.decode_packet(data):
            if isinstance(event, AudioIn):
                self._playback.append(event.pcm)
            elif isinstance(event, ProtocolIssue):
                self.issues.append(event.message)
        self._credits += 1
        loop.create_task(self._notify())

    async def _notify(self) -> None:
        async with self._arrived:
            self._arrived.notify_all()

    async def exchange(self, frame16k: bytes) -> bytes | None:
        """Send one caller frame; return the agent audio heard during it (None when there is none)."""
        if self.codec is None:
            raise RuntimeError("SipPeer.exchange called before connect()")
        if not self.closed:
            for packet in self.codec.encode_frame(frame16k, slot=self._slot):
                self._send_media(packet)
            self._slot += 1
            if self.lockstep:
                await self._await_agent_packet()
        return self._playback.popleft() if self._playback else None

    async def _await_agent_packet(self) -> None:
        async with self._arrived:
            try:
                await asyncio.wait_for(self._arrived.wait_for(lambda: self._credits > 0 or self.closed),
                                       self.lockstep_timeout_s)
            except asyncio.TimeoutError:
                raise TimeoutError(f"lockstep: the server sent no RTP within {self.lockstep_timeout_s:g} s of "
                                   f"caller frame {self._slot} (call {self.call_id})") from None
            if self._credits > 0:
                self._credits -= 1

    def _send_media(self, packet: bytes) -> None:
        if self._rtp is not None and self._remote_media is not None:
            self._rtp.send(packet, self._remote_media)

    def send_raw_rtp(self, data: bytes) -> None:
        """Put any bytes on the call's media path (tests of malformed or reordered RTP)."""
        self._send_media(data)

    async def send_dtmf(self, digit: str) -> None:
        """Press a key: RFC 4733 telephone-event packets in the call's RTP stream."""
        codec = self.codec
        if codec is None or self.closed or codec.agreed.dtmf_payload_type is None:
            raise RuntimeError("no telephone-event agreed for this call (or the call is not up)")
        position = codec.sender.next_position
        for i, payload in enumerate(event_payloads(digit)):
            self._send_media(codec.sender.event_packet(payload, codec.agreed.dtmf_payload_type, position,
                                                       marker=i == 0).to_bytes())

    # ---- the end ---------------------------------------------------------------------------

    async def hangup(self) -> None:
        """The caller hangs up: BYE (no-op when the line is already closed)."""
        if not self.closed and self._sip is not None and self.codec is not None:
            self._mark_closed("caller hung up")
            try:
                await self._transact(self._request("BYE", new_branch()), 4.0)
            except SipCallFailed as exc:
                log.info("sip peer: BYE not answered: %s", exc)
        self._mark_closed("caller hung up")
        self._close_sockets()

    async def wait_closed(self, timeout_s: float) -> bool:
        """Wait until the server ends the call; False on timeout."""
        async with self._arrived:
            try:
                await asyncio.wait_for(self._arrived.wait_for(lambda: self.closed), timeout_s)
            except asyncio.TimeoutError:
                return False
        return True

    def _mark_closed(self, reason: str) -> None:
        if not self.closed:
            self.closed = True
            self.ended_reason = reason
            asyncio.get_running_loop().create_task(self._notify())

    def _close_sockets(self) -> None:
        for sock in (self._rtp, self._sip):
            if sock is not None:
                sock.close()

    async def __aenter__(self) -> SipPeer:
        await self.connect()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.hangup()

