"""The live Twilio calls of this server by CallSid, so webhooks (AMD verdicts) can reach their call."""
from __future__ import annotations

from collections import OrderedDict

import structlog

from spotfunnel.transports.base import InboundEvent
from spotfunnel.transports.twilio import TwilioTransport

__all__ = ["LiveCalls"]

log = structlog.get_logger(__name__)


class LiveCalls:
    """CallSid -> the call's TwilioTransport while its media stream is up.

    An event for a call whose stream has not started yet (Twilio's webhooks and the stream race)
    is held and delivered when the call registers; at most `max_early` calls are held, oldest
    dropped first, and the newest `max_events` of each, so a flood of webhooks for unknown calls
    cannot grow memory without bound.
    """

    def __init__(self, max_early: int = 256, max_events: int = 4) -> None:
        self._calls: dict[str, TwilioTransport] = {}
        self._early: OrderedDict[str, list[InboundEvent]] = OrderedDict()
        self.max_early = max_early
        self.max_events = max_events  # per held call: Twilio sends one AMD verdict, so a few is plenty

    def __len__(self) -> int:
        return len(self._calls)

    def __contains__(self, call_sid: object) -> bool:
        return call_sid in self._calls

    def add(self, call_sid: str, transport: TwilioTransport) -> None:
        self._calls[call_sid] = transport
        for event in self._early.pop(call_sid, []):
            transport.deliver(event)

    def remove(self, call_sid: str | None, transport: TwilioTransport) -> None:
        if call_sid and self._calls.get(call_sid) is transport:
            del self._calls[call_sid]
        if call_sid:
            self._early.pop(call_sid, None)

    def deliver(self, call_sid: str, event: InboundEvent) -> bool:
        """Hand `event` to the live call; True if it was live, False if held for a stream yet to start."""
        transport = self._calls.get(call_sid)
        if transport is not None:
            transport.deliver(event)
            return True
        held = self._early.setdefault(call_sid, [])
        held.append(event)
        del held[: -self.max_events]  # a replayed webhook cannot grow one call's list either
        self._early.move_to_end(call_sid)
        while len(self._early) > self.max_early:
            dropped, _events = self._early.popitem(last=False)
            log.warning("twilio.live_calls.early_dropped", call_sid=dropped)
        return False
