"""Reads what it can of a malformed SIP request, so the server can still answer it with 400 Bad Request."""
from __future__ import annotations

from spotfunnel.transports.sip.message import REQUIRED_REQUEST_HEADERS, SipMessage, canonical_name

__all__ = ["salvage_request"]


def salvage_request(data: bytes) -> SipMessage | None:
    """The request line and the five headers a response needs, or None when they are not all there.

    Used only after `parse_message` refused the datagram: lines that do not read as headers are
    skipped instead of failing the whole message.
    """
    text = data[:8192].decode("utf-8", "replace").replace("\r\n", "\n").split("\n\n", 1)[0]
    lines = text.split("\n")
    parts = lines[0].strip().split(" ")
    if len(parts) != 3 or parts[2] != "SIP/2.0" or not parts[0].isalpha():
        return None
    msg = SipMessage(method=parts[0].upper(), uri=parts[1])
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        canonical = canonical_name(name) if colon and name.strip() and " " not in name.strip() else ""
        if canonical in REQUIRED_REQUEST_HEADERS and value.strip():
            msg.add(canonical, value.strip())
    if all(msg.get(name) for name in REQUIRED_REQUEST_HEADERS):
        return msg
    return None
