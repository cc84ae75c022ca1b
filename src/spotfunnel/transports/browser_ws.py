"""The browser's WebSocket fallback: binary PCM16 16 kHz 20 ms frames both ways, JSON text for control and events."""
from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections import deque
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

__all__ = ["DTMF_DIGITS", "BrowserSocket", "BrowserWsTransport"]

log = logging.getLogger(__name__)

DTMF_DIGITS = frozenset("0123456789*#ABCD")
#: message types the transport itself sends; events for the page must use other names
CONTROL_TYPES = frozenset({"mark", "clear", "hangup", "transfer"})


class BrowserSocket(Protocol):
    """The part of a server websocket the transport uses (Starlette's WebSocket fits)."""

    async def receive(self) -> Mapping[str, Any]: ...

    async def send_bytes(self, data: bytes) -> None: ...

    async def send_text(self, data: str) -> None: ...

    async def close(self, code: int = 1000) -> None: ...


class BrowserWsTransport:
    """One browser call over a WebSocket, as a `Transport`.

    The page sends `{"type": "start", "tenant": ..., "caller": ..., "format": {...}}` first, then
    binary messages of PCM16 little-endian 16 kHz mono (20 ms = 640 bytes from its AudioWorklet;
    other even sizes are re-chunked and reported once), and JSON `dtmf` {digit}, `mark` {name}
    (echoed once the agent audio before it has played) and `hangup`. The server sends agent audio as
    640-byte binary messages, `mark`, `clear`, `hangup`, `transfer` control messages, and the
    call's events (`send_event`). Nothing the page sends can crash the call: bad input becomes a
    ProtocolIssue.
    """

    #: the page echoes each mark once the agent audio before it has played (see talk.js Playback)
    echoes_marks = True

    #: a page sends `start` at once and then a frame every 20 ms: silence longer than these means
    #: the page is gone (or never was one), and the call ends so its seat is free for the next caller
    start_timeout_s = 15.0
    idle_timeout_s = 10.0

    def __init__(self, websocket: BrowserSocket) -> None:
        self.websocket = websocket
        self.lockstep = False
        self.call_id: str | None = None
        self.stats: dict[str, int] = {"frames_in": 0, "frames_out": 0, "issues": 0, "events_out": 0}
        self._pending: deque[InboundEvent] = deque()
        self._ended: Hangup | None = None
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
        """The next inbound item; Hangup once the call is over (and on every call after)."""
        while not self._pending:
            if self._ended is not None:
                return self._ended
            await self._read_one()
        return self._pending.popleft()

    async def _read_one(self) -> None:
        timeout = self.idle_timeout_s if self.started else self.start_timeout_s
        try:
            message = await asyncio.wait_for(self.websocket.receive(), timeout)
        except asyncio.TimeoutError:
            self._finish(f"nothing from the page for {timeout:g} s" if self.started
                         else f"no start message within {timeout:g} s")
            return
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

    def handle_text(self, text: str) -> None:
        """Parse one JSON control message and queue what it means (public for tests)."""
        if self._ended is not None:
            return
        try:
            msg = json.loads(text)
        except json.JSONDecodeError as exc:
            self._issue(f"malformed JSON ignored ({exc.msg}): {text[:80]!r}")
            return
        kind = msg.get("type") if isinstance(msg, dict) else None
        handler = self._handlers.get(kind) if isinstance(kind, str) else None
        if handler is None:
            self._issue(f"unknown or missing message type {kind!r} ignored; expected one of "
                        f"{sorted(self._handlers)}")
            return
        if kind != "start" and not self.started:
            self._issue(f"{kind} before start ignored: send {{\"type\": \"start\", \"tenant\": ...}} first")
            return
        handler(msg)

    def handle_bytes(self, payload: bytes) -> None:
        """One binary message of caller audio (public for tests)."""
        if self._ended is not None:
            return
        if not self.started:
            self._issue("audio before start ignored: send the start message first")
            return
        if len(payload) % 2:
            self._encoding_issue(EncodingIssue("frame_size", f"a {len(payload)}-byte audio message is not whole "
                                                             "PCM16 samples (2 bytes each); dropped"))
            return
        if len(payload) != FRAME_BYTES and len(payload) not in self._sizes_reported:
            self._sizes_reported.add(len(payload))
            self._encoding_issue(EncodingIssue("frame_size", f"a {len(payload)}-byte audio message is not a 20 ms "
                                                             f"frame ({FRAME_BYTES} bytes of "
                                                             f"{BROWSER_PCM16.describe()} PCM16); re-chunked"))
        for issue in self._check.add_payload(payload):
            self._encoding_issue(issue)
        self._held += payload
        while len(self._held) >= FRAME_BYTES:
            self._pending.append(AudioIn(bytes(self._held[:FRAME_BYTES])))
            del self._held[:FRAME_BYTES]
            self.stats["frames_in"] += 1

    def _on_start(self, msg: dict[str, Any]) -> None:
        if self.started:
            self._issue("second start message ignored")
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
        params = {str(k): str(v) for k, v in msg.items() if k != "format" and isinstance(v, (str, int, float))}
        self._pending.append(CallStarted(call_id=call_id, caller_id=str(msg.get("caller") or ""),
                                         called="", tenant_id=str(msg.get("tenant") or "") or None,
                                         params=params))

    def _on_dtmf(self, msg: dict[str, Any]) -> None:
        digit = msg.get("digit")
        if not isinstance(digit, str) or digit.upper() not in DTMF_DIGITS:
            self._issue(f"dtmf message with digit {digit!r} ignored: use one of 0-9 * # A-D")
            return
        self._pending.append(Dtmf(digit.upper()))

    def _on_mark(self, msg: dict[str, Any]) -> None:
        name = msg.get("name")
        if not isinstance(name, str):
            self._issue("mark message without a name ignored")
            return
        self._pending.append(MarkPlayed(name))

    def _on_hangup(self, msg: dict[str, Any]) -> None:
        self._finish("caller hung up")

    def _finish(self, reason: str) -> None:
        if self._ended is not None:
            return
        if self._held:  # a partial last frame still counts as audio
            self._pending.append(AudioIn(bytes(self._held) + bytes(FRAME_BYTES - len(self._held))))
            self._held.clear()
        if self.started:
            log.debug("browser ws call %s: %s", self.call_id, self._check.size_report())
        self._ended = Hangup(reason)
        self._pending.append(self._ended)

    def _encoding_issue(self, issue: EncodingIssue) -> str:
        count_issue("browser-ws", issue)
        message = f"call {self.call_id}: {issue.message}"
        self._issue(message)
        return message

    def _issue(self, message: str) -> None:
        self.stats["issues"] += 1
        log.info("browser ws protocol issue (call %s): %s", self.call_id, message)
        self._pending.append(ProtocolIssue(message))

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

    async def close(self) -> None:
        """Close the socket (after the last event)."""
        if self._closed:
            return
        self._closed = True
        try:
            await self.websocket.close()
        except Exception as exc:  # already closed by the page
            log.debug("closing browser websocket: %r", exc)

    async def _send(self, message: bytes | dict[str, Any]) -> bool:
        if self._closed:
            return False
        try:
            if isinstance(message, bytes):
                await self.websocket.send_bytes(message)
            else:
                await self.websocket.send_text(json.dumps(message, separators=(",", ":")))
        except Exception as exc:
            log.info("browser websocket send failed, call %s treated as closed: %r", self.call_id, exc)
            self._closed = True
            self._finish("websocket closed while sending")
            return False
        return True
