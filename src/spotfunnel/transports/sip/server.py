"""The SIP user agent server over asyncio UDP: INVITE/ACK/BYE/CANCEL/OPTIONS/INFO, retransmissions, admission."""
from __future__ import annotations

import asyncio
import logging
import socket
from collections import OrderedDict
from typing import Any, Awaitable, Callable, Mapping

from spotfunnel.transports.base import CallStarted
from spotfunnel.transports.sip.admission import Admission, IncomingCall, Refusal, negotiate_request
from spotfunnel.transports.sip.call import SipCallTransport
from spotfunnel.transports.sip.client import DialogControl, DialogRequests
from spotfunnel.transports.sip.dialog import SipDialog, call_params, new_tag
from spotfunnel.transports.sip.in_dialog import ALLOW, InDialogHandlers
from spotfunnel.transports.sip.health import probe_options, probe_target
from spotfunnel.transports.sip.junk import JunkGuard
from spotfunnel.transports.sip.media import SipMediaCodec
from spotfunnel.transports.sip.message import (
    SipMessage, SipParseError, check_request, header_param, parse_message, response_to,
)
from spotfunnel.transports.sip.netaddr import ip_literal
from spotfunnel.transports.sip.responses import ResponseCache
from spotfunnel.transports.sip.retransmit import TIMER_B, retransmit
from spotfunnel.transports.sip.rtp_path import RtpPath
from spotfunnel.transports.sip.salvage import salvage_request
from spotfunnel.transports.sip.sdp import AgreedMedia, build_answer
from spotfunnel.transports.sip.udp import WILDCARD_HOSTS, UdpSocket, open_udp, outbound_host

__all__ = ["IncomingCall", "SipServer"]

log = logging.getLogger(__name__)

Address = tuple[str, int]
#: dialogs held at once (ringing, up, or being refused): past it a new INVITE gets 503 before any state or
#: RTP port is made for it, so an INVITE flood cannot exhaust memory or file descriptors
MAX_DIALOGS = 1024
#: Call-IDs a harness in this process announced (expect_call) and has not dialled yet
MAX_EXPECTED = 1024
ROUTE_LOOKUP_S = 2.0  # deadline for resolving a Record-Route host name


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


OnCall = Callable[[SipCallTransport], Awaitable[Any]]


class SipServer(InDialogHandlers):
    """Answers calls on one UDP port and hands each admitted call to `on_call(transport)`.

    Every host and port from the network is checked on arrival (a bad one gets 400 with the reason);
    a failure inside one dialog (a handler, a timer, a retransmission, a BYE) is caught, logged,
    counted (`stats["dialog_errors"]`) and ends that dialog only: the shared socket stays up.
    `trusts(source_host)` says whether a source may name the tenant (X-SpotFunnel-Tenant).

    A new INVITE is refused with 486 Busy Here when `draining` is set or `max_calls` calls are up
    (ringing ones included); `admit(call)` may refuse others with its own (status, reason). The
    answer comes after `answer_delay_s` of ringing (a CANCEL then gets 487). `advertise_host` is
    the address put in SDP and Contact (default: the bound host; bound to a wildcard, the address of
    the interface that routes outward, since 0.0.0.0 or 127.0.0.1 would be useless to a remote caller).
    """

    def __init__(self, on_call: OnCall, *, host: str = "127.0.0.1", port: int = 5060,
                 advertise_host: str | None = None, max_calls: int | None = None, admit: Admission | None = None,
                 answer_delay_s: float = 0.0, codecs: tuple[str, ...] = ("PCMU", "PCMA"),
                 user_agent: str = "SpotFunnel", trusts: Callable[[str], bool] | None = None,
                 max_dialogs: int = MAX_DIALOGS) -> None:
        self.on_call = on_call
        self.host, self.port = host, port
        self.advertise_host = advertise_host or (outbound_host(host) if host in WILDCARD_HOSTS else host)
        self.max_calls, self.admit, self.answer_delay_s = max_calls, admit, answer_delay_s
        self.codecs, self.user_agent, self.trusts, self.max_dialogs = codecs, user_agent, trusts, max_dialogs
        self.draining = False
        self.stats: dict[str, int] = {"malformed": 0, "bad_request": 0, "retransmissions": 0, "busy": 0,
                                      "setup_failed": 0, "rtp_untrusted": 0, "rtp_held": 0, "dialog_errors": 0,
                                      "overloaded": 0}
        self.junk = JunkGuard()
        self._expected: OrderedDict[str, tuple[bool, dict[str, str]]] = OrderedDict()
        self._probes: set[Address] = set()  # local addresses of our own health probes in flight
        self._socket: UdpSocket | None = None
        self._dialogs: dict[str, SipDialog] = {}
        self._by_branch: dict[tuple[str, str], SipDialog] = {}  # (Call-ID, branch) of the INVITE, for CANCEL
        self._responses = ResponseCache(max_age_s=TIMER_B)
        self._client = DialogRequests(self._send, self._finish)
        self._tasks: set[asyncio.Task[Any]] = set()
        # Admitted calls hold a seat until their call handler has wound down, not just until BYE: a
        # caller who hangs up at once must not free the seat while the call still uses the machine.
        self._seats: set[int] = set()

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
        """Calls ringing, up or still winding down after their BYE (admitted, handler not finished)."""
        return len(self._seats)

    def expect_call(self, call_id: str, *, lockstep: bool = False, params: Mapping[str, str] | None = None) -> None:
        """In process only (eval's harness, tests): the INVITE this process is about to send with `call_id`.

        Its call runs in `lockstep` and gets `params` (a prepared setup's key). Nothing a remote party
        sends can do this; the Call-ID is one the harness generated itself. Bounded: oldest forgotten first.
        """
        self._expected[call_id] = (lockstep, dict(params or {}))
        while len(self._expected) > MAX_EXPECTED:
            self._expected.popitem(last=False)

    async def health(self, timeout_s: float = 0.25) -> dict[str, Any]:
        """The SIP edge as /healthz reports it: the socket open and an OPTIONS to it answered in time."""
        sock = self._socket
        listening = sock is not None and not sock.closed
        answering = listening and await probe_options(probe_target(self.host, self.port), timeout_s,
                                                      self._probes.add, self._probes.discard)
        lost = sock.lost if sock is not None else None
        return {"status": "ok" if answering else "down", "listening": listening, "answering": answering,
                "active_calls": self.active_calls, "dialogs": len(self._dialogs),
                "dialog_errors": self.stats["dialog_errors"], "malformed": self.stats["malformed"],
                "ignored_sources": self.junk.ignored_hosts, **({"socket_error": repr(lost)} if lost else {})}

    async def stop(self) -> None:
        """Refuse new calls, end the ones up with BYE, close every socket."""
        self.draining = True
        for dialog in list(self._dialogs.values()):
            if dialog.transport is not None and not dialog.ended:
                dialog.transport.end("server stopping")
                self._spawn(self._client.bye(dialog), dialog)
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=2.0)
        for task in list(self._tasks):
            task.cancel()
        for dialog in list(self._dialogs.values()):
            self._close_media(dialog)
        if self._socket is not None:
            self._socket.close()

    def _spawn(self, coro: Awaitable[Any], dialog: SipDialog | None = None) -> asyncio.Task[Any]:
        """Run a dialog's work as a task whose failure ends that dialog only (never the server)."""
        task = asyncio.ensure_future(self._guarded(coro, dialog))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _guarded(self, coro: Awaitable[Any], dialog: SipDialog | None) -> Any:
        try:
            return await coro
        except Exception as exc:  # noqa: BLE001 - one dialog's bug is that dialog's end, not the server's
            self._dialog_failed(dialog, exc)
            return None

    def _dialog_failed(self, dialog: SipDialog | None, exc: BaseException) -> None:
        """Log and count a failure inside one dialog, then end that dialog as cleanly as it still can be."""
        self.stats["dialog_errors"] += 1
        n = self.stats["dialog_errors"]
        if n <= 3 or n % 100 == 0:
            log.error("SIP: dialog %s failed (%d so far); ending it", dialog.call_id if dialog else "?", n,
                      exc_info=exc)
        if dialog is None:
            return
        if dialog.transport is not None:
            dialog.transport.end("SIP dialog failed")
        try:
            if dialog.answered and not dialog.ended:
                task = asyncio.ensure_future(self._client.bye(dialog))  # unguarded: a second failure just ends
                self._tasks.add(task)
                task.add_done_callback(self._bye_done)
                return
            if not dialog.ended:
                self._respond_invite(dialog, 500, "Server Internal Error", to_tag=dialog.local_tag)
        except Exception:  # noqa: BLE001 - ending it as best we could; forget it below
            log.debug("SIP: could not end dialog %s cleanly", dialog.call_id, exc_info=True)
        self._finish(dialog)

    def _bye_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("SIP: BYE of a failed dialog failed too: %r", task.exception())

    # ---- datagrams -------------------------------------------------------------------------

    def _on_datagram(self, data: bytes, addr: Address) -> None:
        if addr not in self._probes and self.junk.ignoring(addr[0]):
            return  # this host kept sending junk: dropped unread (counted) until the guard lets it back
        if not data.strip():
            return  # CRLF keep-alive (RFC 5626)
        try:
            msg = parse_message(data)
            if msg.is_request:
                check_request(msg)
        except SipParseError as exc:
            self._malformed(data, addr, exc)
            return
        try:
            self._dispatch(msg, addr)
        except Exception as exc:  # noqa: BLE001 - the request's dialog ends; the socket and other calls go on
            self._dialog_failed(self._dialogs.get(msg.call_id), exc)

    def _dispatch(self, msg: SipMessage, addr: Address) -> None:
        if not msg.is_request:
            self._client.on_response(msg)
            return
        assert msg.method is not None
        cached = self._responses.get(msg) if msg.method != "ACK" else None
        if cached is not None:
            self.stats["retransmissions"] += 1
            self._send(cached, addr)  # a retransmitted request gets the same answer again
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
        self.junk.junk(addr[0], addr[1], str(exc))  # counted, logged once a second per host at most
        request = salvage_request(data)
        if request is None or request.method == "ACK":
            return
        self.stats["bad_request"] += 1
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
        if request.method != "ACK":
            self._responses.put(request, data)
        self._send(data, addr)
        return response

    def _respond_invite(self, dialog: SipDialog, status: int, reason: str, *, to_tag: str | None = None,
                        headers: list[tuple[str, str]] | None = None, body: bytes = b"") -> SipMessage:
        """Answer the dialog's INVITE, remembering the answer for retransmissions that outlive the cache."""
        response = self._respond(dialog.invite, dialog.source, status, reason, to_tag=to_tag, headers=headers,
                                 body=body)
        dialog.last_response = response.serialise()
        return response

    # ---- INVITE ----------------------------------------------------------------------------

    def _on_invite(self, msg: SipMessage, addr: Address) -> None:
        to_tag = header_param(msg.get("To") or "", "tag")
        dialog = self._dialogs.get(msg.call_id)
        if to_tag is not None:
            if dialog is None or dialog.local_tag != to_tag or dialog.ended:
                self._respond(msg, addr, 481, "Call/Transaction Does Not Exist")
            else:
                self._reinvite(dialog, msg, addr)
            return
        if dialog is not None:
            if msg.branch == dialog.branch and dialog.last_response:
                self.stats["retransmissions"] += 1  # its cached answer is gone: resend the latest one
                self._send(dialog.last_response, addr)
            return  # else a forked or looped copy (new branch): the first one is being answered
        if len(self._dialogs) >= self.max_dialogs:
            self.stats["overloaded"] += 1
            self._respond(msg, addr, 503, "Service Unavailable", to_tag=new_tag(), headers=[
                ("Retry-After", "5"), ("Warning", f'399 spotfunnel "{len(self._dialogs)} dialogs open"')])
            return
        # registered at once, before admission and setup run, so a retransmission meanwhile is one
        hostport = _hostport(self.advertise_host, self.port)
        lockstep, harness_params = self._expected.pop(msg.call_id, (False, {}))
        trusted = self.trusts is not None and self.trusts(addr[0])
        dialog = SipDialog(invite=msg, source=addr, local_tag=new_tag(), local_contact=f"<sip:spotfunnel@{hostport}>",
                           via_host=hostport, params={**call_params(msg, trusted=trusted), **harness_params},
                           lockstep=lockstep)
        self._dialogs[msg.call_id] = dialog
        self._by_branch[(msg.call_id, msg.branch)] = dialog
        self._respond_invite(dialog, 100, "Trying")
        self._spawn(self._answer(dialog), dialog)

    def _refusal(self, dialog: SipDialog) -> Refusal | None:
        msg, addr = dialog.invite, dialog.source
        params = dialog.params
        if self.admit is not None:  # first: a source the ACL refuses learns nothing of our load
            refused = self.admit(IncomingCall(msg.call_id, params["caller"], params["called"], params, addr))
            if refused is not None:
                log.info("SIP: INVITE %s refused %d %s", msg.call_id, *refused)
                return refused[0], refused[1], []
        if self.draining or (self.max_calls is not None and self.active_calls >= self.max_calls):
            self.stats["busy"] += 1
            why = "draining" if self.draining else f"at capacity ({self.active_calls}/{self.max_calls} calls)"
            log.info("SIP: INVITE %s refused 486: server %s", msg.call_id, why)
            return 486, "Busy Here", [("Warning", f'399 spotfunnel "server {why}"')]
        return None

    async def _answer(self, dialog: SipDialog) -> None:
        """Admit, ring and answer a new INVITE; whatever fails, the caller gets a final response."""
        try:
            await self._admit_and_answer(dialog)
        except Exception:
            log.exception("SIP: answering INVITE %s failed", dialog.call_id)
            self._setup_failed(dialog)
        finally:
            if dialog.transport is None:  # never answered (refused, cancelled, failed): its RTP port closes here
                self._close_media(dialog)
                self._seats.discard(id(dialog))

    async def _admit_and_answer(self, dialog: SipDialog) -> None:
        if dialog.ended:
            return  # cancelled before admission ran
        agreed, refusal = None, await self._resolve_route(dialog)
        if refusal is None:
            refusal = self._refusal(dialog)
        if refusal is None:
            agreed, refusal = negotiate_request(dialog.invite, self.codecs)
        if refusal is not None or agreed is None:
            status, reason, headers = refusal or (500, "Server Internal Error", [])
            self._respond_invite(dialog, status, reason, to_tag=dialog.local_tag, headers=headers)
            self._finish(dialog)
            return
        dialog.admitted, dialog.agreed = True, agreed
        self._seats.add(id(dialog))
        await self._ring_and_answer(dialog, agreed)

    async def _resolve_route(self, dialog: SipDialog) -> Refusal | None:
        """The address of the first Record-Route hop (a name is looked up, within a deadline), or the 400."""
        hop = dialog.route_hop
        if hop is None or ip_literal(hop[0]) is not None:
            dialog.route = (ip_literal(hop[0]) or hop[0], hop[1]) if hop else None
            return None
        loop = asyncio.get_running_loop()
        try:
            infos = await asyncio.wait_for(loop.getaddrinfo(hop[0], hop[1], type=socket.SOCK_DGRAM), ROUTE_LOOKUP_S)
            dialog.route = (str(infos[0][4][0]), hop[1])
            return None
        except (OSError, asyncio.TimeoutError, IndexError) as exc:
            log.info("SIP: INVITE %s refused 400: Record-Route host %s does not resolve (%r)", dialog.call_id,
                     hop[0], exc)
            return 400, "Bad Request", [("Warning", f'399 spotfunnel "Record-Route host {hop[0][:60]} does not '
                                                    'resolve"')]

    def _setup_failed(self, dialog: SipDialog) -> None:
        """Admission or setup raised: 500 to the caller (a BYE once the 200 OK is out), and forget the dialog."""
        self.stats["setup_failed"] += 1
        if dialog.answered:
            if dialog.transport is not None:
                dialog.transport.end("call setup failed")
            self._spawn(self._client.bye(dialog), dialog)
            return
        if not dialog.ended:  # a cancelled call already had its 487
            self._respond_invite(dialog, 500, "Server Internal Error", to_tag=dialog.local_tag)
        self._finish(dialog)

    async def _ring_and_answer(self, dialog: SipDialog, agreed: AgreedMedia) -> None:
        msg, addr = dialog.invite, dialog.source
        params, lockstep = dialog.params, dialog.lockstep
        codec = SipMediaCodec(agreed, realtime=not lockstep, label=msg.call_id)
        started = CallStarted(call_id=msg.call_id, caller_id=params["caller"], called=params["called"],
                              tenant_id=params.get("tenant") or None, params=params)
        rtp = dialog.rtp = RtpPath(msg.call_id, (agreed.remote_host, agreed.remote_port), addr[0], self.stats,
                                   agreed.direction)
        rtp.socket = await open_udp(self.host, 0, rtp.on_datagram, f"rtp {msg.call_id}")
        if dialog.ended:
            return  # cancelled (or the server stopped) while the port opened; `_answer` closes it
        control = DialogControl(self._client, dialog, lambda coro: self._spawn(coro, dialog))
        transport = SipCallTransport(started, codec, rtp.send, control, lockstep=lockstep)
        self._respond_invite(dialog, 180, "Ringing", to_tag=dialog.local_tag)
        if self.answer_delay_s > 0:
            await asyncio.sleep(self.answer_delay_s)
        if dialog.cancelled or dialog.ended:
            return
        sdp = build_answer(agreed, self.advertise_host, rtp.port, dialog.sdp_session,
                           dialog.next_sdp_version()).encode()
        headers = [("Contact", dialog.local_contact), ("Allow", ALLOW), ("Supported", "replaces"),
                   ("Content-Type", "application/sdp")]
        ok = self._respond_invite(dialog, 200, "OK", to_tag=dialog.local_tag, headers=headers, body=sdp)
        dialog.answered, dialog.transport = True, transport
        rtp.receiver = transport.on_rtp
        log.info("SIP: call %s answered (%s/%d ms, dtmf pt %s, rtp to %s:%d, lockstep %s)", msg.call_id,
                 agreed.codec, agreed.ptime, agreed.dtmf_payload_type, *rtp.remote, lockstep)
        self._spawn(self._retransmit_ok(dialog, ok.serialise(), addr), dialog)
        transport.start()
        self._spawn(self._run_call(dialog, transport), dialog)

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
            self._seats.discard(id(dialog))

    async def _retransmit_ok(self, dialog: SipDialog, data: bytes, addr: Address) -> None:
        """Resend the 200 OK until the ACK comes (RFC 3261 13.3.1.4); without one, end the call."""
        await retransmit(lambda: self._send(data, addr), dialog.acked.wait(), TIMER_B, sent=True,
                         stop=lambda: dialog.ended)
        if dialog.acked.is_set() or dialog.ended:
            return
        log.warning("SIP: no ACK for the 200 OK of %s in %.0f s; ending the call", dialog.call_id, TIMER_B)
        if dialog.transport is not None:
            dialog.transport.end("no ACK from the caller")
        await self._client.bye(dialog)

    def _finish(self, dialog: SipDialog) -> None:
        dialog.ended = True
        self._close_media(dialog)
        self._dialogs.pop(dialog.call_id, None)
        self._by_branch.pop((dialog.call_id, dialog.branch), None)

    def _close_media(self, dialog: SipDialog) -> None:
        if dialog.rtp is not None:
            dialog.rtp.close()  # the path stays on the dialog: a socket still opening is closed by `_answer`
