"""Twilio Media Streams (bidirectional), server side: mu-law 8 kHz JSON messages <-> 20 ms PCM16 16 kHz frames."""
from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
from collections import deque
from typing import Any, Callable, Protocol

from spotfunnel.audio.frames import FRAME_BYTES, split_frames
from spotfunnel.audio.g711 import ulaw_decode, ulaw_encode
from spotfunnel.audio.profiles import TWILIO_MEDIA_STREAMS, EncodingIssue, StreamCheck, count_issue
from spotfunnel.audio.resample import SteadyResampler
from spotfunnel.transports.base import (
    AudioIn,
    CallStarted,
    Dtmf,
    Hangup,
    InboundEvent,
    MarkPlayed,
    ProtocolIssue,
)
from spotfunnel.transports.twilio_control import CallControl, ControlRequest, ControlRequests

__all__ = ["ControlRequest", "TwilioTransport", "WebSocketLike"]

log = logging.getLogger(__name__)

TWILIO_RATE = 8000
MULAW_FRAME_BYTES = TWILIO_RATE * 20 // 1000  # 160 bytes = 20 ms of mu-law at 8 kHz


class WebSocketLike(Protocol):
    """The part of a server websocket the transport uses (Starlette's WebSocket fits)."""

    async def receive_text(self) -> str: ...

    async def send_text(self, data: str) -> None: ...


class _Order:
    """Tracks a monotonically increasing message counter; says what to do with the next value.

    A value at or below the last one is a duplicate or a late arrival and is dropped, unless it is
    more than RESYNC_WINDOW behind: then the counter itself jumped (a corrupt or restarted
    sequence), and it is accepted and followed from there rather than dropping the rest of the call.
    """

    RESYNC_WINDOW = 50  # one second of 20 ms media messages

    def __init__(self, label: str) -> None:
        self.label = label
        self.last: int | None = None

    def check(self, value: int) -> tuple[bool, str | None]:
        """(accept, issue message) for the counter value of an arriving message."""
        last = self.last
        if last is not None and last - self.RESYNC_WINDOW <= value <= last:
            kind = "duplicate" if value == last else "late (out of order)"
            return False, f"{kind} message dropped: {self.label} {value} after {last}"
        self.last = value
        if last is not None and value < last:
            return True, f"{self.label} jumped back from {last} to {value}; following the new numbering"
        if last is not None and value > last + 1:
            missing = value - last - 1
            return True, f"{missing} message(s) missing before {self.label} {value} (gap after {last})"
        return True, None


def _as_int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _str_params(raw: Any) -> dict[str, str]:
    if not isinstance(raw, dict):
        return {}
    return {str(k): "" if v is None else str(v) for k, v in raw.items()}


class TwilioTransport:
    """One Twilio Media Stream as a `Transport`.

    Inbound: `receive()` yields CallStarted, then AudioIn frames of exactly 640 bytes (any payload
    size is re-chunked; the resampler runs at a fixed delay so one 20 ms Twilio frame gives one
    frame here), Dtmf, MarkPlayed, ProtocolIssue for anything malformed or out of order, and
    Hangup at the end (stop message or closed socket; returned again on later calls).
    Outbound: every `send_audio` call sends exactly one media message, so lockstep peers stay in step.
    """

    echoes_marks = True  # Twilio echoes each mark once the audio sent before it has played

    def __init__(self, websocket: WebSocketLike, lockstep: bool = False, control: CallControl | None = None) -> None:
        self.websocket = websocket
        self.lockstep = lockstep
        #: Twilio's REST API for this call (transfer, hang-up); None: requests are recorded, not carried out
        self._control = ControlRequests(control)
        self.stream_sid: str | None = None
        self.call_sid: str | None = None
        self.custom_parameters: dict[str, str] = {}
        #: what the agent asked for (hang-up, transfer) and what became of it at Twilio
        self.control_requests: list[ControlRequest] = self._control.entries
        self.stats: dict[str, int] = {
            "media_in": 0, "frames_in": 0, "frames_out": 0, "issues": 0, "dropped_out": 0,
        }
        self._pending: deque[InboundEvent] = deque()
        self._ended: Hangup | None = None
        self._socket_closed = False
        self._agent_hung_up = False
        self._mulaw_in = bytearray()
        self._upsampler = SteadyResampler(TWILIO_RATE, 16_000)
        self._downsampler = SteadyResampler(16_000, TWILIO_RATE)
        self._seq = _Order("sequenceNumber")
        self._chunks = _Order("media chunk")
        self._stream_check = StreamCheck(TWILIO_MEDIA_STREAMS)
        self._handlers: dict[str, Callable[[dict[str, Any]], None]] = {
            "connected": self._on_connected,
            "start": self._on_start,
            "media": self._on_media,
            "mark": self._on_mark,
            "dtmf": self._on_dtmf,
            "stop": self._on_stop,
        }

    @property
    def started(self) -> bool:
        return self.stream_sid is not None

    # ---- inbound -------------------------------------------------------------------------

    async def receive(self) -> InboundEvent:
        """The next inbound item; Hangup once the stream is over (and on every call after)."""
        while not self._pending:
            if self._ended is not None:
                return self._ended
            await self._read_one()
        return self._pending.popleft()

    async def _read_one(self) -> None:
        try:
            text = await self.websocket.receive_text()
        except Exception as exc:  # starlette WebSocketDisconnect, ConnectionClosed, RuntimeError...
            self._socket_closed = True
            reason = "agent hung up" if self._agent_hung_up else f"websocket closed ({type(exc).__name__})"
            self._finish(reason)
            return
        self.handle_text(text)

    def handle_text(self, text: str) -> None:
        """Parse one Twilio message and queue what it means (public for replay tools and tests)."""
        if self._ended is not None:
            return  # after stop/close nothing more counts
        try:
            msg = json.loads(text)
        except json.JSONDecodeError as exc:
            self._issue(f"malformed JSON ignored ({exc.msg}): {text[:80]!r}")
            return
        if not isinstance(msg, dict):
            self._issue(f"message is not a JSON object, ignored: {text[:80]!r}")
            return
        event = msg.get("event")
        handler = self._handlers.get(event) if isinstance(event, str) else None
        if handler is None:
            self._issue(f"unknown or missing event {event!r} ignored")
            return
        if not self._in_order(msg):
            return
        handler(msg)

    def _in_order(self, msg: dict[str, Any]) -> bool:
        """Check sequenceNumber (or media.chunk when it is absent); drop duplicates and late ones."""
        seq = _as_int(msg.get("sequenceNumber"))
        media = msg.get("media")
        chunk = _as_int(media.get("chunk")) if isinstance(media, dict) else None
        if seq is not None:
            accept, issue = self._seq.check(seq)
        elif msg.get("event") == "media" and chunk is not None:
            accept, issue = self._chunks.check(chunk)
        else:
            return True
        if issue:
            self._issue(issue)
        return accept

    def _on_connected(self, msg: dict[str, Any]) -> None:
        log.debug("twilio stream connected: protocol=%s version=%s", msg.get("protocol"), msg.get("version"))

    def _on_start(self, msg: dict[str, Any]) -> None:
        if self.started:
            self._issue("second start message ignored")
            return
        start = msg.get("start")
        if not isinstance(start, dict):
            self._issue("start message without a 'start' object ignored")
            return
        stream_sid = start.get("streamSid") or msg.get("streamSid")
        if not isinstance(stream_sid, str) or not stream_sid:
            self._issue("start message without streamSid ignored (cannot send audio back without it)")
            return
        call_sid = str(start.get("callSid") or stream_sid)
        format_issues = self._stream_check.check_declared(start.get("mediaFormat"))
        if format_issues:
            problem = self._encoding_issue(format_issues[0], call_sid)
            self._finish(f"rejected: {problem}")
            return
        self.stream_sid = stream_sid
        self.call_sid = call_sid
        params = _str_params(start.get("customParameters"))
        self.custom_parameters = params
        if params.get("lockstep") == "1":
            self.lockstep = True
        self._pending.append(CallStarted(
            call_id=self.call_sid,
            caller_id=params.get("caller") or params.get("from") or "",
            called=params.get("called") or params.get("to") or "",
            tenant_id=params.get("tenant") or None,
            params=params,
        ))

    def _encoding_issue(self, issue: EncodingIssue, call_sid: str | None = None) -> str:
        """Count an encoding problem and queue it as a ProtocolIssue naming the call; returns the message."""
        count_issue("twilio", issue)
        message = f"call {call_sid or self.call_sid}: {issue.message}"
        self._issue(message)
        return message

    def _on_media(self, msg: dict[str, Any]) -> None:
        if not self.started:
            self._issue("media before start ignored")
            return
        media = msg.get("media")
        if not isinstance(media, dict) or not isinstance(media.get("payload"), str):
            self._issue("media message without media.payload ignored")
            return
        track = media.get("track")
        if track not in (None, "inbound", "inbound_track"):
            return  # the outbound track (if requested) is our own audio coming back
        try:
            payload = base64.b64decode(media["payload"], validate=True)
        except (binascii.Error, ValueError):
            self._issue("media payload is not valid base64, ignored")
            return
        self.stats["media_in"] += 1
        for issue in self._stream_check.add_payload(payload):
            self._encoding_issue(issue)
        self._mulaw_in += payload
        while len(self._mulaw_in) >= MULAW_FRAME_BYTES:
            chunk = bytes(self._mulaw_in[:MULAW_FRAME_BYTES])
            del self._mulaw_in[:MULAW_FRAME_BYTES]
            self._queue_audio(self._upsampler.process(ulaw_decode(chunk)))

    def _queue_audio(self, pcm16k: bytes) -> None:
        for frame in split_frames(pcm16k):
            self._pending.append(AudioIn(frame))
            self.stats["frames_in"] += 1

    def _on_mark(self, msg: dict[str, Any]) -> None:
        mark = msg.get("mark")
        name = mark.get("name") if isinstance(mark, dict) else None
        if not isinstance(name, str):
            self._issue("mark message without mark.name ignored")
            return
        self._pending.append(MarkPlayed(name))

    def _on_dtmf(self, msg: dict[str, Any]) -> None:
        dtmf = msg.get("dtmf")
        digit = dtmf.get("digit") if isinstance(dtmf, dict) else None
        if not isinstance(digit, str) or not digit:
            self._issue("dtmf message without dtmf.digit ignored")
            return
        self._pending.append(Dtmf(digit))

    def _on_stop(self, msg: dict[str, Any]) -> None:
        self._finish("caller hung up")

    def _finish(self, reason: str) -> None:
        """End of stream: flush the caller audio still held, then queue the Hangup."""
        if self._ended is not None:
            return
        if self.started:
            log.debug("twilio stream %s (call %s): %s", self.stream_sid, self.call_sid,
                      self._stream_check.size_report())
            tail = self._upsampler.process(ulaw_decode(bytes(self._mulaw_in))) if self._mulaw_in else b""
            self._mulaw_in.clear()
            self._queue_audio(tail + self._upsampler.flush())
        self._ended = Hangup(reason)
        self._pending.append(self._ended)

    def _issue(self, message: str) -> None:
        self.stats["issues"] += 1
        log.info("twilio protocol issue (stream %s): %s", self.stream_sid, message)
        self._pending.append(ProtocolIssue(message))

    # ---- outbound ------------------------------------------------------------------------

    async def send_audio(self, pcm: bytes) -> None:
        """Send one frame of agent audio (PCM16 16 kHz, normally 640 bytes) as one media message."""
        if len(pcm) != FRAME_BYTES:
            log.debug("send_audio got %d bytes, expected %d", len(pcm), FRAME_BYTES)
        payload = ulaw_encode(self._downsampler.process(pcm))
        await self._send({"event": "media", "streamSid": self.stream_sid,
                          "media": {"payload": base64.b64encode(payload).decode("ascii")}},
                         counter="frames_out")

    async def send_mark(self, name: str) -> None:
        """Ask Twilio to report back (a `mark` message) when the audio sent so far has played."""
        await self._send({"event": "mark", "streamSid": self.stream_sid, "mark": {"name": name}})

    async def clear(self) -> None:
        """Drop agent audio buffered at Twilio (barge-in); Twilio then returns the pending marks."""
        await self._send({"event": "clear", "streamSid": self.stream_sid})

    def deliver(self, event: InboundEvent) -> None:
        """Queue an event that reached this call outside the stream (an AMD verdict from a webhook).

        It comes out of `receive()` before the next websocket message is read (Twilio sends media
        every 20 ms, so that is at most one frame later).
        """
        if self._ended is None:
            self._pending.append(event)

    async def hangup(self) -> None:
        """Close the media stream and end the call at Twilio (when call control is configured)."""
        # started before the stream closes: closing ends the voice session, which cancels our caller
        ending = self._control.start("hangup", self.call_sid)
        self._agent_hung_up = True
        await self._close()
        self._finish("agent hung up")
        if ending is not None:
            await asyncio.shield(ending)

    async def transfer(self, to: str) -> bool:
        """Redirect the call to TwiML that dials `to`; this ends the media stream.

        Without call control (or when Twilio refuses) the request is recorded with its outcome and
        logged, and the stream stays open: the caller can still hang up or be spoken to.
        """
        redirect = self._control.start("transfer", self.call_sid, to)
        if redirect is not None and await asyncio.shield(redirect):
            self._agent_hung_up = True
            await self._close()  # Twilio ends the stream itself on redirect; do not wait for it
            self._finish(f"transferred to {to}")
            return True
        return False

    async def _send(self, message: dict[str, Any], counter: str | None = None) -> None:
        if self._socket_closed or not self.started:
            self.stats["dropped_out"] += 1
            return
        try:
            await self.websocket.send_text(json.dumps(message, separators=(",", ":")))
        except Exception as exc:
            log.info("twilio websocket send failed, stream %s treated as closed: %r", self.stream_sid, exc)
            self._socket_closed = True
            self.stats["dropped_out"] += 1
            return
        if counter:
            self.stats[counter] += 1

    async def _close(self) -> None:
        if self._socket_closed:
            return
        self._socket_closed = True
        close = getattr(self.websocket, "close", None)
        if close is None:
            return
        try:
            await close()
        except Exception as exc:  # already closed by the far end, etc.
            log.debug("closing twilio websocket: %r", exc)
