"""The call's event log: what happened, stamped with audio time (frames) and wall time."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass
class CallEvent:
    kind: str
    frame: int
    wall: float
    data: dict[str, Any] = field(default_factory=dict)


class EventLog:
    """Append-only; listeners are called synchronously (they must not block)."""

    def __init__(self) -> None:
        self.events: list[CallEvent] = []
        self._listeners: list[Callable[[CallEvent], None]] = []
        self.frame = 0

    def emit(self, kind: str, /, **data: Any) -> CallEvent:
        ev = CallEvent(kind, self.frame, time.perf_counter(), data)
        self.events.append(ev)
        for listener in list(self._listeners):
            listener(ev)
        return ev

    def subscribe(self, listener: Callable[[CallEvent], None]) -> None:
        self._listeners.append(listener)

    def of(self, kind: str) -> list[CallEvent]:
        return [e for e in self.events if e.kind == kind]
