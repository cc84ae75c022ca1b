"""Server-side records of the calls we answered or placed: single-use stream tickets and outbound dials.

A media stream is only as trustworthy as the record it is bound to. Our voice webhook (or eval's
harness, in process) issues a ticket naming the call, caller, tenant and direction; the stream
presents the ticket's random token in its URL and start message and gets that identity, never one
it sends itself. Tickets are single-use and expire, so one captured URL or signature opens nothing.
"""
from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Any, Callable

import structlog

__all__ = ["OutboundDial", "OutboundDials", "StreamTicket", "StreamTickets"]

log = structlog.get_logger(__name__)

Clock = Callable[[], float]


@dataclass(frozen=True)
class StreamTicket:
    """Who a media stream is, decided by us when we answered the call."""

    token: str
    call_sid: str  # the provider's id of the call (Twilio CallSid); the stream's own callSid must match
    caller: str
    called: str
    tenant: str
    direction: str  # "inbound" | "outbound"
    expires_at: float
    #: in-process only: eval's harness binds a prepared CallSetup (calls/directory.py) and lockstep
    prepared: str | None = None
    lockstep: bool = False

    def call_params(self) -> dict[str, str]:
        """CallStarted.params for this call, from the server-side record."""
        params = {"direction": self.direction}
        if self.prepared:
            params["setup"] = self.prepared
        return params


class StreamTickets:
    """Outstanding stream tickets: issued by the webhook, claimed once by the stream upgrade, then gone.

    At most `max_pending` are held (oldest dropped first, logged), and an unclaimed one expires
    after `ttl_s`: Twilio opens the stream within a second or two of our TwiML.
    """

    def __init__(self, ttl_s: float = 30.0, max_pending: int = 1024, clock: Clock = time.monotonic) -> None:
        self.ttl_s, self.max_pending, self._clock = ttl_s, max_pending, clock
        self._pending: OrderedDict[str, StreamTicket] = OrderedDict()

    def issue(self, *, call_sid: str, caller: str, called: str, tenant: str, direction: str,
              prepared: str | None = None, lockstep: bool = False) -> StreamTicket:
        self._expire()
        ticket = StreamTicket(token=secrets.token_urlsafe(24), call_sid=call_sid, caller=caller, called=called,
                              tenant=tenant, direction=direction, expires_at=self._clock() + self.ttl_s,
                              prepared=prepared, lockstep=lockstep)
        self._pending[ticket.token] = ticket
        while len(self._pending) > self.max_pending:
            _token, dropped = self._pending.popitem(last=False)
            log.warning("twilio.ticket.dropped", call_sid=dropped.call_sid, reason="too many unclaimed tickets")
        return ticket

    def claim(self, token: str) -> StreamTicket | None:
        """The ticket for `token`, removed (single use); None when unknown, already used or expired."""
        self._expire()
        return self._pending.pop(token, None)

    def pending(self) -> int:
        """Tickets issued and not yet claimed or expired: calls answered whose stream is still to come."""
        self._expire()
        return len(self._pending)

    def _expire(self) -> None:
        for oldest in _drop_expired(self._pending, self._clock()):
            log.info("twilio.ticket.expired", call_sid=oldest.call_sid, tenant=oldest.tenant)


@dataclass(frozen=True)
class OutboundDial:
    """An outbound call we placed: its webhooks (voice, status, AMD) name it by `id`, Twilio's sid joins later."""

    id: str
    tenant: str
    to: str  # the person called: the agent's "caller"
    from_: str  # the tenant's number
    expires_at: float
    call_sid: str | None = None


class OutboundDials:
    """Outbound calls placed by this server, by our own id; bounded and expiring like the tickets.

    `ttl_s` covers ringing, the call and its last status callback (Twilio rings for up to 60 s).
    """

    def __init__(self, ttl_s: float = 4 * 3600.0, max_held: int = 1024, clock: Clock = time.monotonic) -> None:
        self.ttl_s, self.max_held, self._clock = ttl_s, max_held, clock
        self._dials: OrderedDict[str, OutboundDial] = OrderedDict()

    def add(self, *, tenant: str, to: str, from_: str) -> OutboundDial:
        self._expire()
        dial = OutboundDial(id=secrets.token_urlsafe(18), tenant=tenant, to=to, from_=from_,
                            expires_at=self._clock() + self.ttl_s)
        self._dials[dial.id] = dial
        while len(self._dials) > self.max_held:
            self._dials.popitem(last=False)
        return dial

    def match(self, dial_id: str, call_sid: str) -> OutboundDial | None:
        """The dial `dial_id` if `call_sid` is its call: the first webhook binds the sid, later ones must agree."""
        self._expire()
        dial = self._dials.get(dial_id)
        if dial is None or not call_sid:
            return None
        if dial.call_sid is None:
            dial = replace(dial, call_sid=call_sid)
            self._dials[dial_id] = dial
        return dial if dial.call_sid == call_sid else None

    def bind(self, dial_id: str, call_sid: str) -> None:
        """Twilio's sid for our dial, as its REST API answered the call request."""
        self.match(dial_id, call_sid)

    def finish(self, dial_id: str) -> None:
        self._dials.pop(dial_id, None)

    def _expire(self) -> None:
        _drop_expired(self._dials, self._clock())


def _drop_expired(held: OrderedDict[str, Any], now: float) -> list[Any]:
    """Remove the entries whose `expires_at` has passed (oldest first, as they were added); returns them."""
    dropped = []
    while held:
        key, oldest = next(iter(held.items()))
        if oldest.expires_at > now:
            break
        dropped.append(held.pop(key))
    return dropped
