"""Twilio Media Streams (bidirectional), server side: mu-law 8 kHz JSON messages <-> 20 ms PCM16 16 kHz frames."""
from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import time
from collections import deque
from typing import Any, Callable, Protocol, Union

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
from spotfunnel.transports.twilio_guard import InboundPacer, IssueLog, JunkBudget, MessageOrder, StreamLimits

__all__ = ["ControlRequest", "StartBinding", "StreamLimits", "TwilioTransport", "WebSocketLike"]

log = logging.getLogger(__name__)

TWILIO_RATE = 8000
MULAW_FRAME_BYTES = TWILIO_RATE * 20 // 1000  # 160 bytes = 20 ms of mu-law at 8 kHz
MAX_PENDING_EVENTS = 256  # control events (marks, DTMF) waiting to be read; caller audio has its own cap

#: who the call is, given the stream's callSid and custom parameters: the CallStarted taken from our
#: own record of the call, or the reason the stream is refused
StartBinding = Callable[[str, dict[str, str]], Union[CallStarted, str]]


def _unbound(call_sid: str, _params: dict[str, str]) -> CallStarted:
    """Without a binding the stream names no one: identity never comes from what the far end sends."""
    return CallStarted(call_id=call_sid, caller_id="", called="")


class WebSocketLike(Protocol):
    """The part of a server websocket the transport uses (Starlette's WebSocket fits)."""

    async def receive_text(self) -> str: ...

    async def send_text(self, data: str) -> None: ...


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

    def __init__(self, websocket: WebSocketLike, lockstep: bool = False, control: CallControl | None = None,
                 *, bind_start: StartBinding = _unbound, limits: StreamLimits = StreamLimits()) -> None:
        self.websocket = websocket
        #: set by whoever creates the transport (eval's harness, in process); never by the stream
        self.lockstep = lockstep
        self._bind_start = bind_start
        self.limits = limits
        #: Twilio's REST API for this call (transfer, hang-up); None: requests are recorded, not carried out
        self._control = ControlRequests(control)
        self.stream_sid: str | None = None
        self.call_sid: str | None = None
        self.custom_parameters: dict[str, str] = {}
        #: what the agent asked for (hang-up, transfer) and what became of it at Twilio
        self.control_requests: list[ControlRequest] = self._control.entries
        self.stats: dict[str, int] = {
            "media_in": 0, "frames_in": 0, "frames_out": 0, "clears_out": 0, "issues": 0, "junk": 0, "dropped_out": 0,
            "dropped_in": 0, "dropped_events": 0,
        }
        self._pending: deque[InboundEvent] = deque()
        self._audio_waiting = 0  # AudioIn items in _pending
        self._pacer = InboundPacer(limits.burst_s)
        self._junk = JunkBudget(limits.junk_budget, limits.good_per_junk)
        self._issue_log = IssueLog(first=limits.log_first_issues)
        self._opened_at = time.monotonic()
        self._last_media_at = self._opened_at
        self._ended: Hangup | None = None
        self._socket_closed = False
        self._agent_hung_up = False
        self._mulaw_in = bytearray()
        self._upsampler = SteadyResampler(TWILIO_RATE, 16_000)
        self._downsampler = SteadyResampler(16_000, TWILIO_RATE)
        self._seq = MessageOrder("sequenceNumber")
        self._chunks = MessageOrder("media chunk")
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

    @property
    def ended_reason(self) -> str | None:
        """Why the stream ended (caller hung up, went silent, rejected...); None while it is up."""
        return self._ended.reason if self._ended is not None else None

    # ---- inbound -------------------------------------------------------------------------

    async def receive(self) -> InboundEvent:
        """The next inbound item; Hangup once the stream is over (and on every call after).

        Caller audio comes out at most at real-time pace (lockstep: as it arrives): a sender that
        pushes faster does not drive the call's clock, its excess is dropped and counted.
        """
        waiting_since = time.monotonic()
        while True:
            if self._pending:
                if not isinstance(self._pending[0], AudioIn) or self.lockstep:
                    return self._next_item()
                hold = self._pacer.wait_s(time.monotonic())
                if hold <= 0 or self._ended is not None:  # after the end the tail goes at once
                    self._pacer.released(time.monotonic())
                    return self._next_item()
                await self._read_one(waiting_since, hold)  # read on while the frame waits its turn
            elif self._ended is not None:
                return self._ended
            else:
                await self._read_one(waiting_since)

    def _next_item(self) -> InboundEvent:
        item = self._pending.popleft()
        if isinstance(item, AudioIn):
            self._audio_waiting -= 1
        return item

    async def _read_one(self, waiting_since: float, at_most_s: float | None = None) -> None:
        """Read one message within the stream's deadline (start, then idle); `at_most_s` caps the wait."""
        if self._ended is not None:  # the stream is over: only the held audio is left to release
            if at_most_s:
                await asyncio.sleep(at_most_s)
            return
        deadline, overdue = self._deadline(waiting_since)
        budget = deadline - time.monotonic()
        if budget <= 0:
            await self._close()
            self._finish(overdue)
            return
        try:
            async with asyncio.timeout(min(budget, at_most_s) if at_most_s is not None else budget):
                text = await self.websocket.receive_text()
        except TimeoutError:
            return  # the loop looks at the deadline and the paced frame again
        except Exception as exc:  # starlette WebSocketDisconnect, ConnectionClosed, RuntimeError...
            self._socket_closed = True
            reason = "agent hung up" if self._agent_hung_up else f"websocket closed ({type(exc).__name__})"
            self._finish(reason)
            return
        self.handle_text(text)

    def _deadline(self, waiting_since: float) -> tuple[float, str]:
        """When this stream is overdue, and what to call it then."""
        if not self.started:
            limit = self.limits.start_timeout_s
            return self._opened_at + limit, f"rejected: no valid start message within {limit:g} s"
        limit = self.limits.idle_timeout_s
        # measured from the later of the last media and this wait's start: a session busy elsewhere
        # (lockstep thinking) has not been kept waiting by the caller
        return max(self._last_media_at, waiting_since) + limit, f"the stream went silent: no audio for {limit:g} s"

    def handle_text(self, text: str) -> None:
        """Parse one Twilio message and queue what it means (public for replay tools and tests)."""
        if self._ended is not None:
            return  # after stop/close nothing more counts
        if len(text) > self.limits.max_message_chars:  # refused before parsing: JSON of megabytes stalls the loop
            self._junk_issue(f"message of {len(text)} characters refused unparsed (limit "
                             f"{self.limits.max_message_chars}; a Twilio media message is ~300)")
            return
        try:
            msg = json.loads(text)
        except json.JSONDecodeError as exc:
            self._junk_issue(f"malformed JSON ignored ({exc.msg}): {text[:80]!r}")
            return
        if not isinstance(msg, dict):
            self._junk_issue(f"message is not a JSON object, ignored: {text[:80]!r}")
            return
        event = msg.get("event")
        handler = self._handlers.get(event) if isinstance(event, str) else None
        if handler is None:
            self._junk_issue(f"unknown or missing event {str(event)[:40]!r} ignored")
            return
        if not self._in_order(msg):
            return
        junk_before = self.stats["junk"]
        handler(msg)
        if self.stats["junk"] == junk_before:  # a known event can still carry junk (a bad payload)
            self._junk.good()

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
            self._junk_issue("second start message ignored")
            return
        start = msg.get("start")
        if not isinstance(start, dict):
            self._junk_issue("start message without a 'start' object ignored")
            return
        stream_sid = start.get("streamSid") or msg.get("streamSid")
        if not isinstance(stream_sid, str) or not stream_sid:
            self._junk_issue("start message without streamSid ignored (cannot send audio back without it)")
            return
        call_sid = str(start.get("callSid") or stream_sid)
        format_issues = self._stream_check.check_declared(start.get("mediaFormat"))
        if format_issues:
            problem = self._encoding_issue(format_issues[0], call_sid)
            self._finish(f"rejected: {problem}")
            return
        params = _str_params(start.get("customParameters"))
        bound = self._bind_start(call_sid, params)
        if isinstance(bound, str):
            self._issue(f"call {call_sid}: start refused: {bound}")
            self._finish(f"rejected: {bound}")
            return
        self.stream_sid = stream_sid
        self.call_sid = bound.call_id
        self.custom_parameters = params  # for the log only: identity came from `bound`
        self._last_media_at = time.monotonic()
        self._pending.append(bound)

    def _encoding_issue(self, issue: EncodingIssue, call_sid: str | None = None) -> str:
        """Count an encoding problem and queue it as a ProtocolIssue naming the call; returns the message."""
        count_issue("twilio", issue)
        message = f"call {call_sid or self.call_sid}: {issue.message}"
        self._issue(message)
        return message

    def _on_media(self, msg: dict[str, Any]) -> None:
        if not self.started:
            self._junk_issue("media before start ignored")
            return
        media = msg.get("media")
        if not isinstance(media, dict) or not isinstance(media.get("payload"), str):
            self._junk_issue("media message without media.payload ignored")
            return
        track = media.get("track")
        if track not in (None, "inbound", "inbound_track"):
            return  # the outbound track (if requested) is our own audio coming back
        try:
            payload = base64.b64decode(media["payload"], validate=True)
        except (binascii.Error, ValueError):
            self._junk_issue("media payload is not valid base64, ignored")
            return
        self.stats["media_in"] += 1
        self._last_media_at = time.monotonic()
        for issue in self._stream_check.add_payload(payload):
            self._encoding_issue(issue)
        self._mulaw_in += payload
        while len(self._mulaw_in) >= MULAW_FRAME_BYTES:
            chunk = bytes(self._mulaw_in[:MULAW_FRAME_BYTES])
            del self._mulaw_in[:MULAW_FRAME_BYTES]
            self._queue_audio(self._upsampler.process(ulaw_decode(chunk)))

    def _queue_audio(self, pcm16k: bytes) -> None:
        for frame in split_frames(pcm16k):
            if self._audio_waiting >= self.limits.max_buffered_frames:
                # faster than real time (or a stalled session): the excess is dropped, not queued
                self.stats["dropped_in"] += 1
                if self.stats["dropped_in"] % 250 == 1:
                    log.info("twilio stream %s: caller audio arrives faster than real time; %d frame(s) dropped",
                             self.stream_sid, self.stats["dropped_in"])
                continue
            self._pending.append(AudioIn(frame))
            self._audio_waiting += 1
            self.stats["frames_in"] += 1

    def _queue_event(self, event: InboundEvent) -> None:
        """Queue a control event (mark, DTMF), bounded: a flood of them is dropped and counted."""
        if len(self._pending) - self._audio_waiting >= MAX_PENDING_EVENTS:
            self.stats["dropped_events"] += 1
            return
        self._pending.append(event)

    def _on_mark(self, msg: dict[str, Any]) -> None:
        mark = msg.get("mark")
        name = mark.get("name") if isinstance(mark, dict) else None
        if not isinstance(name, str):
            self._junk_issue("mark message without mark.name ignored")
            return
        self._queue_event(MarkPlayed(name))

    def _on_dtmf(self, msg: dict[str, Any]) -> None:
        dtmf = msg.get("dtmf")
        digit = dtmf.get("digit") if isinstance(dtmf, dict) else None
        if not isinstance(digit, str) or not digit:
            self._junk_issue("dtmf message without dtmf.digit ignored")
            return
        self._queue_event(Dtmf(digit[:1]))

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
        """Count an issue; the first few and then one in a hundred are logged and passed on (rate limit)."""
        self.stats["issues"] += 1
        prefix = self._issue_log.admit()
        if prefix is None:
            return
        log.info("twilio protocol issue (stream %s): %s%s", self.stream_sid, prefix, message)
        self._queue_event(ProtocolIssue(prefix + message))

    def _junk_issue(self, message: str) -> None:
        """A malformed message: an issue that also spends the stream's junk budget; closed once it is spent."""
        self.stats["junk"] += 1
        self._issue(message)
        if self._junk.spend():
            log.warning("twilio stream %s closed: %d malformed messages", self.stream_sid, self._junk.junk)
            self._finish(f"rejected: {self._junk.junk} malformed messages; the stream was closed")

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
        await self._send({"event": "clear", "streamSid": self.stream_sid}, counter="clears_out")

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
