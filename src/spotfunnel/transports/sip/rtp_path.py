"""One call's RTP socket and where its audio goes: latched onto the caller's own RTP, trusted hosts only."""
from __future__ import annotations

import ipaddress
import logging
from typing import Callable

from spotfunnel.transports.sip.udp import UdpSocket

__all__ = ["RtpPath"]

log = logging.getLogger(__name__)

Address = tuple[str, int]
UNSPECIFIED_HOSTS = ("0.0.0.0", "::")


def host_key(host: str) -> str:
    """One spelling per host: a socket bound to `::` sees an IPv4 peer as ::ffff:a.b.c.d, its SDP says a.b.c.d."""
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host.lower()  # a name in the SDP: compared as written
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def _may_send(remote: Address, our_direction: str) -> bool:
    """Our SDP lets us send, and the caller's names an address (c=0.0.0.0 is RFC 2543 hold, whatever a= says)."""
    return our_direction in ("sendrecv", "sendonly") and remote[0] not in UNSPECIFIED_HOSTS


class RtpPath:
    """Where one call's RTP comes from and goes to.

    Symmetric RTP (RFC 4961): a caller behind NAT sends from another address than its SDP says, so
    we send where its RTP comes from; but only a host of its SDP or of its signalling is trusted.
    RTP from any other host is dropped and counted (`stats["rtp_untrusted"]`): a stranger who finds
    the port can neither inject audio into the call nor redirect the agent's audio to itself.
    Nothing is delivered until `receiver` is set (the call is answered).

    Nothing is sent until the path is `latched`: the SDP names the host the signalling came from, or
    RTP arrived from the caller (as SBCs do). An INVITE naming a third party's address therefore
    never makes us stream audio at it; packets held back are counted in `stats["rtp_held"]`.
    """

    def __init__(self, call_id: str, remote: Address, signalling_host: str, stats: dict[str, int],
                 our_direction: str = "sendrecv") -> None:
        self.call_id = call_id
        self.remote = remote
        self.trusted = {host_key(remote[0]), host_key(signalling_host)}
        self.signalling_key = host_key(signalling_host)
        self.latched = host_key(remote[0]) == self.signalling_key
        self.sending = _may_send(remote, our_direction)  # False while the caller holds (recvonly/inactive, c=0.0.0.0)
        self.socket: UdpSocket | None = None
        self.receiver: Callable[[bytes], None] | None = None
        self.stats = stats

    @property
    def port(self) -> int:
        return self.socket.address[1] if self.socket is not None else 0

    def on_datagram(self, data: bytes, source: Address) -> None:
        if host_key(source[0]) not in self.trusted:
            self.stats["rtp_untrusted"] = self.stats.get("rtp_untrusted", 0) + 1
            if self.stats["rtp_untrusted"] % 100 == 1:  # the first of a flood is enough for the log
                log.info("SIP: call %s: RTP from untrusted %s:%d dropped", self.call_id, *source)
            return
        if data[:1] and data[0] >> 6 == 2:  # RTP version 2: the caller's media really comes from here
            if source != self.remote:
                log.info("SIP: call %s: RTP comes from %s:%d, not %s:%d; sending there", self.call_id,
                         *source, *self.remote)
                self.remote = source
            self.latched = True
        if self.receiver is not None:
            self.receiver(data)

    def send(self, packet: bytes) -> None:
        if self.socket is None or not self.sending:
            return
        if not self.latched:
            self.stats["rtp_held"] = self.stats.get("rtp_held", 0) + 1
            return
        self.socket.send(packet, self.remote)

    def retarget(self, remote: Address, our_direction: str) -> None:
        """A new offer in the dialog (re-INVITE): its address is trusted and used; hold stops our sending."""
        self.sending = _may_send(remote, our_direction)
        if remote[0] in UNSPECIFIED_HOSTS:
            return  # RFC 2543 hold: no address to send to; keep the old one for when the call resumes
        self.trusted.add(host_key(remote[0]))
        if remote != self.remote:
            log.info("SIP: call %s: re-INVITE moves RTP to %s:%d", self.call_id, *remote)
            self.remote = remote
            self.latched = host_key(remote[0]) == self.signalling_key  # else: once RTP comes from there

    def close(self) -> None:
        if self.socket is not None:
            self.socket.close()
            self.socket = None
