"""A UDP socket on the event loop that hands every datagram to a callback (SIP signalling and RTP media)."""
from __future__ import annotations

import asyncio
import logging
from typing import Callable

__all__ = ["UdpSocket", "open_udp"]

log = logging.getLogger(__name__)

Address = tuple[str, int]


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
