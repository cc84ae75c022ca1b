"""Tools the agent calls while talking: the ledger's API, run as tasks with a filler when slow."""
from __future__ import annotations

import asyncio
from datetime import date, datetime
from typing import AsyncIterator, Awaitable, Generic, Protocol, TypeVar

from spotfunnel.conversation.policy import AgentReply
from spotfunnel.store.access import Requester
from spotfunnel.store.ledger import BookingRecord, SlotCheck

T = TypeVar("T")


class Ledger(Protocol):
    """The async API of `store.ledger.BookingLedger` the conversation uses.

    Who may change a booking is the ledger's rule (`by`), not the conversation's: a flow that
    forgot to ask for proof still cannot change a booking made under another number."""

    async def check(self, service_id: str, start: datetime) -> SlotCheck: ...

    async def book(
        self, *, name: str, phone: str, service_id: str, start: datetime, call_id: str, trace_id: str = ""
    ) -> BookingRecord: ...

    async def find_own(self, by: Requester) -> list[BookingRecord]: ...

    async def find_proven(self, phone: str, *, name: str, day: date) -> list[BookingRecord]: ...

    async def reschedule(
        self, booking_id: str, new_start: datetime, *, by: Requester, call_id: str, trace_id: str = ""
    ) -> BookingRecord: ...

    async def cancel(self, booking_id: str, *, by: Requester, call_id: str, trace_id: str = "") -> BookingRecord: ...


class ToolTimeout(Exception):
    """A tool outlived its deadline; it was cancelled, and the turn fails like any broken tool."""


class ToolCall(Generic[T]):
    """One tool run as a task; `fillers()` yields a filler reply if it outlives its budget.

        call = ToolCall(ledger.check(...), budget_ms=400, filler="One moment ...", deadline_ms=10000)
        async for reply in call.fillers():
            yield reply
        result = call.result()   # re-raises the tool's exception, or ToolTimeout past the deadline
    """

    def __init__(self, work: Awaitable[T], budget_ms: int, filler: str, deadline_ms: int) -> None:
        self._task: asyncio.Future[T] = asyncio.ensure_future(work)
        self._budget_s = budget_ms / 1000
        self._rest_s = max(deadline_ms - budget_ms, 0) / 1000
        self._filler = filler
        self._deadline_ms = deadline_ms

    async def fillers(self) -> AsyncIterator[AgentReply]:
        done, _ = await asyncio.wait({self._task}, timeout=self._budget_s)
        if not done:
            yield AgentReply(text=self._filler, filler=True)
            done, _ = await asyncio.wait({self._task}, timeout=self._rest_s)
        if not done:
            self._task.cancel()

    def result(self) -> T:
        if self._task.cancelled():
            raise ToolTimeout(f"tool still running after {self._deadline_ms} ms")
        return self._task.result()
