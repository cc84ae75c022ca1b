"""Which setup a new call gets: tenants by the number dialled or a parameter, or a prepared test setup."""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Callable

from spotfunnel.calls.call import CallRecord, CallSetup, CallSetupError
from spotfunnel.calls.tickets import StreamTicket, StreamTickets
from spotfunnel.conversation.agent import AgentConfig, AgentConfigError, list_tenants, load_agent
from spotfunnel.transports.base import CallStarted


@dataclass
class CallDirectory:
    """Resolves a starting call to its CallSetup. `prepare` registers a one-off setup (eval, tests)."""

    default_setup: Callable[[AgentConfig], CallSetup]
    prepared: dict[str, tuple[CallSetup, CallRecord]] = field(default_factory=dict)
    #: the media streams our webhook (or eval's harness) has answered for, not yet opened (calls/tickets.py)
    tickets: StreamTickets = field(default_factory=StreamTickets)
    _agents: dict[str, AgentConfig] = field(default_factory=dict)

    def prepare(self, key: str, setup: CallSetup, record: CallRecord) -> None:
        self.prepared[key] = (setup, record)

    def prepare_stream(self, setup: CallSetup, record: CallRecord, *, call_sid: str, caller: str,
                       direction: str = "inbound", lockstep: bool = False) -> StreamTicket:
        """In process only (eval, tests): a stream ticket bound to a prepared setup, optionally in lockstep.

        This is the one way test behaviour reaches a Twilio call: nothing in the stream can select it.
        """
        key = uuid.uuid4().hex
        self.prepare(key, setup, record)
        profile = setup.agent.profile
        return self.tickets.issue(call_sid=call_sid, caller=caller, called=profile.phone, tenant=profile.id,
                                  direction=direction, prepared=key, lockstep=lockstep)

    def record_for(self, started: CallStarted) -> CallRecord | None:
        entry = self.prepared.get(started.params.get("setup", ""))
        return entry[1] if entry else None

    def resolve(self, started: CallStarted) -> CallSetup:
        key = started.params.get("setup")
        if key:
            if key not in self.prepared:
                raise CallSetupError(f"no prepared call setup {key!r}")
            return self.prepared.pop(key)[0]
        return self.default_setup(self.agent_for(started))

    def knows(self, tenant_id: str) -> bool:
        """Whether `tenant_id` is a configured tenant (for labels and ids that arrive in requests)."""
        return tenant_id in self._agents or tenant_id in list_tenants()

    def agent_for(self, started: CallStarted) -> AgentConfig:
        tenant = started.tenant_id or self._tenant_by_number(started.called)
        if not tenant:
            raise CallSetupError(f"no tenant answers {started.called or 'this number'}; known: {list_tenants()}")
        if tenant not in self._agents:
            try:
                self._agents[tenant] = load_agent(tenant)
            except AgentConfigError as exc:
                raise CallSetupError(str(exc)) from exc
        return self._agents[tenant]

    def _tenant_by_number(self, called: str) -> str | None:
        digits = "".join(c for c in called if c.isdigit())
        for tenant in list_tenants():
            agent = self._agents.get(tenant) or load_agent(tenant)
            self._agents[tenant] = agent
            if digits and "".join(c for c in agent.profile.phone if c.isdigit()).endswith(digits[-10:]):
                return tenant
        return None
