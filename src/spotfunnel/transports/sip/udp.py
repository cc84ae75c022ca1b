"""A UDP socket on the event loop that hands every datagram to a callback (SIP signalling and RTP media)."""
from __future__ import annotations

import asyncio
import logging
import socket
from collections import Counter
from typing import Callable

from spotfunnel.transports.sip.netaddr import unsendable

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
        self.lost: Exception | None = None
        self.handler_errors = 0

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:  # type: ignore[override]
        try:
            self.on_datagram(data, (addr[0], addr[1]))
        except Exception:  # one bad datagram must never take the socket down
            self.handler_errors += 1
            if self.handler_errors <= 3 or self.handler_errors % 1000 == 0:  # a flood must not flood the log
                log.exception("%s: error handling a datagram from %s:%s (%d so far)", self.label, addr[0], addr[1],
                              self.handler_errors)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = exc

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable after sending to a peer that is gone: nothing to do but note it
        log.debug("%s: %r", self.label, exc)


class UdpSocket:
    """A bound UDP socket: `send(data, addr)`, `address`, `close()`."""

    def __init__(self, transport: asyncio.DatagramTransport, protocol: _Protocol, label: str) -> None:
        self._transport = transport
        self._protocol = protocol
        self.label = label
        #: datagrams not sent: `refused` (an address no socket can take), `failed` (the send raised)
        self.stats: Counter[str] = Counter()

    @property
    def address(self) -> Address:
        host, port = self._transport.get_extra_info("sockname")[:2]
        return str(host), int(port)

    @property
    def closed(self) -> bool:
        return self._transport.is_closing()

    @property
    def lost(self) -> Exception | None:
        """Why asyncio closed the socket under us, if it did (None while open or after our own close)."""
        return self._protocol.lost

    @property
    def handler_errors(self) -> int:
        return self._protocol.handler_errors

    def send(self, data: bytes, addr: Address) -> bool:
        """Send one datagram; False (logged, counted) when the address is unusable or the send fails.

        The address is checked first because asyncio closes the whole transport when `sendto` raises
        anything but OSError (a port over 65535 raises OverflowError): one call's bad address must
        never take down the socket every other call shares.
        """
        if self._transport.is_closing():
            return False
        problem = unsendable(addr)
        if problem is not None:
            self.stats["refused"] += 1
            if self.stats["refused"] <= 3 or self.stats["refused"] % 1000 == 0:
                log.warning("%s: datagram not sent to %r: %s (%d so far)", self.label, addr, problem,
                            self.stats["refused"])
            return False
        try:
            self._transport.sendto(data, addr)
        except Exception as exc:  # noqa: BLE001 - whatever it is, it is this datagram's alone
            self.stats["failed"] += 1
            log.warning("%s: sending to %s:%d failed: %r", self.label, addr[0], addr[1], exc)
            return False
        return True

    def close(self) -> None:
        self._transport.close()


async def open_udp(host: str, port: int, on_datagram: Callable[[bytes, Address], None], label: str) -> UdpSocket:
    """Bind host:port (0 for any free port) and deliver datagrams to `on_datagram`."""
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(lambda: _Protocol(on_datagram, label),
                                                              local_addr=(host, port))
    return UdpSocket(transport, protocol, label)


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
