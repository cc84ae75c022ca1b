"""Test doubles for the conversation tests: an in-memory booking ledger that keeps the salon's rules."""
from __future__ import annotations

import asyncio
import itertools
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import AsyncIterator

import yaml

from spotfunnel.business import TenantProfile
from spotfunnel.clock import Clock, FrozenClock
from spotfunnel.conversation.agent import AgentConfig, load_agent
from spotfunnel.conversation.policy import AgentReply, UserTurn
from spotfunnel.conversation.receptionist import ReceptionistPolicy
from spotfunnel.store.ledger import BookingNotFound, BookingRecord, SlotCheck, SlotUnavailable

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios" / "examples"  # copies of shared/scenarios/examples


class FakeLedger:
    """Opening hours, one chair, a 15-minute grid, ending by closing, two nearest free alternatives."""

    def __init__(self, profile: TenantProfile, clock: Clock, delay_s: float = 0.0) -> None:
        self.profile, self.clock, self.delay_s = profile, clock, delay_s
        self.bookings: dict[str, BookingRecord] = {}
        self.sms_to: list[str] = []
        self.calls: list[str] = []
        self._ids = itertools.count(1)
        self._by_key: dict[tuple[str, str, datetime], str] = {}

    def add(self, name: str, phone: str, service_id: str, start: datetime) -> BookingRecord:
        minutes = self.profile.service(service_id).minutes
        record = BookingRecord(
            id=f"b{next(self._ids)}", tenant_id=self.profile.id, name=name, phone=phone, service_id=service_id,
            start=start, end=start + timedelta(minutes=minutes), status="active",
        )
        self.bookings[record.id] = record
        return record

    async def _pause(self, name: str) -> None:
        self.calls.append(name)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)

    def _problem(self, service_id: str, start: datetime, ignore: str | None = None) -> str | None:
        tz = self.profile.tz
        local = start.astimezone(tz)
        end = start + timedelta(minutes=self.profile.service(service_id).minutes)
        hours = self.profile.hours_on(local.date().weekday())
        if start <= self.clock.now():
            return "past"
        if local.minute % self.profile.slot_minutes or local.second:
            return "off-grid"
        if hours is None or not (hours.open <= local.time().replace(tzinfo=None) < hours.close):
            return "closed"
        if end.astimezone(tz).time().replace(tzinfo=None) > hours.close or end.astimezone(tz).date() != local.date():
            return "ends-after-closing"
        for other in self.bookings.values():
            if other.status == "active" and other.id != ignore and other.start < end and start < other.end:
                return "taken"
        return None

    def _alternatives(self, service_id: str, start: datetime, ignore: str | None) -> list[datetime]:
        tz, step = self.profile.tz, timedelta(minutes=self.profile.slot_minutes)
        local = start.astimezone(tz)
        grid = datetime.combine(local.date(), time(local.hour, local.minute - local.minute % 15), tzinfo=tz)
        before = after = None
        for n in range(1, 14 * 96):
            later, earlier = grid + n * step, grid - n * step
            if after is None and self._problem(service_id, later, ignore) is None:
                after = later
            if before is None and self._problem(service_id, earlier, ignore) is None:
                before = earlier
            if before and after:
                break
        found = [t for t in (before, after) if t is not None]
        if before is None and after is not None:
            nxt = next((after + n * step for n in range(1, 14 * 96) if self._problem(service_id, after + n * step, ignore) is None), None)
            found += [nxt] if nxt else []
        return sorted(found)[:2]

    def _check(self, service_id: str, start: datetime, ignore: str | None = None) -> SlotCheck:
        problem = self._problem(service_id, start, ignore)
        if problem is None:
            return SlotCheck(ok=True)
        return SlotCheck(ok=False, reason=problem, alternatives=self._alternatives(service_id, start, ignore))  # type: ignore[arg-type]

    async def check(self, service_id: str, start: datetime) -> SlotCheck:
        await self._pause("check")
        return self._check(service_id, start)

    async def book(self, *, name: str, phone: str, service_id: str, start: datetime, call_id: str, trace_id: str = "") -> BookingRecord:
        await self._pause("book")
        key = (call_id, service_id, start)
        if key in self._by_key:
            return self.bookings[self._by_key[key]]
        check = self._check(service_id, start)
        if not check.ok:
            raise SlotUnavailable(check)
        record = self.add(name, phone, service_id, start)
        self._by_key[key] = record.id
        self.sms_to.append(phone)
        return record

    async def find_upcoming(self, phone: str) -> list[BookingRecord]:
        await self._pause("find_upcoming")
        now = self.clock.now()
        found = [b for b in self.bookings.values() if b.phone == phone and b.status == "active" and b.start > now]
        return sorted(found, key=lambda b: b.start)

    async def reschedule(self, booking_id: str, new_start: datetime, *, call_id: str, trace_id: str = "") -> BookingRecord:
        await self._pause("reschedule")
        old = self._get(booking_id)
        check = self._check(old.service_id, new_start, ignore=booking_id)
        if not check.ok:
            raise SlotUnavailable(check)
        minutes = self.profile.service(old.service_id).minutes
        moved = old.model_copy(update={"start": new_start, "end": new_start + timedelta(minutes=minutes)})
        self.bookings[booking_id] = moved
        self.sms_to.append(moved.phone)
        return moved

    async def cancel(self, booking_id: str, *, call_id: str, trace_id: str = "") -> BookingRecord:
        await self._pause("cancel")
        cancelled = self._get(booking_id).model_copy(update={"status": "cancelled"})
        self.bookings[booking_id] = cancelled
        self.sms_to.append(cancelled.phone)
        return cancelled

    async def active(self) -> list[BookingRecord]:
        return [b for b in self.bookings.values() if b.status == "active"]

    def _get(self, booking_id: str) -> BookingRecord:
        if booking_id not in self.bookings or self.bookings[booking_id].status != "active":
            raise BookingNotFound(booking_id)
        return self.bookings[booking_id]


class Call:
    """One simulated call against the receptionist: text turns in, replies out."""

    def __init__(self, now: str, caller_id: str = "+14155550111", delay_s: float = 0.0, agent: AgentConfig | None = None) -> None:
        self.agent = agent or load_agent("maple-street-salon")
        self.clock = FrozenClock(datetime.fromisoformat(now))
        self.ledger = FakeLedger(self.agent.profile, self.clock, delay_s)
        self.policy = ReceptionistPolicy(self.agent, self.ledger, self.clock, caller_id, call_id="call-1", trace_id="t-1")
        self.said: list[str] = [self.policy.greeting().text]

    async def say(self, text: str) -> list[AgentReply]:
        replies = [reply async for reply in self.policy.respond(UserTurn(text=text))]
        self.said.extend(r.text for r in replies)
        return replies

    async def text(self, text: str) -> str:
        """The agent's words in reply to `text`, fillers left out."""
        return " ".join(r.text for r in await self.say(text) if not r.filler)


def load_scenario(name: str) -> dict:  # type: ignore[type-arg]
    return yaml.safe_load((SCENARIOS / f"{name}.yaml").read_text())


async def replies_of(gen: AsyncIterator[AgentReply]) -> list[AgentReply]:
    return [r async for r in gen]


def local(day: date, hour: int, minute: int = 0) -> datetime:
    from zoneinfo import ZoneInfo

    return datetime.combine(day, time(hour, minute), tzinfo=ZoneInfo("America/Los_Angeles"))
