"""Everything a flow needs for one call: the agent, the ledger, the clock, the state and how to speak."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Awaitable, TypeVar

from spotfunnel.business import OpeningHours, Service
from spotfunnel.clock import Clock
from spotfunnel.conversation.agent import AgentConfig
from spotfunnel.conversation.extract.dates import When, parse_when
from spotfunnel.conversation.extract.phones import is_valid_e164
from spotfunnel.conversation.policy import AgentReply
from spotfunnel.conversation.speech import Speaker
from spotfunnel.conversation.state import Ask, CallState
from spotfunnel.conversation.tools import Ledger, ToolCall
from spotfunnel.store.access import Requester

T = TypeVar("T")


class NotUnderstood(Exception):
    """The turn does not answer the open question; `phrase` names the reprompt to use."""

    def __init__(self, phrase: str = "not_understood") -> None:
        super().__init__(phrase)
        self.phrase = phrase


@dataclass
class CallContext:
    """One call's agent, tools and memory, shared by the flows."""

    agent: AgentConfig
    ledger: Ledger
    clock: Clock
    caller_id: str
    call_id: str
    trace_id: str = ""
    state: CallState = field(default_factory=CallState)

    def __post_init__(self) -> None:
        self.speaker = Speaker(self.agent)

    @property
    def services(self) -> list[Service]:
        return self.agent.profile.services

    @property
    def caller_phone(self) -> str | None:
        """The caller ID when it is a usable phone number (not withheld)."""
        return self.caller_id if is_valid_e164(self.caller_id) else None

    def requester(self) -> Requester:
        """Who is asking the ledger for a change: this call's caller ID and any proof given on it."""
        return Requester(self.caller_phone, self.state.proof_name, self.state.proof_day)

    def say(self, phrase: str, /, **fields: object) -> str:
        return self.agent.say(phrase, **fields)

    def ask(self, ask: Ask, question: str, *before: str, reprompt: bool = False) -> AgentReply:
        """A reply that ends with `question` and makes it the open question."""
        self.state.ask, self.state.question = ask, question
        self.state.question_unheard = False
        return AgentReply(text=" ".join([*before, question]), reprompt=reprompt)

    def transfer(self, phrase: str) -> AgentReply:
        """Hand the call to the tenant's person with `phrase`; the call ends for the agent."""
        self.state.settle("transferred")
        self.state.ask = Ask.ENDED
        return AgentReply(text=self.say(phrase), transfer_to=self.agent.profile.handoff_phone, end_call=True)

    def tool(self, work: Awaitable[T], filler_phrase: str) -> ToolCall[T]:
        timing = self.agent.turn_taking
        return ToolCall(work, timing.tool_filler_ms, self.say(filler_phrase), timing.tool_deadline_ms)

    def now(self) -> datetime:
        return self.clock.now()

    def today(self) -> date:
        return self.clock.now().astimezone(self.agent.profile.tz).date()

    def opening(self, day: date) -> OpeningHours | None:
        return self.agent.profile.hours_on(day.weekday())

    def when(self, text: str, context_day: date | None = None, bare_time: bool = False) -> When:
        return parse_when(
            text, self.clock.now(), self.agent.profile.tz, self.opening, context_day=context_day, bare_time=bare_time
        )

    def service_name(self, service_id: str) -> str:
        return self.agent.profile.service(service_id).name
