"""What one call is made of and leaves behind: its setup, its record, and the outcomes a call can end with."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from spotfunnel.calls.latency import TurnLatency
from spotfunnel.clock import Clock
from spotfunnel.conversation.agent import AgentConfig
from spotfunnel.store.calls import OpenCall, report_payload
from spotfunnel.store.db import Database
from spotfunnel.voice.events import EventLog

# Outcomes of calls the agent's policy did not settle (conversation/policy.py has the business ones).
WEAK_OUTCOMES = ("answered", "transferred")  # a finished task (booked, ...) or a call-level outcome wins over these
NO_INPUT = "no_input"  # silence after two prompts: the agent said goodbye
HANDOFF = "handoff"  # the agent could not understand (speech recognition failed) and passed the call to a person
HANDOFF_FAILED = "handoff_failed"  # a transfer was refused: the caller was given the number instead
FAILED = "failed"  # a fault on our side ended the call (handed off or hung up cleanly)
FAX = "fax"  # an outbound call answered by a fax machine
ABANDONED = "abandoned"  # the caller hung up before anything was settled (or the server stopped mid-call)
ENDED = "ended"  # the agent closed the call with nothing else to report


@dataclass
class CallSetup:
    """Everything a call needs besides its transport: the tenant's agent, its store and its clock."""

    agent: AgentConfig
    db: Database
    clock: Clock


@dataclass
class CallRecord:
    call_id: str  # ours: a UUID (or eval's own name); never the provider's
    tenant_id: str = ""
    provider_call_id: str = ""  # Twilio CallSid, SIP Call-ID: bounded, for finding the call in the provider's logs
    caller_id: str = ""
    direction: str = "inbound"
    started_at: datetime | None = None
    outcome: str | None = None
    transcript: list[dict[str, Any]] = field(default_factory=list)
    latencies: list[TurnLatency] = field(default_factory=list)
    events: EventLog = field(default_factory=EventLog)
    duration_s: float = 0.0
    max_loop_lag_ms: float = 0.0
    error: str | None = None
    finished: asyncio.Event = field(default_factory=asyncio.Event)  # set when the agent side is done

    def opened(self, trace_id: str) -> OpenCall:
        """The call's row as written when it starts (store/calls.py)."""
        if self.started_at is None:
            raise ValueError(f"call {self.call_id} has not started: no row to write")
        return OpenCall(call_id=self.call_id, tenant_id=self.tenant_id, provider_call_id=self.provider_call_id,
                        caller_id=self.caller_id, direction=self.direction, started_at=self.started_at,
                        trace_id=trace_id)

    def report(self, trace_id: str) -> dict[str, Any]:
        """The `call.report` payload of the finished call."""
        return report_payload(self.opened(trace_id), outcome=self.outcome or ABANDONED, transcript=self.transcript,
                              duration_s=self.duration_s, turn_latencies_ms=[round(x.total) for x in self.latencies],
                              error=self.error)


def stt_prompt_terms(agent: AgentConfig) -> list[str]:
    """Business name first, then the canonical service names and the tenant's extra terms."""
    return [agent.profile.name, *(s.name for s in agent.profile.services), *agent.vocabulary.extra]


class CallSetupError(Exception):
    """The call cannot start (unknown tenant, bad configuration); the message says why."""


