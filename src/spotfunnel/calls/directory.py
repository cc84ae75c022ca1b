"""Which setup a new call gets: tenants by the number dialled or a parameter, or a prepared test setup."""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from spotfunnel.calls.call import CallRecord, CallSetup, CallSetupError
from spotfunnel.calls.tickets import StreamTicket, StreamTickets
from spotfunnel.conversation.agent import AgentConfig, TenantCatalog, UnknownTenant, list_tenants, load_tenants
from spotfunnel.transports.base import CallStarted


@dataclass
class CallDirectory:
    """Resolves a starting call to its CallSetup. `prepare` registers a one-off setup (eval, tests)."""

    default_setup: Callable[[AgentConfig], CallSetup]
    prepared: dict[str, tuple[CallSetup, CallRecord]] = field(default_factory=dict)
    #: the media streams our webhook (or eval's harness) has answered for, not yet opened (calls/tickets.py)
    tickets: StreamTickets = field(default_factory=StreamTickets)
    #: the folder of tenant overlays (None: the packaged one); all are loaded at construction (start-up),
    #: where a broken file is logged and kept out (conversation/agent.py load_tenants)
    tenants_dir: Path | None = None
    _catalog: TenantCatalog = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._catalog = load_tenants(self.tenants_dir)

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
        """Whether `tenant_id` is a configured tenant that loads (for labels and ids that arrive in requests)."""
        return tenant_id in self._current().agents

    def agents(self) -> list[AgentConfig]:
        """Every tenant's agent that loads, by tenant id (broken ones were reported when loaded)."""
        catalog = self._current()
        return [catalog.agents[t] for t in sorted(catalog.agents)]

    def agent_for(self, started: CallStarted) -> AgentConfig:
        """The agent of the tenant named by id, else the one whose number is exactly the E.164 number dialled."""
        catalog = self._current()
        tenant = started.tenant_id or catalog.tenant_for_number(started.called)
        if not tenant:
            raise CallSetupError(f"no tenant answers {started.called or 'this number'!r} (numbers must match "
                                 f"exactly, in E.164 form like +14155550100); known: {sorted(catalog.by_number)}")
        if tenant in catalog.problems:
            raise CallSetupError(catalog.problems[tenant])
        if tenant not in catalog.agents:
            raise CallSetupError(str(UnknownTenant(tenant, sorted(catalog.agents))))
        return catalog.agents[tenant]

    def _current(self) -> TenantCatalog:
        """The loaded tenants; reloaded only when overlay files were added or removed since (a cheap listing)."""
        if list_tenants(self._catalog.folder) != self._catalog.tenant_ids:
            self._catalog = load_tenants(self.tenants_dir)
        return self._catalog
