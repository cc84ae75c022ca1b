"""The browser's WebSocket fallback: binary PCM16 16 kHz 20 ms frames both ways, JSON text for control and events."""
from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from typing import Any, Callable, Mapping, Protocol

from spotfunnel.audio.frames import FRAME_BYTES
from spotfunnel.audio.profiles import BROWSER_PCM16, EncodingIssue, StreamCheck, count_issue
from spotfunnel.transports.base import (
    AudioIn,
    CallStarted,
    Dtmf,
    Hangup,
    InboundEvent,
    MarkPlayed,
    ProtocolIssue,
)
from spotfunnel.transports.browser_guard import BrowserLimits, JunkGuard, PacedInbound

__all__ = ["DTMF_DIGITS", "BrowserSocket", "BrowserWsTransport"]

log = logging.getLogger(__name__)

DTMF_DIGITS = frozenset("0123456789*#ABCD")
#: message types the transport itself sends; events for the page must use other names
CONTROL_TYPES = frozenset({"mark", "clear", "hangup", "transfer"})
#: the close code for a page that kept sending junk (RFC 6455 1008: policy violation)
JUNK_CLOSE_CODE = 1008


class BrowserSocket(Protocol):
    """The part of a server websocket the transport uses (Starlette's WebSocket fits)."""

    async def receive(self) -> Mapping[str, Any]: ...

    async def send_bytes(self, data: bytes) -> None: ...

    async def send_text(self, data: str) -> None: ...

    async def close(self, code: int = 1000) -> None: ...


class BrowserWsTransport:
    """One browser call over a WebSocket, as a `Transport`.

    The page sends `{"type": "start", "format": {...}}` first, then binary messages of PCM16
    little-endian 16 kHz mono (20 ms = 640 bytes from its AudioWorklet; other even sizes up to
    `max_audio_bytes` are re-chunked and reported once), and JSON `dtmf` {digit}, `mark` {name}
    (echoed once the agent audio before it has played) and `hangup`. The server sends agent audio as
    640-byte binary messages, `mark`, `clear`, `hangup`, `transfer` control messages, and the
    call's events (`send_event`). Nothing the page sends can crash the call: bad input becomes a
    ProtocolIssue (the first few reported, the rest counted), and a page that keeps sending junk is
    closed. The tenant is the server's choice (`tenant`); the page names no caller: a browser
    caller has no caller ID, so the agent asks for the number.
    """

    #: the page echoes each mark once the agent audio before it has played (see talk.js Playback)
    echoes_marks = True

    def __init__(self, websocket: BrowserSocket, *, tenant: str | None = None,
                 limits: BrowserLimits = BrowserLimits(), wall: Callable[[], float] = time.monotonic) -> None:
        self.websocket = websocket
        self._wall = wall  # the edge's clock (a test's own, to pace without waiting)
        #: never set from the page: a browser call runs on the wall clock
        self.lockstep = False
        self.tenant = tenant
        self.limits = limits
        self.call_id: str | None = None
        self.stats: dict[str, int] = {"frames_in": 0, "frames_out": 0, "issues": 0, "events_out": 0,
                                      "junk": 0, "dropped_in": 0}
        self._pending = PacedInbound(limits)
        self._guard = JunkGuard(limits)
        self._opened_at = self._wall()
        self._last_audio_at = self._opened_at
        self._ended: Hangup | None = None
        self._junk_source = False
        self._closed = False
        self._held = bytearray()
        self._check = StreamCheck(BROWSER_PCM16)
        self._sizes_reported: set[int] = set()
        self._handlers: dict[str, Callable[[dict[str, Any]], None]] = {
            "start": self._on_start, "dtmf": self._on_dtmf, "mark": self._on_mark, "hangup": self._on_hangup,
        }

    @property
    def started(self) -> bool:
        return self.call_id is not None

    # ---- inbound ----
    async def receive(self) -> InboundEvent:
        """The next inbound item; Hangup once the call is over (and on every call after).

        Caller audio comes out at most at real-time pace: a page that pushes frames faster does not
        drive the call's clock; what overflows the buffer is dropped and counted.
        """
        while True:
            if self._pending:
                hold = self._pending.wait_s(self._wall(), self._ended is not None)
                if hold <= 0:
                    return self._pending.take(self._wall())
                await self._read_one(hold)  # read on while the frame waits its turn
            elif self._ended is not None:
                return self._ended
            else:
                await self._read_one()

    def _deadline(self) -> tuple[float, str]:
        """When this call is overdue (no start, then no audio), and what to call it then."""
        if not self.started:
            limit = self.limits.start_timeout_s
            return self._opened_at + limit, f"no start message within {limit:g} s"
        limit = self.limits.idle_timeout_s
        return self._last_audio_at + limit, f"the page went silent: no audio for {limit:g} s"

    async def _read_one(self, at_most_s: float | None = None) -> None:
        """Read one message within the call's deadline; `at_most_s` caps the wait (a paced frame is due)."""
        if self._ended is not None:  # over: only the held audio is left to release
            if at_most_s:
                await asyncio.sleep(at_most_s)
            return
        deadline, overdue = self._deadline()
        budget = deadline - self._wall()
        if budget <= 0:
            self._finish(overdue)
            await self.close()
            return
        try:
            async with asyncio.timeout(budget if at_most_s is None else min(budget, at_most_s)):
                message = await self.websocket.receive()
        except TimeoutError:
            return  # the loop looks at the deadline and the paced frame again
        except Exception as exc:  # starlette raises RuntimeError once the socket is gone
            self._closed = True
            self._finish(f"websocket closed ({type(exc).__name__})")
            return
        if message.get("type") == "websocket.disconnect":
            self._closed = True
            self._finish("caller closed the page")
            return
        data = message.get("bytes")
        if data is not None:
            self.handle_bytes(bytes(data))
        elif message.get("text") is not None:
            self.handle_text(str(message["text"]))
        if self._junk_source:
            await self.close(JUNK_CLOSE_CODE)  # at once: nothing more from it is read, nothing more sent

    def handle_text(self, text: str) -> None:
        """Parse one JSON control message and queue what it means (public for tests)."""
        if self._ended is not None:
            return
        if len(text) > self.limits.max_control_chars:  # refused unparsed: a page's control messages are short
            self._junk(f"control message of {len(text)} characters refused unparsed (limit "
                       f"{self.limits.max_control_chars}; a start message is ~120)")
            return
        try:
            msg = json.loads(text)
        except json.JSONDecodeError as exc:
            self._junk(f"malformed JSON ignored ({exc.msg}): {text[:80]!r}")
            return
        kind = msg.get("type") if isinstance(msg, dict) else None
        handler = self._handlers.get(kind) if isinstance(kind, str) else None
        if handler is None:
            self._junk(f"unknown or missing message type {str(kind)[:40]!r} ignored; expected one of "
                       f"{sorted(self._handlers)}")
            return
        if kind != "start" and not self.started:
            self._junk(f"{kind} before start ignored: send {{\"type\": \"start\"}} first")
            return
        junk_before = self._guard.junk
        handler(msg)
        if self._guard.junk == junk_before:
            self._guard.good()

    def handle_bytes(self, payload: bytes) -> None:
        """One binary message of caller audio (public for tests)."""
        if self._ended is not None:
            return
        if not self.started:
            self._junk("audio before start ignored: send the start message first")
            return
        if len(payload) > self.limits.max_audio_bytes:
            self._junk(f"a {len(payload)}-byte audio message dropped: the limit is {self.limits.max_audio_bytes} "
                       f"bytes (a 20 ms frame is {FRAME_BYTES})")
            return
        if len(payload) % 2:
            self._junk(self._encoding_issue(EncodingIssue(
                "frame_size", f"a {len(payload)}-byte audio message is not whole PCM16 samples (2 bytes each); "
                              "dropped"), report=False))
            return
        self._last_audio_at = self._wall()
        self._guard.good()
        if len(payload) != FRAME_BYTES and len(payload) not in self._sizes_reported:
            self._sizes_reported.add(len(payload))
            self._encoding_issue(EncodingIssue("frame_size", f"a {len(payload)}-byte audio message is not a 20 ms "
                                                             f"frame ({FRAME_BYTES} bytes of "
                                                             f"{BROWSER_PCM16.describe()} PCM16); re-chunked"))
        for issue in self._check.add_payload(payload):
            self._encoding_issue(issue)
        self._held += payload
        while len(self._held) >= FRAME_BYTES:
            if self._pending.put_audio(bytes(self._held[:FRAME_BYTES])):
                self.stats["frames_in"] += 1
            else:
                self.stats["dropped_in"] += 1
            del self._held[:FRAME_BYTES]

    def _on_start(self, msg: dict[str, Any]) -> None:
        if self.started:
            self._junk("second start message ignored")
            return
        call_id = f"browser-{uuid.uuid4().hex[:12]}"
        declared = msg.get("format")
        if declared is not None:
            problems = self._check.check_declared(declared)
            if problems:
                self.call_id = call_id
                self._finish(f"rejected: {self._encoding_issue(problems[0])}")
                return
        self.call_id = call_id
        self._last_audio_at = self._wall()  # the idle deadline runs from the start
        # Only what the server chose: anything else in the message (a caller ID, a tenant, a test
        # switch) is the page's say-so and selects nothing.
        self._pending.put(CallStarted(call_id=call_id, caller_id="", called="", tenant_id=self.tenant))

    def _on_dtmf(self, msg: dict[str, Any]) -> None:
        digit = msg.get("digit")
        if not isinstance(digit, str) or digit.upper() not in DTMF_DIGITS:
            self._junk(f"dtmf message with digit {str(digit)[:20]!r} ignored: use one of 0-9 * # A-D")
            return
        self._pending.put(Dtmf(digit.upper()))

    def _on_mark(self, msg: dict[str, Any]) -> None:
        name = msg.get("name")
        if not isinstance(name, str):
            self._junk("mark message without a name ignored")
            return
        self._pending.put(MarkPlayed(name))

    def _on_hangup(self, msg: dict[str, Any]) -> None:
        self._finish("caller hung up")

    def _finish(self, reason: str) -> None:
        if self._ended is not None:
            return
        if self._held:  # a partial last frame still counts as audio
            self._pending.put_audio(bytes(self._held) + bytes(FRAME_BYTES - len(self._held)))
            self._held.clear()
        if self.started:
            log.debug("browser ws call %s: %s", self.call_id, self._check.size_report())
        if self._pending.dropped_frames:
            log.info("browser ws call %s: %d caller frames dropped (sent faster than real time)",
                     self.call_id, self._pending.dropped_frames)
        self._ended = Hangup(reason)
        self._pending.put(self._ended)

    def _encoding_issue(self, issue: EncodingIssue, report: bool = True) -> str:
        count_issue("browser-ws", issue)
        message = f"call {self.call_id}: {issue.message}"
        if report:
            self._issue(message)
        return message

    def _junk(self, message: str) -> None:
        """A message that is not what a page sends: reported (rate-limited); too many close the call."""
        self.stats["junk"] += 1
        self._issue(message)
        if self._guard.spend():
            self._junk_source = True
            self._finish(f"closed: {self._guard.junk} malformed or unexpected messages (the page keeps sending junk)")

    def _issue(self, message: str) -> None:
        self.stats["issues"] += 1
        line = self._guard.admit(message)
        if line is None:
            return  # counted; the log and the call's events stay small under a flood
        log.info("browser ws protocol issue (call %s): %s", self.call_id, line)
        self._pending.put(ProtocolIssue(line))

    # ---- outbound ----
    async def send_audio(self, pcm: bytes) -> None:
        """One 20 ms frame of agent audio as one binary message."""
        if len(pcm) != FRAME_BYTES:
            raise ValueError(f"outbound frames must be {FRAME_BYTES} bytes, got {len(pcm)}")
        if await self._send(pcm):
            self.stats["frames_out"] += 1

    async def send_mark(self, name: str) -> None:
        await self._send({"type": "mark", "name": name})

    async def clear(self) -> None:
        """The page drops the agent audio it has queued (barge-in) and echoes its pending marks."""
        await self._send({"type": "clear"})

    async def hangup(self) -> None:
        """Tell the page the agent hung up; the socket stays open for the call's last events."""
        await self._send({"type": "hangup", "reason": "agent hung up"})
        self._finish("agent hung up")

    async def transfer(self, to: str) -> bool:
        """A browser call cannot be bridged to a phone: the page is told the number, and the call ends."""
        await self._send({"type": "transfer", "to": to})
        self._finish(f"transferred to {to}")
        return True

    async def send_event(self, event: Mapping[str, Any]) -> None:
        """A call event for the page (transcript line, outcome); `type` names it."""
        kind = event.get("type")
        if not isinstance(kind, str) or kind in CONTROL_TYPES:
            raise ValueError(f"event type must be a string other than {sorted(CONTROL_TYPES)}, got {kind!r}")
        if await self._send(dict(event)):
            self.stats["events_out"] += 1

    async def close(self, code: int = 1000) -> None:
        """Close the socket (after the last event); `code` says why (1008: it kept sending junk)."""
        if self._closed:
            return
        self._closed = True
        try:
            async with asyncio.timeout(self.limits.send_timeout_s):  # the close frame waits like any send
                await self.websocket.close(code)
        except Exception as exc:  # already closed by the page
            log.debug("closing browser websocket: %r", exc)

    async def _send(self, message: bytes | dict[str, Any]) -> bool:
        if self._closed:
            return False
        try:  # bounded: a page that stops reading fills the socket's buffer, and must not stall the call
            async with asyncio.timeout(self.limits.send_timeout_s):
                if isinstance(message, bytes):
                    await self.websocket.send_bytes(message)
                else:
                    await self.websocket.send_text(json.dumps(message, separators=(",", ":")))
        except Exception as exc:  # TimeoutError included
            log.info("browser websocket send failed, call %s treated as closed: %r", self.call_id, exc)
            self._closed = True
            self._finish("websocket closed while sending")
            return False
        return True
