"""What the SIP server decides about a new INVITE before ringing: who calls, and the refusals it may send."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

from spotfunnel.transports.sip.message import SipMessage
from spotfunnel.transports.sip.sdp import AgreedMedia, negotiate_body

__all__ = ["Admission", "IncomingCall", "Refusal", "negotiate_request"]

log = logging.getLogger(__name__)

Address = tuple[str, int]
Refusal = tuple[int, str, list[tuple[str, str]]]


@dataclass(frozen=True)
class IncomingCall:
    """What admission sees of a new INVITE."""

    call_id: str
    caller: str
    called: str
    params: dict[str, str]
    source: Address


Admission = Callable[[IncomingCall], "tuple[int, str] | None"]


def negotiate_request(msg: SipMessage, codecs: tuple[str, ...]) -> tuple[AgreedMedia | None, Refusal | None]:
    """The media of an (re-)INVITE's SDP offer, or the 488 that refuses it with the reason in a Warning."""
    agreed, problem = negotiate_body(msg.get("Content-Type"), msg.body, codecs)
    if agreed is not None:
        return agreed, None
    log.info("SIP: INVITE %s refused 488: %s", msg.call_id, problem)
    text = (problem or "").replace('"', "'")[:160]
    return None, (488, "Not Acceptable Here", [("Warning", f'305 spotfunnel "{text}"')])
