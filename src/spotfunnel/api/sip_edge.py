"""The SIP edge of the server: a SIP UAS beside the HTTP app whose admitted calls run through `run_call`."""
from __future__ import annotations

import contextlib
import ipaddress
from typing import Any, AsyncIterator, Sequence

import structlog

from spotfunnel.api.security import is_loopback_host
from spotfunnel.business import e164
from spotfunnel.calls.call import CallRecord, CallSetup, CallSetupError, run_call
from spotfunnel.calls.directory import CallDirectory
from spotfunnel.calls.services import CallServices
from spotfunnel.clock import SystemClock
from spotfunnel.ops.capacity import CallCapacity
from spotfunnel.transports.base import CallStarted
from spotfunnel.transports.sip.call import SipCallTransport
from spotfunnel.transports.sip.server import IncomingCall, SipServer

__all__ = ["SipEdge", "SipHarness", "loopback_sip", "parse_networks", "serve_with_sip"]

log = structlog.get_logger(__name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

def parse_networks(specs: Sequence[str]) -> list[Network]:
    """`10.0.0.0/8`, `203.0.113.7` or `2001:db8::/32` as networks; ValueError naming a bad one."""
    networks = []
    for spec in specs:
        try:
            networks.append(ipaddress.ip_network(spec.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{spec!r} is not an IP address or network; give one like 203.0.113.7 or "
                             "10.0.0.0/8") from None
    return networks


class SipEdge:
    """Owns the SIP server for `spotfunnel serve` (and the loopback one of `eval --transport sip`).

    A call is admitted when it comes from an allowed network (`allow`, 403 otherwise; None: any),
    the server has room (`max_calls`, 486 otherwise) and a tenant's number is exactly the E.164
    number dialled (404 otherwise). Only a source inside an explicit `allow` list may instead name the
    tenant with X-SpotFunnel-Tenant (a PBX sharing one trunk); nothing else in an INVITE selects a
    setup or test behaviour: eval's harness announces its own calls in process (`expect`). `state`
    (the app's ServerState) counts SIP calls in /healthz's active_calls.
    """

    def __init__(self, services: CallServices, directory: CallDirectory, *, host: str = "127.0.0.1",
                 port: int = 5060, advertise_host: str | None = None, max_calls: int | None = None,
                 allow: Sequence[str] | None = None, state: Any = None,
                 capacity: CallCapacity | None = None) -> None:
        self.services, self.directory, self.state = services, directory, state
        self.capacity = capacity or CallCapacity.from_env()
        self._running = 0  # SIP calls inside run_call (counted in state.active_calls too)
        self.allow = parse_networks(allow) if allow else None
        self.server = SipServer(self._on_call, host=host, port=port, advertise_host=advertise_host,
                                max_calls=max_calls, admit=self._admit, trusts=self._trusted)

    async def start(self) -> None:
        await self.server.start()
        log.info("sip.listening", host=self.server.host, port=self.server.port, max_calls=self.server.max_calls,
                 advertised=self.server.advertise_host, allow=[str(n) for n in self.allow or []] or "any")
        if self.allow is None and not is_loopback_host(self.server.host):
            log.warning("sip.open_to_any_host", detail="any host that reaches this port can place calls; "
                        "set --sip-allow to your SIP trunk's addresses")

    def _allowed(self, source: str) -> bool:
        if self.allow is None:
            return True
        try:
            address = ipaddress.ip_address(source)
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.allow)

    def _trusted(self, source: str) -> bool:
        """A source may name the tenant only when an allow list exists and holds it (an open port trusts no one)."""
        return self.allow is not None and self._allowed(source)

    def expect(self, call_id: str, *, setup_key: str, lockstep: bool) -> None:
        """In process only: the harness's own call with this Call-ID gets that prepared setup (and lockstep)."""
        self.server.expect_call(call_id, lockstep=lockstep, params={"setup": setup_key})

    async def health(self) -> dict[str, Any]:
        """The SIP socket open and answering OPTIONS, and its calls (for /healthz)."""
        return await self.server.health()

    async def stop(self) -> None:
        await self.server.stop()

    @property
    def url(self) -> str:
        host, port = self.server.address
        return f"sip:{host}:{port}"

    def _admit(self, call: IncomingCall) -> tuple[int, str] | None:
        if not self._allowed(call.source[0]):
            log.warning("sip.refused_source", source=call.source[0], called=call.called, call_id=call.call_id)
            return 403, "Forbidden"
        if call.params.get("setup"):
            return None  # announced in process by the harness (expect): never from the network
        if not self._room_in_process():
            return 486, "Busy Here"
        tenant = call.params.get("tenant")  # only present when the source is trusted (call_params)
        if tenant:
            if self.directory.knows(tenant):
                return None
            log.warning("sip.unknown_tenant", tenant=tenant, call_id=call.call_id)
            return 404, "Not Found"
        return self._route_by_number(call)

    def _room_in_process(self) -> bool:
        """The process-wide limit (SPOTFUNNEL_MAX_CALLS) over every edge: the other edges' calls plus
        this server's seats (ringing, up, or winding down after a BYE)."""
        if self.state is None:
            return True
        others = max(0, self.state.active_calls - self._running)
        if self.capacity.has_room(others + self.server.active_calls):
            return True
        log.info("sip.at_capacity", detail=self.capacity.describe(others + self.server.active_calls))
        return False

    def _route_by_number(self, call: IncomingCall) -> tuple[int, str] | None:
        """The tenant whose number is exactly the E.164 number dialled; it is pinned for the call's setup."""
        called = e164(call.called)
        if called is None:
            log.warning("sip.not_e164", called=call.called, call_id=call.call_id,
                        detail="the Request-URI's user part must be an E.164 number like +14155550100")
            return 404, "Not Found"
        try:
            agent = self.directory.agent_for(CallStarted(call_id=call.call_id, caller_id=call.caller, called=called))
        except CallSetupError as exc:
            log.warning("sip.unknown_number", called=called, reason=str(exc))
            return 404, "Not Found"
        call.params["tenant"] = agent.profile.id  # the call's setup uses exactly the tenant admitted here
        return None

    async def _on_call(self, transport: SipCallTransport) -> None:
        self._running += 1
        if self.state is not None:
            self.state.active_calls += 1
        try:
            await run_call(transport, self.services, self.directory.resolve, self.directory.record_for)
        finally:
            self._running -= 1
            if self.state is not None:
                self.state.active_calls -= 1


class SipHarness:
    """What eval's harness holds of its in-process SIP edge: prepare a setup, then announce the Call-ID that dials it."""

    def __init__(self, directory: CallDirectory, edge: SipEdge) -> None:
        self.directory, self.edge = directory, edge

    def prepare(self, key: str, setup: CallSetup, record: CallRecord) -> None:
        self.directory.prepare(key, setup, record)

    def expect(self, call_id: str, *, setup_key: str, lockstep: bool) -> None:
        self.edge.expect(call_id, setup_key=setup_key, lockstep=lockstep)


@contextlib.asynccontextmanager
async def loopback_sip(services: CallServices) -> AsyncIterator[tuple[str, SipHarness]]:
    """A SIP edge on 127.0.0.1 (random port) in this process: its URL and the harness's handle (eval, tests)."""
    from spotfunnel.store.db import Database

    db = Database.memory()  # migrated: calls routed by number keep their call rows and reports here
    directory = CallDirectory(default_setup=lambda agent: CallSetup(agent=agent, db=db, clock=SystemClock()))
    edge = SipEdge(services, directory, host="127.0.0.1", port=0)
    await edge.start()
    try:
        yield edge.url, SipHarness(directory, edge)
    finally:
        await edge.stop()


async def serve_with_sip(app: Any, *, host: str, port: int, log_level: str, sip_port: int,
                         sip_max_calls: int | None, sip_advertise_host: str | None = None,
                         sip_allow: Sequence[str] | None = None) -> None:
    """`spotfunnel serve --sip-port`: uvicorn and the SIP edge in one event loop.

    The SIP port opens once the app has started (models loaded), so the first call is not slow,
    and closes (BYE to the calls still up) when uvicorn stops. `sip_advertise_host` is the address
    callers are told to send to (SDP, Contact): the public one when behind NAT.
    """
    import asyncio

    import uvicorn

    from spotfunnel.api.limits import server_limits

    state = app.state.spotfunnel
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level=log_level,
                                           **server_limits()))
    edge = SipEdge(state.services, state.directory, host=host, port=sip_port, advertise_host=sip_advertise_host,
                   max_calls=sip_max_calls, allow=sip_allow, state=state)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            return
        await asyncio.sleep(0.05)
    await edge.start()
    app.state.sip_edge = edge  # /healthz reports it
    try:
        await task
    finally:
        await edge.stop()
