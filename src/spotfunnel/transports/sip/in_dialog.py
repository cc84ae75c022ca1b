"""The requests inside a call's dialog (re-INVITE, ACK, BYE, CANCEL, INFO, NOTIFY) and OPTIONS, as SipServer answers them."""
from __future__ import annotations

import logging
import random
from dataclasses import replace
from typing import Protocol

from spotfunnel.transports.sip.admission import negotiate_request
from spotfunnel.transports.sip.dialog import SipDialog, apply_ack_answer
from spotfunnel.transports.sip.dtmf import info_digits
from spotfunnel.transports.sip.message import SipMessage, header_param
from spotfunnel.transports.sip.sdp import build_answer

__all__ = ["ALLOW", "InDialogHandlers"]

log = logging.getLogger(__name__)

Address = tuple[str, int]
ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, NOTIFY"


class _Server(Protocol):
    """What the handlers use of the server they are mixed into."""

    advertise_host: str
    _dialogs: dict[str, SipDialog]
    _by_branch: dict[tuple[str, str], SipDialog]

    def _respond(self, request: SipMessage, addr: Address, status: int, reason: str, *, to_tag: str | None = None,
                 headers: list[tuple[str, str]] | None = None, body: bytes = b"") -> SipMessage: ...

    def _respond_invite(self, dialog: SipDialog, status: int, reason: str, *, to_tag: str | None = None,
                        headers: list[tuple[str, str]] | None = None, body: bytes = b"") -> SipMessage: ...

    def _finish(self, dialog: SipDialog) -> None: ...

    def _in_dialog(self, msg: SipMessage) -> SipDialog | None: ...


class InDialogHandlers:
    """Mixed into SipServer: one method per request inside an existing dialog (and OPTIONS)."""

    def _reinvite(self: _Server, dialog: SipDialog, msg: SipMessage, addr: Address) -> None:
        """A re-INVITE (hold, resume, a new RTP address): the call keeps its codec; the offer's address applies."""
        if not dialog.answered or dialog.agreed is None or dialog.rtp is None:
            # RFC 3261 14.2: an INVITE in the dialog before the first one's final response
            self._respond(msg, addr, 500, "Server Internal Error", to_tag=dialog.local_tag,
                          headers=[("Retry-After", str(random.randint(0, 10)))])
            return
        self._respond(msg, addr, 100, "Trying")
        agreed = dialog.agreed
        if not msg.body:  # our 200 OK is the offer, the ACK answers it (RFC 3264 5): offer both ways so a hold ends
            agreed = dialog.agreed = replace(agreed, direction="sendrecv")
            dialog.offered = True
        else:
            offer, refusal = negotiate_request(msg, (agreed.codec,))
            if offer is None:
                status, reason, headers = refusal or (500, "Server Internal Error", [])
                self._respond(msg, addr, status, reason, to_tag=dialog.local_tag, headers=headers)
                return  # RFC 3261 14.2: a refused re-INVITE leaves the call as it was
            agreed = dialog.agreed = replace(agreed, remote_host=offer.remote_host, remote_port=offer.remote_port,
                                             direction=offer.direction)
            dialog.rtp.retarget((agreed.remote_host, agreed.remote_port), agreed.direction)
        sdp = build_answer(agreed, self.advertise_host, dialog.rtp.port, dialog.sdp_session,
                           dialog.next_sdp_version()).encode()
        self._respond(msg, addr, 200, "OK", to_tag=dialog.local_tag,
                      headers=[("Contact", dialog.local_contact), ("Content-Type", "application/sdp")], body=sdp)

    def _in_dialog(self: _Server, msg: SipMessage) -> SipDialog | None:
        """The dialog of an in-dialog request: its Call-ID and our To-tag (RFC 3261 12.2.2), not the Call-ID alone."""
        dialog = self._dialogs.get(msg.call_id)
        if dialog is None or header_param(msg.get("To") or "", "tag") != dialog.local_tag:
            return None
        return dialog

    def _on_ack(self: _Server, msg: SipMessage, addr: Address) -> None:
        dialog = self._in_dialog(msg)
        if dialog is None:
            return  # an ACK is never answered: one for another dialog (or a forged one) is ignored
        dialog.acked.set()
        if dialog.offered:
            dialog.offered = False
            apply_ack_answer(dialog, msg)

    def _on_bye(self: _Server, msg: SipMessage, addr: Address) -> None:
        dialog = self._in_dialog(msg)
        if dialog is None:
            self._respond(msg, addr, 481, "Call/Transaction Does Not Exist")
            return
        self._respond(msg, addr, 200, "OK")
        dialog.acked.set()  # a BYE implies the caller had the 200 OK
        if dialog.transport is not None:
            dialog.transport.end("caller hung up")
        self._finish(dialog)

    def _on_cancel(self: _Server, msg: SipMessage, addr: Address) -> None:
        dialog = self._by_branch.get((msg.call_id, msg.branch))
        if dialog is None:
            self._respond(msg, addr, 481, "Call/Transaction Does Not Exist")
            return
        self._respond(msg, addr, 200, "OK")
        if dialog.answered or dialog.ended:
            return  # too late: the call is up, the caller must send BYE
        dialog.cancelled = True
        self._respond_invite(dialog, 487, "Request Terminated", to_tag=dialog.local_tag)
        log.info("SIP: call %s cancelled by the caller while ringing", dialog.call_id)
        self._finish(dialog)

    def _on_options(self: _Server, msg: SipMessage, addr: Address) -> None:
        self._respond(msg, addr, 200, "OK", headers=[("Allow", ALLOW), ("Accept", "application/sdp"),
                                                    ("Supported", "replaces")])

    def _on_info(self: _Server, msg: SipMessage, addr: Address) -> None:
        """SIP INFO DTMF (application/dtmf-relay 'Signal=5'), which some phones send instead of RFC 4733."""
        dialog = self._in_dialog(msg)
        if dialog is None or dialog.ended:
            self._respond(msg, addr, 481, "Call/Transaction Does Not Exist")
            return
        self._respond(msg, addr, 200, "OK")
        if "dtmf" in (msg.get("Content-Type") or "").lower() and dialog.transport is not None:
            for digit in info_digits(msg.body):
                dialog.transport.on_dtmf(digit)

    def _on_notify(self: _Server, msg: SipMessage, addr: Address) -> None:
        """Progress of a transfer we asked for (a sipfrag like 'SIP/2.0 200 OK'); logged."""
        if msg.call_id in self._dialogs and self._in_dialog(msg) is None:
            self._respond(msg, addr, 481, "Call/Transaction Does Not Exist")  # our call, another dialog's tag
            return
        self._respond(msg, addr, 200, "OK")  # also after our BYE: the transfer's outcome may come late
        log.info("SIP: transfer progress on %s: %s", msg.call_id, msg.body.decode("utf-8", "replace").strip()[:60])

