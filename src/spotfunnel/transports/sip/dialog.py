"""One SIP dialog as the UAS sees it (RFC 3261 12): the caller's identity, tags, route and our requests in it."""
from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from spotfunnel.transports.sip.message import SipMessage, header_param, name_addr_uri, uri_host_port, uri_user
from spotfunnel.transports.sip.sdp import AgreedMedia, negotiate_body

if TYPE_CHECKING:
    from spotfunnel.transports.sip.call import SipCallTransport
    from spotfunnel.transports.sip.rtp_path import RtpPath

__all__ = ["SipDialog", "apply_ack_answer", "call_params", "new_branch", "new_tag"]

Address = tuple[str, int]
#: the one header a trusted network (--sip-allow) may send: a PBX naming the tenant of a shared trunk
TENANT_HEADER = "X-SpotFunnel-Tenant"


def new_branch() -> str:
    return "z9hG4bK" + uuid.uuid4().hex[:20]  # the RFC 3261 magic cookie marks a unique branch


def new_tag() -> str:
    return uuid.uuid4().hex[:12]


def call_params(invite: SipMessage, *, trusted: bool = False) -> dict[str, str]:
    """The call's parameters as the network gives them: `caller` (From), `called` (the Request-URI).

    Nothing else a remote party sends becomes a parameter (no test switch, no caller identity):
    only a `trusted` source (inside --sip-allow) may name the tenant with X-SpotFunnel-Tenant.
    """
    params = {"caller": uri_user(name_addr_uri(invite.get("From") or "")),
              "called": uri_user(invite.uri or "") or uri_user(name_addr_uri(invite.get("To") or ""))}
    tenant = invite.get(TENANT_HEADER)
    if trusted and tenant:
        params["tenant"] = tenant.strip()[:64]
    return params


@dataclass
class SipDialog:
    """State of one call's dialog on the server side."""

    invite: SipMessage
    source: Address
    local_tag: str
    local_contact: str
    via_host: str
    params: dict[str, str] = field(default_factory=dict)  # network parameters + what the harness set in process
    lockstep: bool = False  # only ever set in process (SipServer.expect_call)
    route: Address | None = None  # the first Record-Route hop, resolved to an address before the call is answered
    agreed: AgreedMedia | None = None
    rtp: RtpPath | None = None
    transport: SipCallTransport | None = None
    last_response: bytes = b""  # the latest answer to the INVITE, for its retransmissions
    admitted: bool = False
    answered: bool = False
    cancelled: bool = False
    ended: bool = False
    offered: bool = False  # our last 200 OK carried an offer (offerless re-INVITE): the ACK brings the answer
    acked: asyncio.Event = field(default_factory=asyncio.Event)
    local_cseq: int = field(default_factory=lambda: 1 + int(uuid.uuid4().int % 10_000))
    sdp_session: int = field(default_factory=lambda: 1 + int(uuid.uuid4().int % 2**31))  # o= sess-id
    sdp_version: int = 0  # o= version of our last SDP: one more with each answer (RFC 3264 8)

    def next_sdp_version(self) -> int:
        self.sdp_version += 1
        return self.sdp_version

    @property
    def call_id(self) -> str:
        return self.invite.call_id

    @property
    def branch(self) -> str:
        return self.invite.branch

    @property
    def remote_tag(self) -> str:
        return header_param(self.invite.get("From") or "", "tag") or ""

    @property
    def remote_target(self) -> str:
        """Where in-dialog requests are addressed: the caller's Contact (its From URI when absent)."""
        contact = self.invite.get("Contact")
        return name_addr_uri(contact or self.invite.get("From") or "")

    @property
    def destination(self) -> Address:
        """Where in-dialog requests are sent: the first Record-Route hop, else where the INVITE came from.

        The INVITE's source is used instead of the Contact's host because a caller behind NAT
        advertises a private Contact it cannot be reached at; replies to the source reach it.
        """
        return self.route or self.source

    @property
    def route_hop(self) -> Address | None:
        """The first Record-Route hop as written (its host may be a name, resolved by the server)."""
        routes = self.invite.get_all("Record-Route")
        return uri_host_port(name_addr_uri(routes[0]), what="Record-Route") if routes else None

    def request(self, method: str, branch: str, headers: list[tuple[str, str]] | None = None,
                body: bytes = b"", content_type: str | None = None) -> SipMessage:
        """A request inside the dialog (BYE, REFER) from us to the caller."""
        self.local_cseq += 1
        msg = SipMessage(method=method, uri=self.remote_target)
        msg.add("Via", f"SIP/2.0/UDP {self.via_host};branch={branch};rport")
        msg.add("Max-Forwards", "70")
        to_value = self.invite.get("To") or ""
        if header_param(to_value, "tag") is None:
            to_value = f"{to_value};tag={self.local_tag}"
        msg.add("From", to_value)
        msg.add("To", self.invite.get("From") or "")
        msg.add("Call-ID", self.call_id)
        msg.add("CSeq", f"{self.local_cseq} {method}")
        for route in self.invite.get_all("Record-Route"):
            msg.add("Route", route)
        msg.add("Contact", self.local_contact)
        for name, value in headers or []:
            msg.add(name, value)
        if content_type:
            msg.add("Content-Type", content_type)
        msg.body = body
        return msg

    def transfer_uri(self, number: str) -> str:
        """The Refer-To target for a phone number: the number at the caller's own host (its PBX or trunk)."""
        if number.startswith(("sip:", "sips:", "tel:")):
            return number
        host, port = uri_host_port(name_addr_uri(self.invite.get("From") or ""))
        host_part = f"{host}:{port}" if port != 5060 else host
        return f"sip:{number}@{host_part}"


def apply_ack_answer(dialog: SipDialog, ack: SipMessage) -> None:
    """The caller's answer in the ACK to the sendrecv offer of our 200 OK: its address and direction apply.

    An ACK without SDP (a protocol error of the caller) still ends our side of a hold: we offered sendrecv.
    """
    if dialog.rtp is None or dialog.agreed is None:
        return
    answer, _problem = negotiate_body(ack.get("Content-Type"), ack.body, (dialog.agreed.codec,))
    if answer is None:
        dialog.rtp.retarget(dialog.rtp.remote, "sendrecv")
        return
    dialog.agreed = replace(dialog.agreed, remote_host=answer.remote_host, remote_port=answer.remote_port,
                            direction=answer.direction)
    dialog.rtp.retarget((answer.remote_host, answer.remote_port), answer.direction)
