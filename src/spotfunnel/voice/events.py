"""The call's event log: what happened, stamped with audio time (frames) and wall time, bounded per kind."""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

MAX_EVENTS = 5000  # a call's whole history; a 10-minute call keeps well under this
MAX_PER_KIND = 1000  # so a flood of one kind (protocol issues from a junk sender) cannot crowd out the rest


@dataclass
class CallEvent:
    kind: str
    frame: int
    wall: float
    data: dict[str, Any] = field(default_factory=dict)


class EventLog:
    """Append-only and bounded: past `max_per_kind` of a kind, or `max_events` in all, events are not kept
    but counted in `dropped` (per kind). Listeners see every event, kept or not, synchronously (they
    must not block)."""

    def __init__(self, max_events: int = MAX_EVENTS, max_per_kind: int = MAX_PER_KIND) -> None:
        self.events: list[CallEvent] = []
        self.max_events, self.max_per_kind = max_events, max_per_kind
        self.dropped: Counter[str] = Counter()
        self._kept: Counter[str] = Counter()
        self._listeners: list[Callable[[CallEvent], None]] = []
        self.frame = 0

    def emit(self, kind: str, /, **data: Any) -> CallEvent:
        ev = CallEvent(kind, self.frame, time.perf_counter(), data)
        if len(self.events) < self.max_events and self._kept[kind] < self.max_per_kind:
            self.events.append(ev)
            self._kept[kind] += 1
        else:
            self.dropped[kind] += 1
        for listener in list(self._listeners):
            listener(ev)
        return ev

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())

    def subscribe(self, listener: Callable[[CallEvent], None]) -> None:
        self._listeners.append(listener)

    def of(self, kind: str) -> list[CallEvent]:
        return [e for e in self.events if e.kind == kind]
