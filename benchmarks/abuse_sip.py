"""SIP attacks for benchmarks/abuse.py: BYE at once, impossible hosts and ports, RTP reflection to a third address."""
from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any

from abuse_server import SALON_NUMBER, Attack, Outcome, sip_answers_options

from spotfunnel.transports.sip.message import SipMessage
from spotfunnel.transports.sip.peer import SipCallFailed, SipPeer
from spotfunnel.transports.sip.udp import open_udp

__all__ = ["SIP_ATTACKS", "normal_sip_call"]

FRAME = bytes(640)
SETUP_TIMEOUT_S = 5.0


class CraftedSipPeer(SipPeer):
    """A SipPeer whose INVITE offer is rewritten (`offer`: SDP text in, SDP text out) before it is sent."""

    def __init__(self, *args: Any, offer: Callable[[str], str] = lambda sdp: sdp, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rewrite_offer = offer

    def _request(self, method: str, branch: str, **kwargs: Any) -> SipMessage:
        if method == "INVITE" and kwargs.get("body"):
            kwargs["body"] = self.rewrite_offer(kwargs["body"].decode()).encode()
        return super()._request(method, branch, **kwargs)


async def _place(peer: SipPeer) -> int:
    """Place the call; the final status (200 when answered, 0 when nothing answered)."""
    try:
        await peer.connect(timeout_s=SETUP_TIMEOUT_S)
    except SipCallFailed as exc:
        return exc.status
    return 200


async def _hang_up(peer: SipPeer) -> None:
    try:
        await asyncio.wait_for(peer.hangup(), SETUP_TIMEOUT_S + 1)
    except asyncio.TimeoutError:
        pass


async def normal_sip_call(server: tuple[str, int], seconds: float = 2.0) -> str | None:
    """A plain call: RTP in real time for `seconds`; None when the agent was heard, else what went wrong."""
    peer = SipPeer(server, called=SALON_NUMBER)
    status = await _place(peer)
    if status != 200:
        return f"a normal call got {status or 'no answer'}"
    loop = asyncio.get_running_loop()
    due = loop.time()
    for _ in range(int(seconds / 0.02)):
        await peer.exchange(FRAME)
        due += 0.02
        await asyncio.sleep(max(0.0, due - loop.time()))
    await _hang_up(peer)
    return None if peer.received else f"a normal call heard no agent RTP in {seconds:.0f} s"


async def immediate_byes(attack: Attack) -> Outcome:
    """Issue 8 #1 (SIP): INVITE, ACK, BYE within a few ms of our 200 OK, many times."""
    n = attack.scale(30, 10)
    out = Outcome(f"{n} x INVITE/ACK/BYE at once")
    refused: dict[int, int] = {}
    for _ in range(n):
        peer = SipPeer(attack.server.sip, called=SALON_NUMBER)
        status = await _place(peer)
        if status == 486:  # a seat that is just being freed: give it a moment, as a caller's redial would
            await asyncio.sleep(0.5)
            peer = SipPeer(attack.server.sip, called=SALON_NUMBER)
            status = await _place(peer)
        if status == 200:
            await _hang_up(peer)
        else:
            refused[status] = refused.get(status, 0) + 1
    out.notes.append(f"refused: {refused or 'none'}")
    out.check(not refused, f"calls refused {refused}: earlier hung-up calls still hold seats")
    return out


def _media_port(port: int) -> Callable[[str], str]:
    return lambda sdp: re.sub(r"^m=audio \d+", f"m=audio {port}", sdp, flags=re.M)


def _media_host(host: str) -> Callable[[str], str]:
    return lambda sdp: re.sub(r"^c=IN IP4 \S+", f"c=IN IP4 {host}", sdp, flags=re.M)


async def bad_addresses(attack: Attack) -> Outcome:
    """Issue 8 #2: an impossible Record-Route port, SDP port 65536, a bad SDP host, a bad Contact host."""
    variants: dict[str, dict[str, Any]] = {
        "Record-Route port 99999": {"headers": {"Record-Route": "<sip:127.0.0.1:99999;lr>"}},
        "SDP m=audio 65536": {"offer": _media_port(65536)},
        "SDP c=IN IP4 300.1.2.3": {"offer": _media_host("300.1.2.3")},
        "Record-Route host 'bad host!'": {"headers": {"Record-Route": "<sip:bad host!:5060;lr>"}},
    }
    out = Outcome("INVITEs with " + "; ".join(variants))
    for name, crafted in variants.items():
        peer = CraftedSipPeer(attack.server.sip, called=SALON_NUMBER, **crafted)
        status = await _place(peer)
        out.notes.append(f"{name}: {status or 'no answer'}")
        out.check(400 <= status < 500, f"{name} got {status or 'no answer'}, not a 4xx naming the bad address")
        if status == 200:
            await _hang_up(peer)
    out.check(await sip_answers_options(attack.server.sip), "SIP stopped answering OPTIONS after the bad INVITEs")
    problem = await normal_sip_call(attack.server.sip)
    out.notes.append(f"then a normal call: {problem or 'agent heard'}")
    out.check(problem is None, f"after the bad INVITEs {problem}")
    return out


#: another loopback address (all of 127/8 is loopback on Linux): a host other than the one signalling,
#: so this is a third party, not the caller's own machine (whose host an SBC may rightly trust)
VICTIM_HOST = "127.0.0.2"


async def rtp_reflection(attack: Attack) -> Outcome:
    """Issue 8 #3: an INVITE from 127.0.0.1 whose SDP names a port on 127.0.0.2 we listen on; we never send RTP."""
    listen_s = attack.seconds(4.0, 2.5)
    out = Outcome(f"an INVITE naming a third address, no RTP sent, {listen_s:.1f} s")
    reflected = [0]
    victim = await open_udp(VICTIM_HOST, 0, lambda data, _addr: reflected.__setitem__(0, reflected[0] + len(data)),
                            "abuse-victim")
    try:
        port = _media_port(victim.address[1])
        peer = CraftedSipPeer(attack.server.sip, called=SALON_NUMBER,
                              offer=lambda sdp: _media_host(VICTIM_HOST)(port(sdp)))
        status = await _place(peer)
        if status == 200:
            await asyncio.sleep(listen_s)
            await _hang_up(peer)
    finally:
        victim.close()
    out.sent = f"an INVITE (answered {status or 'nothing'}) naming {VICTIM_HOST}, no RTP sent, {listen_s:.1f} s"
    out.notes.append(f"{reflected[0]} bytes reached {VICTIM_HOST}")
    out.check(reflected[0] == 0, f"{reflected[0]} bytes of agent RTP sent to an address that never sent us any")
    return out


SIP_ATTACKS = {
    "sip-bye-at-once": immediate_byes,
    "sip-bad-addresses": bad_addresses,
    "sip-rtp-reflection": rtp_reflection,
}
