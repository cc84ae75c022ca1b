"""Is the SIP port answering? One OPTIONS over loopback (or the bound address) and its 200, within a deadline."""
from __future__ import annotations

import asyncio
import uuid
from typing import Callable

from spotfunnel.transports.sip.dialog import new_branch
from spotfunnel.transports.sip.message import SipParseError, parse_message
from spotfunnel.transports.sip.udp import open_udp

__all__ = ["probe_target", "probe_options"]

Address = tuple[str, int]


def probe_target(host: str, port: int) -> Address:
    """Where a local probe reaches a server bound to `host`: loopback for a wildcard, else the host itself."""
    if host in ("0.0.0.0", ""):
        return "127.0.0.1", port
    if host == "::":
        return "::1", port
    return host, port


async def probe_options(target: Address, timeout_s: float, on_open: Callable[[Address], None] | None = None,
                        on_close: Callable[[Address], None] | None = None) -> bool:
    """Send one OPTIONS from a fresh socket and wait at most `timeout_s` for a 200 to it.

    `on_open(address)` / `on_close(address)` tell the server which local address is its own probe,
    so a probe is answered even while junk from the same host is being ignored.
    """
    loop = asyncio.get_running_loop()
    answered: asyncio.Future[bool] = loop.create_future()
    call_id = f"healthz-{uuid.uuid4().hex}"

    def on_reply(data: bytes, _addr: Address) -> None:
        try:
            msg = parse_message(data)
        except SipParseError:
            return
        if msg.call_id == call_id and msg.status == 200 and not answered.done():
            answered.set_result(True)

    local_host = "::1" if ":" in target[0] else "127.0.0.1"
    if target[0] not in ("127.0.0.1", "::1"):
        local_host = target[0]  # bound to one address: probe from it, the route is certain
    sock = await open_udp(local_host, 0, on_reply, "sip-healthz")
    local = sock.address
    if on_open is not None:
        on_open(local)
    host = f"[{target[0]}]" if ":" in target[0] else target[0]
    me = f"[{local[0]}]" if ":" in local[0] else local[0]
    options = (f"OPTIONS sip:healthz@{host}:{target[1]} SIP/2.0\r\n"
               f"Via: SIP/2.0/UDP {me}:{local[1]};branch={new_branch()}\r\nMax-Forwards: 70\r\n"
               f"From: <sip:healthz@{me}:{local[1]}>;tag={uuid.uuid4().hex[:8]}\r\n"
               f"To: <sip:healthz@{host}:{target[1]}>\r\nCall-ID: {call_id}\r\nCSeq: 1 OPTIONS\r\n"
               "Content-Length: 0\r\n\r\n").encode()
    try:
        if not sock.send(options, target):
            return False
        try:
            return await asyncio.wait_for(answered, timeout_s)
        except asyncio.TimeoutError:
            return False
    finally:
        sock.close()
        if on_close is not None:
            on_close(local)
