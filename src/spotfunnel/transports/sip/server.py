"""The SIP user agent server over asyncio UDP: INVITE/ACK/BYE/CANCEL/OPTIONS/INFO, retransmissions, admission."""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from spotfunnel.transports.base import CallStarted
from spotfunnel.transports.sip.call import SipCallTransport
from spotfunnel.transports.sip.client import T1, T2, TIMER_B, DialogControl, DialogRequests
from spotfunnel.transports.sip.dialog import SipDialog, call_params, new_tag
from spotfunnel.transports.sip.media import SipMediaCodec
from spotfunnel.transports.sip.message import (
    SipMessage, SipParseError, check_request, header_param, parse_message, response_to,
)
from spotfunnel.transports.sip.salvage import salvage_request
from spotfunnel.transports.sip.sdp import NoCommonCodec, SdpError, build_answer, negotiate, parse_sdp
from spotfunnel.transports.sip.udp import UdpSocket, open_udp

__all__ = ["IncomingCall", "SipServer"]

log = logging.getLogger(__name__)

Address = tuple[str, int]
ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, NOTIFY"
RESPONSE_CACHE_S = 32.0


@dataclass(frozen=True)
class IncomingCall:
    """What admission sees of a new INVITE."""

    call_id: str
    caller: str
    called: str
    params: dict[str, str]
    source: Address


Admission = Callable[[IncomingCall], "tuple[int, str] | None"]
OnCall = Callable[[SipCallTransport], Awaitable[Any]]


class SipServer:
    """Answers calls on one UDP port and hands each admitted call to `on_call(transport)`.

    A new INVITE is refused with 486 Busy Here when `draining` is set or `max_calls` calls are up
    (ringing ones included); `admit(call)` may refuse others with its own (status, reason). The
    answer comes after `answer_delay_s` of ringing (a CANCEL then gets 487). `advertise_host` is
    the address put in SDP and Contact (default: the bound host).
    """

    def __init__(self, on_call: OnCall, *, host: str = "127.0.0.1", port: int = 5060,
                 advertise_host: str | None = None, max_calls: int | None = None, admit: Admission | None = None,
                 answer_delay_s: float = 0.0, codecs: tuple[str, ...] = ("PCMU", "PCMA"),
                 user_agent: str = "SpotFunnel") -> None:
        self.on_call = on_call
        self.host, self.port = host, port
        self.advertise_host = advertise_host or (host if host not in ("0.0.0.0", "::") else "127.0.0.1")
        self.max_calls, self.admit, self.answer_delay_s = max_calls, admit, answer_delay_s
        self.codecs, self.user_agent = codecs, user_agent
        self.draining = False
        self.stats: dict[str, int] = {"malformed": 0, "bad_request": 0, "retransmissions": 0, "busy": 0}
        self._socket: UdpSocket | None = None
        self._dialogs: dict[str, SipDialog] = {}
        self._by_branch: dict[str, SipDialog] = {}
        self._responses: dict[tuple[str, str], tuple[bytes, Address, float]] = {}
        self._client = DialogRequests(self._send, self._finish)
        self._tasks: set[asyncio.Task[Any]] = set()

    # ---- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        self._socket = await open_udp(self.host, self.port, self._on_datagram, "sip")
        self.port = self._socket.address[1]
        log.info("SIP server listening on udp %s:%d", self.host, self.port)

    @property
    def address(self) -> Address:
        return self.advertise_host, self.port

    @property
    def active_calls(self) -> int:
        """Calls ringing or up."""
        return sum(1 for d in self._dialogs.values() if not d.ended)

    async def stop(self) -> None:
        """Refuse new calls, end the ones up with BYE, close every socket."""
        self.draining = True
        for dialog in list(self._dialogs.values()):
            if dialog.transport is not None and not dialog.ended:
                dialog.transport.end("server stopping")
                self._spawn(self._client.bye(dialog))
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=2.0)
        for task in list(self._tasks):
            task.cancel()
        for dialog in list(self._dialogs.values()):
            self._close_media(dialog)
        if self._socket is not None:
            self._socket.close()

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ---- datagrams -------------------------------------------------------------------------

    def _on_datagram(self, data: bytes, addr: Address) -> None:
        if not data.strip():
            return  # CRLF keep-alive (RFC 5626)
        try:
            msg = parse_message(data)
            if msg.is_request:
                check_request(msg)
        except SipParseError as exc:
            self._malformed(data, addr, exc)
            return
        if not msg.is_request:
            self._client.on_response(msg)
            return
        assert msg.method is not None
        key = (msg.branch, msg.method)
        cached = self._responses.get(key)
        if cached is not None and msg.method != "ACK":
            self.stats["retransmissions"] += 1
            self._send(cached[0], addr)  # a retransmitted request gets the same answer again
            return
        handler = {"INVITE": self._on_invite, "ACK": self._on_ack, "BYE": self._on_bye, "CANCEL": self._on_cancel,
                   "OPTIONS": self._on_options, "INFO": self._on_info, "NOTIFY": self._on_notify}.get(msg.method)
        if handler is None:
            self._respond(msg, addr, 405, "Method Not Allowed", headers=[("Allow", ALLOW)])
            return
        handler(msg, addr)

    def _malformed(self, data: bytes, addr: Address, exc: SipParseError) -> None:
        """Answer 400 when enough of the request survives to address a response; otherwise drop and log."""
        self.stats["malformed"] += 1
        request = salvage_request(data)
        if request is None or request.method == "ACK":
            log.info("SIP: unreadable datagram from %s:%d ignored: %s", addr[0], addr[1], exc)
            return
        self.stats["bad_request"] += 1
        log.info("SIP: bad request from %s:%d answered 400: %s", addr[0], addr[1], exc)
        warning = str(exc).replace('"', "'")[:120]
        self._respond(request, addr, 400, "Bad Request", headers=[("Warning", f'399 spotfunnel "{warning}"')])

    def _send(self, data: bytes, addr: Address) -> None:
        if self._socket is not None:
            self._socket.send(data, addr)

    def _respond(self, request: SipMessage, addr: Address, status: int, reason: str, *, to_tag: str | None = None,
                 headers: list[tuple[str, str]] | None = None, body: bytes = b"") -> SipMessage:
        extra = [("Server", self.user_agent)] + (headers or [])
        response = response_to(request, status, reason, to_tag=to_tag, headers=extra, body=body)
        data = response.serialise()
        now = time.monotonic()
        if request.method != "ACK":
            self._responses[(request.branch, request.method or "")] = (data, addr, now)
        if len(self._responses) > 512:
            self._responses = {k: v for k, v in self._responses.items() if now - v[2] < RESPONSE_CACHE_S}
        self._send(data, addr)
        return response

    # ---- INVITE ----------------------------------------------------------------------------

    def _on_invite(self, msg: SipMessage, addr: Address) -> None:
        to_tag = header_param(msg.get("To") or "", "tag")
        if to_tag is not None:
            dialog = self._dialogs.get(msg.call_id)
            if dialog is None or dialog.local_tag != to_tag or dialog.ended:
                self._respond(msg, addr, 481, "Call/Transaction Does Not Exist")
            else:
                self._reinvite(dialog, msg, addr)
            return
        if msg.call_id in self._dialogs:
            return  # same call, new branch: a forked or looped copy; the first one is being answered
        self._respond(msg, addr, 100, "Trying")
        self._spawn(self._answer(msg, addr))

    def _refusal(self, msg: SipMessage, addr: Address) -> tuple[int, str, list[tuple[str, str]]] | None:
        params = call_params(msg)
        if self.draining or (self.max_calls is not None and self.active_calls >= self.max_calls):
            self.stats["busy"] += 1
            why = "draining" if self.draining else f"at capacity ({self.active_calls}/{self.max_calls} calls)"
            log.info("SIP: INVITE %s refused 486: server %s", msg.call_id, why)
            return 486, "Busy Here", [("Warning", f'399 spotfunnel "server {why}"')]
        if self.admit is not None:
            refused = self.admit(IncomingCall(msg.call_id, params["caller"], params["called"], params, addr))
            if refused is not None:
                log.info("SIP: INVITE %s refused %d %s", msg.call_id, *refused)
                return refused[0], refused[1], []
        return None

    def _negotiate(self, msg: SipMessage) -> tuple[Any, str | None]:
        ctype = (msg.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != "application/sdp" or not msg.body:
            return None, "the INVITE must carry an SDP offer (Content-Type: application/sdp)"
        try:
            return negotiate(parse_sdp(msg.body.decode("utf-8")), self.codecs), None
        except UnicodeDecodeError:
            return None, "the SDP body is not UTF-8 text"
        except (SdpError, NoCommonCodec) as exc:
            return None, str(exc)

    async def _answer(self, msg: SipMessage, addr: Address) -> None:
        refusal = self._refusal(msg, addr)
        if refusal is not None:
            self._respond(msg, addr, refusal[0], refusal[1], headers=refusal[2])
            return
        agreed, problem = self._negotiate(msg)
        if agreed is None:
            log.info("SIP: INVITE %s refused 488: %s", msg.call_id, problem)
            text = (problem or "").replace('"', "'")[:160]
            self._respond(msg, addr, 488, "Not Acceptable Here", headers=[("Warning", f'305 spotfunnel "{text}"')])
            return
        host = self.advertise_host
        dialog = SipDialog(invite=msg, source=addr, local_tag=new_tag(), agreed=agreed,
                           local_contact=f"<sip:spotfunnel@{host}:{self.port}>", via_host=f"{host}:{self.port}")
        self._dialogs[msg.call_id] = dialog
        self._by_branch[msg.branch] = dialog
        try:
            await self._ring_and_answer(dialog, addr)
        except Exception:
            log.exception("SIP: answering INVITE %s failed", msg.call_id)
            self._finish(dialog)
            self._respond(msg, addr, 500, "Server Internal Error")

    async def _ring_and_answer(self, dialog: SipDialog, addr: Address) -> None:
        msg, agreed = dialog.invite, dialog.agreed
        assert agreed is not None
        params = call_params(msg)
        lockstep = params.get("lockstep") == "1"
        codec = SipMediaCodec(agreed, realtime=not lockstep, label=msg.call_id)
        started = CallStarted(call_id=msg.call_id, caller_id=params["caller"], called=params["called"],
                              tenant_id=params.get("tenant") or None, params=params)
        remote = [(agreed.remote_host, agreed.remote_port)]
        trusted_hosts = {agreed.remote_host, addr[0]}
        transport: SipCallTransport | None = None

        def on_media(data: bytes, source: Address) -> None:
            # Symmetric RTP (RFC 4961): a caller behind NAT sends from another address than its SDP
            # says; answer where its RTP comes from, but only from the hosts of its SDP or signalling.
            if source != remote[0] and source[0] in trusted_hosts and data[:1] and data[0] >> 6 == 2:
                log.info("SIP: call %s: RTP comes from %s:%d, not %s:%d; sending there", msg.call_id,
                         *source, *remote[0])
                remote[0] = source
            if transport is not None:
                transport.on_rtp(data)

        dialog.media = await open_udp(self.host, 0, on_media, f"rtp {msg.call_id}")
        media_socket = dialog.media
        transport = SipCallTransport(started, codec, lambda pkt: media_socket.send(pkt, remote[0]),
                                     DialogControl(self._client, dialog, self._spawn), lockstep=lockstep)
        self._respond(msg, addr, 180, "Ringing", to_tag=dialog.local_tag)
        if self.answer_delay_s > 0:
            await asyncio.sleep(self.answer_delay_s)
        if dialog.cancelled or dialog.ended:
            return
        sdp = build_answer(agreed, self.advertise_host, media_socket.address[1]).encode()
        headers = [("Contact", dialog.local_contact), ("Allow", ALLOW), ("Supported", "replaces"),
                   ("Content-Type", "application/sdp")]
        ok = self._respond(msg, addr, 200, "OK", to_tag=dialog.local_tag, headers=headers, body=sdp)
        dialog.answered, dialog.transport = True, transport
        log.info("SIP: call %s answered (%s/%d ms, dtmf pt %s, rtp to %s:%d, lockstep %s)", msg.call_id,
                 agreed.codec, agreed.ptime, agreed.dtmf_payload_type, *remote[0], lockstep)
        self._spawn(self._retransmit_ok(dialog, ok.serialise(), addr))
        transport.start()
        self._spawn(self._run_call(dialog, transport))

    async def _run_call(self, dialog: SipDialog, transport: SipCallTransport) -> None:
        try:
            await self.on_call(transport)
        except Exception:
            log.exception("SIP: the call handler of %s failed", dialog.call_id)
        finally:
            if not dialog.ended:
                transport.end("call handler finished")
                await self._client.bye(dialog)
            self._finish(dialog)

    async def _retransmit_ok(self, dialog: SipDialog, data: bytes, addr: Address) -> None:
        """Resend the 200 OK until the ACK comes (RFC 3261 13.3.1.4); without one, end the call."""
        interval, waited = T1, 0.0
        while not dialog.acked.is_set() and not dialog.ended:
            try:
                await asyncio.wait_for(dialog.acked.wait(), interval)
                return
            except asyncio.TimeoutError:
                waited += interval
            if waited >= TIMER_B:
                log.warning("SIP: no ACK for the 200 OK of %s in %.0f s; ending the call", dialog.call_id, waited)
                if dialog.transport is not None:
                    dialog.transport.end("no ACK from the caller")
                await self._client.bye(dialog)
                return
            self._send(data, addr)
            interval = min(interval * 2, T2)

    def _reinvite(self, dialog: SipDialog, msg: SipMessage, addr: Address) -> None:
        """A re-INVITE (hold, refresh): keep the call and its codec, answer with the same SDP."""
        self._respond(msg, addr, 100, "Trying")
        assert dialog.agreed is not None and dialog.media is not None
        sdp = build_answer(dialog.agreed, self.advertise_host, dialog.media.address[1]).encode()
        self._respond(msg, addr, 200, "OK", to_tag=dialog.local_tag,
                      headers=[("Contact", dialog.local_contact), ("Content-Type", "application/sdp")], body=sdp)

    # ---- other requests --------------------------------------------------------------------

    def _on_ack(self, msg: SipMessage, addr: Address) -> None:
        dialog = self._dialogs.get(msg.call_id)
        if dialog is not None:
            dialog.acked.set()

    def _on_bye(self, msg: SipMessage, addr: Address) -> None:
        dialog = self._dialogs.get(msg.call_id)
        if dialog is None:
            self._respond(msg, addr, 481, "Call/Transaction Does Not Exist")
            return
        self._respond(msg, addr, 200, "OK")
        dialog.acked.set()  # a BYE implies the caller had the 200 OK
        if dialog.transport is not None:
            dialog.transport.end("caller hung up")
        self._finish(dialog)

    def _on_cancel(self, msg: SipMessage, addr: Address) -> None:
        dialog = self._by_branch.get(msg.branch)
        if dialog is None or dialog.call_id != msg.call_id:
            self._respond(msg, addr, 481, "Call/Transaction Does Not Exist")
            return
        self._respond(msg, addr, 200, "OK")
        if dialog.answered or dialog.ended:
            return  # too late: the call is up, the caller must send BYE
        dialog.cancelled = True
        self._respond(dialog.invite, dialog.source, 487, "Request Terminated", to_tag=dialog.local_tag)
        log.info("SIP: call %s cancelled by the caller while ringing", dialog.call_id)
        self._finish(dialog)

    def _on_options(self, msg: SipMessage, addr: Address) -> None:
        self._respond(msg, addr, 200, "OK", headers=[("Allow", ALLOW), ("Accept", "application/sdp"),
                                                    ("Supported", "replaces")])

    def _on_info(self, msg: SipMessage, addr: Address) -> None:
        """SIP INFO DTMF (application/dtmf-relay 'Signal=5'), which some phones send instead of RFC 4733."""
        dialog = self._dialogs.get(msg.call_id)
        if dialog is None or dialog.ended:
            self._respond(msg, addr, 481, "Call/Transaction Does Not Exist")
            return
        self._respond(msg, addr, 200, "OK")
        if "dtmf" in (msg.get("Content-Type") or "").lower() and dialog.transport is not None:
            for line in msg.body.decode("utf-8", "replace").splitlines():
                key, _, value = line.partition("=")
                if key.strip().lower() == "signal" and value.strip():
                    dialog.transport.on_dtmf(value.strip()[0])

    def _on_notify(self, msg: SipMessage, addr: Address) -> None:
        """Progress of a transfer we asked for (a sipfrag like 'SIP/2.0 200 OK'); logged."""
        self._respond(msg, addr, 200, "OK")
        log.info("SIP: transfer progress on %s: %s", msg.call_id, msg.body.decode("utf-8", "replace").strip()[:60])

    def _finish(self, dialog: SipDialog) -> None:
        dialog.ended = True
        self._close_media(dialog)
        self._dialogs.pop(dialog.call_id, None)
        self._by_branch.pop(dialog.branch, None)

    def _close_media(self, dialog: SipDialog) -> None:
        if dialog.media is not None:
            dialog.media.close()
            dialog.media = None
