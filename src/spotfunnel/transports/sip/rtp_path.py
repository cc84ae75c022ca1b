"""One call's RTP socket and where its audio goes: the SDP address, symmetric latching, trusted hosts only."""
from __future__ import annotations

import logging
from typing import Callable

from spotfunnel.transports.sip.udp import UdpSocket

__all__ = ["RtpPath"]

log = logging.getLogger(__name__)

Address = tuple[str, int]


class RtpPath:
    """Where one call's RTP comes from and goes to.

    Symmetric RTP (RFC 4961): a caller behind NAT sends from another address than its SDP says, so
    we send where its RTP comes from; but only a host of its SDP or of its signalling is trusted.
    RTP from any other host is dropped and counted (`stats["rtp_untrusted"]`): a stranger who finds
    the port can neither inject audio into the call nor redirect the agent's audio to itself.
    Nothing is delivered until `receiver` is set (the call is answered).
    """

    def __init__(self, call_id: str, remote: Address, signalling_host: str, stats: dict[str, int]) -> None:
        self.call_id = call_id
        self.remote = remote
        self.trusted = {remote[0], signalling_host}
        self.sending = True  # False while our side of the SDP says recvonly/inactive (the caller holds)
        self.socket: UdpSocket | None = None
        self.receiver: Callable[[bytes], None] | None = None
        self.stats = stats

    @property
    def port(self) -> int:
        return self.socket.address[1] if self.socket is not None else 0

    def on_datagram(self, data: bytes, source: Address) -> None:
        if source[0] not in self.trusted:
            self.stats["rtp_untrusted"] = self.stats.get("rtp_untrusted", 0) + 1
            if self.stats["rtp_untrusted"] % 100 == 1:  # the first of a flood is enough for the log
                log.info("SIP: call %s: RTP from untrusted %s:%d dropped", self.call_id, *source)
            return
        if source != self.remote and data[:1] and data[0] >> 6 == 2:
            log.info("SIP: call %s: RTP comes from %s:%d, not %s:%d; sending there", self.call_id,
                     *source, *self.remote)
            self.remote = source
        if self.receiver is not None:
            self.receiver(data)

    def send(self, packet: bytes) -> None:
        if self.socket is not None and self.sending:
            self.socket.send(packet, self.remote)

    def retarget(self, remote: Address, our_direction: str) -> None:
        """A new offer in the dialog (re-INVITE): its address is trusted and used; hold stops our sending."""
        self.sending = our_direction in ("sendrecv", "sendonly")
        if remote[0] in ("0.0.0.0", "::"):
            return  # RFC 2543 hold: no address to send to; keep the old one for when the call resumes
        self.trusted.add(remote[0])
        if remote != self.remote:
            log.info("SIP: call %s: re-INVITE moves RTP to %s:%d", self.call_id, *remote)
            self.remote = remote

    def close(self) -> None:
        if self.socket is not None:
            self.socket.close()
            self.socket = None
