"""The policy seam: a user turn goes in, the agent's replies and actions come out."""
from __future__ import annotations

from typing import AsyncIterator, Literal, Protocol

from pydantic import BaseModel, Field

Outcome = Literal["booked", "rescheduled", "cancelled", "answered", "transferred", "abandoned", "voicemail"]


class UserTurn(BaseModel):
    """What the caller said in one turn (final transcript), or a DTMF digit string."""

    text: str
    dtmf: str | None = None
    confidence: float | None = None


class AgentReply(BaseModel):
    """One thing the agent says. `reprompt` marks a reply that asks the caller to repeat."""

    text: str
    reprompt: bool = False
    filler: bool = False
    end_call: bool = False
    transfer_to: str | None = None


class HistoryEntry(BaseModel):
    role: Literal["caller", "agent"]
    text: str
    interrupted: bool = False
    reprompt: bool = False


class Policy(Protocol):
    """Implemented by the deterministic receptionist today and an LLM policy later."""

    outcome: Outcome | None
    history: list[HistoryEntry]

    def greeting(self) -> AgentReply: ...

    def respond(self, turn: UserTurn) -> AsyncIterator[AgentReply]:
        """Replies to one turn, in order. A slow tool yields a filler first, then the answer."""
        ...

    def completes_answer(self, partial_text: str) -> bool:
        """True when `partial_text` fully answers what the agent last asked (early end of turn)."""
        ...

    def record_heard(self, reply: AgentReply, heard_text: str, interrupted: bool) -> None:
        """Keep in the history only what the caller actually heard of `reply`."""
        ...


class PolicyError(Exception):
    """The policy could not produce a reply (its provider failed)."""


