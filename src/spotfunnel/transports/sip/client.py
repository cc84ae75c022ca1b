"""Requests the UAS sends inside a dialog (BYE, REFER), retransmitted over UDP until a final response."""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable

from spotfunnel.transports.sip.dialog import SipDialog, new_branch
from spotfunnel.transports.sip.message import SipMessage
from spotfunnel.transports.sip.retransmit import T1, T2, TIMER_B, retransmit

__all__ = ["DialogControl", "DialogRequests", "T1", "T2", "TIMER_B"]

log = logging.getLogger(__name__)

Address = tuple[str, int]


class DialogRequests:
    """Client transactions of the server: send, retransmit, match responses by Via branch."""

    def __init__(self, send: Callable[[bytes, Address], None], finish: Callable[[SipDialog], None]) -> None:
        self._send = send
        self._finish = finish
        self._pending: dict[str, asyncio.Future[SipMessage]] = {}

    def on_response(self, msg: SipMessage) -> None:
        """A response arrived; a final one completes its transaction (provisional ones are ignored)."""
        future = self._pending.get(msg.branch)
        if future is not None and not future.done() and (msg.status or 0) >= 200:
            future.set_result(msg)

    async def request(self, dialog: SipDialog, method: str, headers: list[tuple[str, str]] | None = None,
                      timeout_s: float = 8.0) -> SipMessage | None:
        """Send a request in the dialog, retransmitting (T1 doubling to T2) until a final response."""
        branch = new_branch()
        data = dialog.request(method, branch, headers).serialise()
        future: asyncio.Future[SipMessage] = asyncio.get_running_loop().create_future()
        self._pending[branch] = future
        try:
            response = await retransmit(lambda: self._send(data, dialog.destination), future, timeout_s)
            if response is None:
                log.info("SIP: no response to %s in call %s after %.0f s", method, dialog.call_id, timeout_s)
            return response
        finally:
            self._pending.pop(branch, None)

    async def bye(self, dialog: SipDialog) -> None:
        """End the dialog from our side (once; after the caller's ACK, or 2 s without one)."""
        if dialog.ended:
            return
        dialog.ended = True
        try:
            if not dialog.acked.is_set():
                # RFC 3261 15: a UAS may not BYE before the ACK; wait a moment for it
                try:
                    await asyncio.wait_for(dialog.acked.wait(), 2.0)
                except asyncio.TimeoutError:
                    pass
            response = await self.request(dialog, "BYE")
            log.info("SIP: BYE for %s answered %s", dialog.call_id, response.status if response else "never")
        finally:  # whatever the BYE met, the dialog is forgotten: no entry outlives its call
            self._finish(dialog)

    async def refer(self, dialog: SipDialog, to: str) -> bool:
        """Blind transfer: REFER the caller to `to`; True when the caller's side accepted (2xx)."""
        target = dialog.transfer_uri(to)
        response = await self.request(dialog, "REFER", [("Refer-To", f"<{target}>"),
                                                        ("Referred-By", dialog.local_contact)], timeout_s=4.0)
        status = response.status if response is not None else None
        log.info("SIP: REFER of %s to %s answered %s", dialog.call_id, target, status or "never")
        return status is not None and 200 <= status < 300


class DialogControl:
    """A call transport's handle on its dialog (BYE, REFER) without seeing the whole server."""

    def __init__(self, requests: DialogRequests, dialog: SipDialog,
                 spawn: Callable[[Awaitable[Any]], Any]) -> None:
        self._requests, self._dialog, self._spawn = requests, dialog, spawn

    async def bye(self) -> None:
        if not self._dialog.ended:
            self._spawn(self._requests.bye(self._dialog))

    async def refer(self, to: str) -> bool:
        if self._dialog.ended:
            return False
        return await self._requests.refer(self._dialog, to)
