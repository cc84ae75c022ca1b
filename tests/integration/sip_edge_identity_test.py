"""Nothing in an INVITE picks the tenant, a prepared setup or test behaviour: the dialled E.164 number decides."""
from __future__ import annotations

from typing import Any, AsyncIterator, cast

import pytest

from spotfunnel.api.sip_edge import SipEdge
from spotfunnel.business import e164
from spotfunnel.calls.directory import CallDirectory
from spotfunnel.transports.sip.peer import SipCallFailed, SipPeer
from spotfunnel.transports.sip.server import SipServer

from sip_support import EchoHandler, wait_until

SALON = "+14155550100"


@pytest.fixture
async def open_edge() -> AsyncIterator[SipEdge]:
    edge = SipEdge(cast(Any, None), CallDirectory(default_setup=cast(Any, None)), port=0)  # admission needs no engines
    await edge.start()
    yield edge
    await edge.stop()


async def refused_with(edge: SipEdge, called: str, headers: dict[str, str] | None = None) -> int:
    try:
        peer = SipPeer(edge.server.address, called=called, headers=headers)
        await peer.connect()
    except SipCallFailed as exc:
        return exc.status
    await peer.hangup()
    return 200


@pytest.mark.parametrize("called", ["4155550100", "0", "100", "+1415555010", "14155550100"])
async def test_only_the_exact_e164_number_reaches_a_tenant(open_edge: SipEdge, called: str) -> None:
    assert await refused_with(open_edge, called) == 404


async def test_the_tenant_header_from_an_open_port_is_ignored(open_edge: SipEdge) -> None:
    assert await refused_with(open_edge, "+19995550000", {"X-SpotFunnel-Tenant": "maple-street-salon"}) == 404


async def test_the_tenant_header_counts_from_a_trusted_trunk_only() -> None:
    edge = SipEdge(cast(Any, None), CallDirectory(default_setup=cast(Any, None)), port=0, allow=["127.0.0.0/8"])
    admitted: list[str] = []
    real_admit = edge._admit

    def admit(call: Any) -> tuple[int, str] | None:
        refusal = real_admit(call)
        admitted.append(call.params.get("tenant", ""))  # the tenant the call's setup will use
        return refusal

    edge.server.admit = admit
    await edge.start()
    try:
        assert await refused_with(edge, "+19995550000", {"X-SpotFunnel-Tenant": "no-such-tenant"}) == 404
        edge.server.on_call = EchoHandler()  # the call itself is not what is tested here
        assert await refused_with(edge, "+19995550000", {"X-SpotFunnel-Tenant": "maple-street-salon"}) == 200
        assert await refused_with(edge, SALON) == 200
        assert admitted == ["no-such-tenant", "maple-street-salon", "maple-street-salon"]
    finally:
        await edge.stop()


async def test_lockstep_and_setup_headers_switch_nothing_on() -> None:
    echo = EchoHandler()
    srv = SipServer(echo, port=0)
    await srv.start()
    try:
        peer = SipPeer(srv.address, called=SALON, headers={"X-SpotFunnel-Lockstep": "1", "X-SpotFunnel-Setup": "k",
                                                           "X-SpotFunnel-Caller": "+14155550144"})
        await peer.connect()
        assert await wait_until(lambda: bool(echo.calls))
        call = echo.calls[0]
        assert not call.lockstep and not call.codec.jitter.depth == 1  # a real-time call, jitter buffer and all
        assert call.started.params == {"caller": "+15550100001", "called": SALON}
        assert call.started.caller_id == "+15550100001"
        await peer.hangup()
    finally:
        await srv.stop()


def test_e164_numbers() -> None:
    assert e164("+1 (415) 555-0100") == "+14155550100"
    assert [e164(n) for n in ("4155550100", "0", "+0123456789", "+1415555010012345678", "")] == [None] * 5
