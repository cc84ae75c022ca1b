"""Test helpers for the SIP edge: a raw UDP SIP client, an echoing call handler, tone frames, pcap writing."""
from __future__ import annotations

import asyncio
import struct
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from spotfunnel.transports.base import AudioIn, Dtmf, Hangup, InboundEvent
from spotfunnel.transports.sip.call import SipCallTransport
from spotfunnel.transports.sip.message import SipMessage, parse_message
from spotfunnel.transports.sip.peer import SipPeer
from spotfunnel.transports.sip.server import SipServer
from spotfunnel.transports.sip.udp import UdpSocket, open_udp


async def wait_until(condition: Callable[[], bool], timeout_s: float = 5.0) -> bool:
    """Poll `condition` until it holds or `timeout_s` passes (a busy CI machine is slow, never a fixed sleep)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not condition():
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(0.01)
    return True


def tone16k(freq: float = 440.0, amplitude: int = 8000, frame: int = 0) -> bytes:
    t = np.arange(frame * 320, frame * 320 + 320)
    return (np.sin(2 * np.pi * freq * t / 16000) * amplitude).astype("<i2").tobytes()


@dataclass
class EchoHandler:
    """A stand-in for the voice session: answers each frame with the same frame; '9' hangs up, '0' transfers."""

    calls: list[SipCallTransport] = field(default_factory=list)
    events: list[InboundEvent] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def __call__(self, transport: SipCallTransport) -> None:
        self.calls.append(transport)
        while True:
            event = await transport.receive()
            self.events.append(event)
            if isinstance(event, AudioIn):
                await transport.send_audio(event.pcm)
            elif isinstance(event, Dtmf) and event.digit == "9":
                await transport.hangup()
            elif isinstance(event, Dtmf) and event.digit == "0":
                await transport.transfer("+14155550199")
            elif isinstance(event, Hangup):
                self.release.set()
                return

    def of(self, kind: type) -> list:
        return [e for e in self.events if isinstance(e, kind)]


class RawSip:
    """Sends hand-written SIP datagrams and collects what comes back."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.sock: UdpSocket | None = None
        self.inbox: asyncio.Queue[bytes] = asyncio.Queue()

    async def open(self) -> RawSip:
        self.sock = await open_udp(self.host, 0, lambda data, _a: self.inbox.put_nowait(data), "raw-sip")
        return self

    @property
    def port(self) -> int:
        assert self.sock is not None
        return self.sock.address[1]

    def send(self, data: bytes, server: tuple[str, int]) -> None:
        assert self.sock is not None
        self.sock.send(data, server)

    async def reply(self, timeout_s: float = 2.0) -> SipMessage | None:
        try:
            return parse_message(await asyncio.wait_for(self.inbox.get(), timeout_s))
        except asyncio.TimeoutError:
            return None

    async def final(self, timeout_s: float = 3.0) -> SipMessage | None:
        """The next response of 200 or more (provisional ones are skipped)."""
        while True:
            msg = await self.reply(timeout_s)
            if msg is None or msg.is_request or (msg.status or 0) >= 200:
                return msg

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()


def request(method: str, port: int, *, call_id: str | None = None, branch: str | None = None, cseq: int = 1,
            body: str = "", extra: str = "", to_tag: str = "") -> bytes:
    call_id = call_id or uuid.uuid4().hex
    branch = branch or "z9hG4bK" + uuid.uuid4().hex[:10]
    ctype = "Content-Type: application/sdp\r\n" if body else ""
    to = f"<sip:+14155550100@127.0.0.1>{';tag=' + to_tag if to_tag else ''}"
    return (f"{method} sip:+14155550100@127.0.0.1 SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch={branch}\r\n"
            f"From: <sip:+14155550111@127.0.0.1:{port}>;tag=t1\r\nTo: {to}\r\nCall-ID: {call_id}\r\n"
            f"CSeq: {cseq} {method}\r\nContact: <sip:caller@127.0.0.1:{port}>\r\nMax-Forwards: 70\r\n{extra}{ctype}"
            f"Content-Length: {len(body.encode())}\r\n\r\n{body}").encode()


def sdp_offer(port: int, formats: str = "0 101", extra: str = "") -> str:
    return (f"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            f"m=audio {port} RTP/AVP {formats}\r\na=rtpmap:101 telephone-event/8000\r\n{extra}")


def write_rtp_pcap(path: Path, packets: list[tuple[float, bytes]], src: tuple[str, int] = ("127.0.0.1", 6000),
                   dst: tuple[str, int] = ("127.0.0.1", 6001)) -> None:
    """A libpcap file (Ethernet/IPv4/UDP) of RTP packets at the given times, as SIPp's play_pcap_audio reads it."""
    out = bytearray(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    src_ip = bytes(int(x) for x in src[0].split("."))
    dst_ip = bytes(int(x) for x in dst[0].split("."))
    for ident, (when, rtp) in enumerate(packets):
        udp = struct.pack("!HHHH", src[1], dst[1], 8 + len(rtp), 0) + rtp
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), ident & 0xFFFF, 0, 64, 17, 0, src_ip, dst_ip)
        ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
        frame = b"\x00" * 12 + b"\x08\x00" + ip + udp
        seconds = int(when)
        out += struct.pack("<IIII", seconds, int(round((when - seconds) * 1e6)), len(frame), len(frame)) + frame
    path.write_bytes(bytes(out))


def _checksum(header: bytes) -> int:
    total = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def lockstep_peer(server: SipServer, **kwargs: Any) -> SipPeer:
    """A SipPeer in lockstep, announced to the server in process (nothing in its INVITE asks for it)."""
    peer = SipPeer(server.address, lockstep=True, **kwargs)
    server.expect_call(peer.call_id, lockstep=True)
    return peer
