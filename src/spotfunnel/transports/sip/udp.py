"""A UDP socket on the event loop that hands every datagram to a callback (SIP signalling and RTP media)."""
from __future__ import annotations

import asyncio
import logging
import socket
from typing import Callable

__all__ = ["UdpSocket", "WILDCARD_HOSTS", "open_udp", "outbound_host"]

log = logging.getLogger(__name__)

Address = tuple[str, int]
WILDCARD_HOSTS = ("0.0.0.0", "::", "")
#: documentation-range addresses (RFC 5737, RFC 3849): only the route to them is looked up, nothing is sent
_PROBES = ((socket.AF_INET, "192.0.2.1"), (socket.AF_INET6, "2001:db8::1"))


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, on_datagram: Callable[[bytes, Address], None], label: str) -> None:
        self.on_datagram = on_datagram
        self.label = label

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:  # type: ignore[override]
        try:
            self.on_datagram(data, (addr[0], addr[1]))
        except Exception:  # one bad datagram must never take the socket down
            log.exception("%s: error handling a datagram from %s:%s", self.label, addr[0], addr[1])

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable after sending to a peer that is gone: nothing to do but note it
        log.debug("%s: %r", self.label, exc)


class UdpSocket:
    """A bound UDP socket: `send(data, addr)`, `address`, `close()`."""

    def __init__(self, transport: asyncio.DatagramTransport, label: str) -> None:
        self._transport = transport
        self.label = label

    @property
    def address(self) -> Address:
        host, port = self._transport.get_extra_info("sockname")[:2]
        return str(host), int(port)

    @property
    def closed(self) -> bool:
        return self._transport.is_closing()

    def send(self, data: bytes, addr: Address) -> None:
        if not self._transport.is_closing():
            self._transport.sendto(data, addr)

    def close(self) -> None:
        self._transport.close()


async def open_udp(host: str, port: int, on_datagram: Callable[[bytes, Address], None], label: str) -> UdpSocket:
    """Bind host:port (0 for any free port) and deliver datagrams to `on_datagram`."""
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(lambda: _Protocol(on_datagram, label), local_addr=(host, port))
    return UdpSocket(transport, label)


def outbound_host(bound: str) -> str:
    """The address this host reaches the outside from, for SDP and Contact when bound to a wildcard.

    Connecting a UDP socket only picks the route and the source address (no packet is sent); when
    no route exists the answer is 127.0.0.1, which only local callers can use, with a warning.
    """
    for family, probe in _PROBES:  # IPv4 first: most SIP trunks and phones are IPv4 only
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as sock:
                sock.connect((probe, 9))
                host = str(sock.getsockname()[0])
        except OSError:
            continue
        if host not in WILDCARD_HOSTS:
            return host
    log.warning("SIP: bound to %r but found no outbound interface address; advertising 127.0.0.1, which "
                "remote callers cannot reach (set --sip-advertise-host)", bound)
    return "127.0.0.1"
