"""Conversation test harness: the receptionist against the real BookingLedger on in-memory SQLite."""
from __future__ import annotations

import asyncio
from datetime import date, datetime, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml

from spotfunnel.clock import FrozenClock
from spotfunnel.conversation.agent import AgentConfig, load_agent
from spotfunnel.conversation.policy import AgentReply, UserTurn
from spotfunnel.conversation.receptionist import ReceptionistPolicy
from spotfunnel.integrations.sms import SmsSink
from spotfunnel.store.db import Database
from spotfunnel.store.ledger import SMS_CONFIRMATION, BookingLedger, BookingRecord, SeedBooking, SlotCheck
from spotfunnel.store.queries import SmsView, jobs, sms_sent
from spotfunnel.workflows.jobs import default_handlers
from spotfunnel.workflows.worker import OutboxWorker

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios" / "examples"  # copies of shared/scenarios/examples
LA = ZoneInfo("America/Los_Angeles")


class GatedLedger(BookingLedger):
    """The real ledger whose slot checks wait for `open_gate()`: a tool that is slow for as long as a test says."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gate = asyncio.Event()

    async def check(self, service_id: str, start: datetime) -> SlotCheck:
        await self.gate.wait()
        return await super().check(service_id, start)


class Call:
    """One call to the demo salon's receptionist: text turns in, replies out, bookings in a real ledger."""

    def __init__(
        self, now: str, caller_id: str = "+14155550111", agent: AgentConfig | None = None, gated: bool = False
    ) -> None:
        self.agent = agent or load_agent("maple-street-salon")
        self.clock = FrozenClock(datetime.fromisoformat(now))
        self.db = Database.memory()
        ledger_type = GatedLedger if gated else BookingLedger
        self.ledger = ledger_type(self.db, self.agent.profile, self.clock)
        self.policy = ReceptionistPolicy(self.agent, self.ledger, self.clock, caller_id, call_id="call-1", trace_id="t-1")
        self.said: list[str] = [self.policy.greeting().text]

    async def seed(self, name: str, phone: str, service_id: str, start: datetime) -> BookingRecord:
        """A booking that exists before the call."""
        [record] = await self.ledger.seed([SeedBooking(name=name, phone=phone, service=service_id, start=start)])
        return record

    async def say(self, text: str, dtmf: str | None = None) -> list[AgentReply]:
        replies = [reply async for reply in self.policy.respond(UserTurn(text=text, dtmf=dtmf))]
        self.said.extend(r.text for r in replies)
        return replies

    async def text(self, text: str) -> str:
        """The agent's words in reply to `text`, fillers left out."""
        return " ".join(r.text for r in await self.say(text) if not r.filler)

    async def keys(self, pressed: str) -> str:
        """The agent's words in reply to keys pressed on the keypad."""
        return " ".join(r.text for r in await self.say(pressed, dtmf=pressed) if not r.filler)

    async def active(self) -> list[BookingRecord]:
        """Every active booking of the salon, soonest first."""
        return await self.ledger.active()

    async def sms_to(self) -> list[str]:
        """The numbers a confirmation SMS was queued for, in the order the changes were made."""
        return [j.payload["to"] for j in await jobs(self.db, self.agent.profile.id, kind=SMS_CONFIRMATION)]

    async def texts_sent(self) -> list[SmsView]:
        """Runs the outbox the way the server does and returns the messages it sent."""
        worker = OutboxWorker(self.db, default_handlers(self.db, SmsSink(self.db)), clock=self.clock)
        await worker.run_until_idle(timeout_s=5)
        return await sms_sent(self.db, self.agent.profile.id)


def load_scenario(name: str) -> dict:  # type: ignore[type-arg]
    return yaml.safe_load((SCENARIOS / f"{name}.yaml").read_text())


def local(day: date, hour: int, minute: int = 0) -> datetime:
    """A wall time at the salon as an aware datetime."""
    return datetime.combine(day, time(hour, minute), tzinfo=LA)
