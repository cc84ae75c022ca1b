"""A call's identity: our own id, and the provider's id and caller number bounded and checked as they arrive."""
from __future__ import annotations

import uuid

from spotfunnel.store.models import PROVIDER_CALL_ID_MAX

__all__ = ["CALLER_ID_MAX", "caller_number", "call_direction", "new_call_id", "provider_call_id"]

CALLER_ID_MAX = 32  # E.164 is at most 16 characters; room for a SIP user part, no more
DIRECTIONS = ("inbound", "outbound")


def new_call_id() -> str:
    """Our id of a call: a UUID, whatever the provider calls it."""
    return str(uuid.uuid4())


def _printable(raw: str) -> str:
    return "".join(c for c in raw if "!" <= c <= "~")  # visible ASCII: no spaces, controls or other scripts


def provider_call_id(raw: str) -> str:
    """The provider's id (Twilio CallSid, SIP Call-ID) as stored: visible ASCII, cut at PROVIDER_CALL_ID_MAX.

    It identifies nothing on its own (a caller picks its SIP Call-ID, and may reuse one); it is kept
    beside our id to find a call in the provider's logs.
    """
    return _printable(raw)[:PROVIDER_CALL_ID_MAX]


def caller_number(raw: str) -> str:
    """The caller's number as stored, or "" (unknown: the agent asks for it) when it is not a plausible one."""
    value = _printable(raw)
    return value if len(value) <= CALLER_ID_MAX else ""


def call_direction(raw: str | None) -> str:
    """"outbound" for a call we placed; anything else is an inbound call."""
    return "outbound" if raw == "outbound" else "inbound"
