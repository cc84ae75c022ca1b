"""The browser over WebRTC, server side (aiortc): Opus 48 kHz both ways, a data channel for control and events."""
from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import time
import uuid
from collections import deque
from typing import Any, Callable, Iterator, Mapping

import aioice.ice
import av
from aiortc import MediaStreamTrack, RTCConfiguration, RTCDataChannel, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError
from aiortc.sdp import SessionDescription

from spotfunnel.audio.frames import FRAME_BYTES
from spotfunnel.audio.profiles import BROWSER_OPUS, EncodingIssue, analyse_audio, count_issue
from spotfunnel.transports.base import CallStarted, Dtmf, Hangup, InboundEvent, MarkPlayed, ProtocolIssue
from spotfunnel.transports.browser_guard import BrowserLimits, JunkGuard, PacedInbound
from spotfunnel.transports.browser_ws import CONTROL_TYPES, DTMF_DIGITS
from spotfunnel.transports.webrtc_audio import WebRtcAudioPath, first_channel_s16
from spotfunnel.transports.webrtc_track import FRAME_S, MAX_QUEUED_AGENT_FRAMES, AgentAudioTrack

__all__ = ["MAX_QUEUED_AGENT_FRAMES", "AgentAudioTrack", "WebRtcTransport", "loopback_candidates"]

log = logging.getLogger(__name__)

#: what an offer from the talk page holds: one audio section and the data channel's; a few more
#: are tolerated, hundreds (each one a transceiver, and without BUNDLE its own ICE sockets) are not
MAX_OFFER_MEDIA = 4
MAX_OFFER_CANDIDATES = 64
CLOSE_DEADLINE_S = 5.0
#: call events in the data channel's send buffer; beyond it (a page that does not acknowledge) events are dropped
MAX_CHANNEL_BUFFER_BYTES = 256 * 1024

# ---- loopback ICE candidates ---------------------------------------------------------------
# aioice gathers host candidates from every interface except 127.0.0.1 and offers no option to
# change that. A browser on the same machine (a developer's laptop, the Chromium test, a host
# whose only interface is loopback) needs it, so while `loopback_candidates` is active in
# the current context, gathering adds 127.0.0.1. The context variable keeps it to the one
# connection that asked; asyncio.gather copies the context into aioice's gathering tasks.
_LOOPBACK = contextvars.ContextVar("spotfunnel_webrtc_loopback", default=False)
_original_host_addresses: Callable[[bool, bool], list[str]] | None = None


def _host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    assert _original_host_addresses is not None
    addresses = list(_original_host_addresses(use_ipv4, use_ipv6))
    if _LOOPBACK.get() and use_ipv4 and "127.0.0.1" not in addresses:
        addresses.append("127.0.0.1")
    return addresses


@contextlib.contextmanager
def loopback_candidates(allowed: bool = True) -> Iterator[None]:
    """Within the block, ICE gathering in this context offers 127.0.0.1 too (or, with False, not)."""
    global _original_host_addresses
    if _original_host_addresses is None:
        _original_host_addresses = aioice.ice.get_host_addresses
        aioice.ice.get_host_addresses = _host_addresses
    token = _LOOPBACK.set(allowed)
    try:
        yield
    finally:
        _LOOPBACK.reset(token)


# ---- the transport -------------------------------------------------------------------------
class WebRtcTransport:
    """One browser call over WebRTC, as a `Transport`.

    `answer(offer)` sets up the peer connection and returns the SDP answer; CallStarted is queued at
    once (the tenant is the server's choice; a browser caller has no caller ID, the agent asks for
    the number). Inbound Opus is decoded by aiortc and converted to 640-byte frames, released at
    most at real-time pace; the data channel carries `dtmf` {digit} and `hangup` from the page, and
    the agent's `hangup`/`transfer` and the call's events (`send_event`) to it. A peer that never
    connects, or whose audio stops, ends the call at the limits' deadlines.
    """

    #: marks come back from the agent track once the audio before them has gone to the encoder: the
    #: queue that barge-in can still cut is ours, the browser's jitter buffer adds only tens of ms
    echoes_marks = True

    def __init__(self, *, tenant: str | None, limits: BrowserLimits = BrowserLimits()) -> None:
        #: never set from the page: a browser call runs on the wall clock
        self.lockstep = False
        self.limits = limits
        self.call_id = f"webrtc-{uuid.uuid4().hex[:12]}"
        self.path = WebRtcAudioPath()
        self.track = AgentAudioTrack(self.path, self._mark_played)
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))  # no STUN: host candidates only
        self.stats: dict[str, int] = {"frames_in": 0, "frames_out": 0, "issues": 0, "events_out": 0,
                                      "junk": 0, "dropped_in": 0, "dropped_events": 0}
        self.first_audio_in_wall: float | None = None
        self._inbound = PacedInbound(limits)
        self._arrived = asyncio.Event()
        self._guard = JunkGuard(limits)
        self._answered_at: float | None = None
        self._last_audio_at: float | None = None
        self._ended: Hangup | None = None
        self._channel: RTCDataChannel | None = None
        self._unsent: deque[str] = deque()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._opening = bytearray()
        self._opening_checked = False
        self._issues_seen: set[str] = set()
        self._put(CallStarted(call_id=self.call_id, caller_id="", called="", tenant_id=tenant or None))
        self.pc.on("track", self._on_track)
        self.pc.on("datachannel", self._on_datachannel)
        self.pc.on("connectionstatechange", self._on_connection_state)

    async def answer(self, offer: RTCSessionDescription, *, allow_loopback: bool = False) -> RTCSessionDescription:
        """Take the browser's offer; the answer carries our candidates (gathering is complete)."""
        if offer.type != "offer":
            raise ValueError(f"expected an SDP offer, got type {offer.type!r}")
        _check_offer_size(offer.sdp)
        try:
            await self.pc.setRemoteDescription(offer)
        except Exception as exc:  # aiortc raises assorted errors on SDP it cannot use
            raise ValueError(f"malformed or unsupported SDP offer ({type(exc).__name__}: {exc})") from exc
        if not any(t.kind == "audio" for t in self.pc.getTransceivers()):
            raise ValueError("the offer has no audio m-line: the page must add its microphone track")
        self.pc.addTrack(self.track)
        with loopback_candidates(allow_loopback):
            await self.pc.setLocalDescription(await self.pc.createAnswer())
        self._check_codec(self.pc.localDescription.sdp)
        self._answered_at = time.monotonic()
        self._spawn(self._watch_deadlines())
        return self.pc.localDescription

    def _check_codec(self, answer_sdp: str) -> None:
        """The agreed audio codec against the browser profile (Opus 48 kHz); another one still works."""
        audio = [m for m in SessionDescription.parse(answer_sdp).media if m.kind == "audio"]
        codecs = [c for c in audio[0].rtp.codecs if c.name.lower() not in ("telephone-event", "cn")] if audio else []
        if not codecs:
            self._encoding_issue(EncodingIssue("format", "no audio codec agreed with the browser"))
            return
        agreed = codecs[0]
        if agreed.name.lower() != BROWSER_OPUS.codec or agreed.clockRate != BROWSER_OPUS.sample_rate:
            self._encoding_issue(EncodingIssue("format", f"the browser agreed {agreed.name}/{agreed.clockRate}, "
                                                         f"not Opus/{BROWSER_OPUS.sample_rate} (the "
                                                         f"{BROWSER_OPUS.name} profile); audio is converted anyway"))

    # ---- inbound ----
    async def receive(self) -> InboundEvent:
        """The next inbound item, caller audio at most at real-time pace; Hangup once the call is over."""
        while True:
            if self._inbound:
                hold = self._inbound.wait_s(time.monotonic(), self._ended is not None)
                if hold <= 0:
                    return self._inbound.take(time.monotonic())
                await asyncio.sleep(hold)  # aiortc's callbacks queue what arrives meanwhile
            elif self._ended is not None:
                return self._ended
            else:
                self._arrived.clear()
                # bounded: the deadline watch ends the call when nothing arrives
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.limits.idle_timeout_s):
                        await self._arrived.wait()

    def _put(self, event: InboundEvent) -> None:
        self._inbound.put(event)
        self._arrived.set()

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind != "audio":
            self._issue(f"a {track.kind} track from the page ignored (audio only)")
            return
        self._spawn(self._read_track(track))

    async def _read_track(self, track: MediaStreamTrack) -> None:
        while self._ended is None:
            try:
                frame = await track.recv()
            except MediaStreamError:
                self._finish("caller's audio track ended")
                return
            self._on_frame(frame)  # type: ignore[arg-type]

    def _on_frame(self, frame: av.AudioFrame) -> None:
        if self.first_audio_in_wall is None:
            self.first_audio_in_wall = time.perf_counter()
        self._last_audio_at = time.monotonic()
        frames, issues = self.path.inbound(frame)
        for issue in issues:
            self._encoding_issue(issue)
        if not self._opening_checked:
            self._check_opening(frame)
        for pcm in frames:
            if self._inbound.put_audio(pcm):
                self.stats["frames_in"] += 1
            else:  # pushed faster than real time: the excess does not drive the call's clock
                self.stats["dropped_in"] += 1
        self._arrived.set()

    def _check_opening(self, frame: av.AudioFrame) -> None:
        """Dead line or clipping in the first second of decoded audio (the profile's audio check)."""
        self._opening += first_channel_s16(frame)
        if len(self._opening) >= BROWSER_OPUS.sample_rate * 2:
            self._opening_checked = True
            for issue in analyse_audio(bytes(self._opening), BROWSER_OPUS):
                self._encoding_issue(issue)
            self._opening.clear()

    def _on_datachannel(self, channel: RTCDataChannel) -> None:
        self._channel = channel
        channel.on("message", self.handle_message)
        channel.on("open", self._flush_events)
        if channel.readyState == "open":
            self._flush_events()

    def handle_message(self, message: str | bytes) -> None:
        """One data channel message from the page: `dtmf` {digit} or `hangup` (public for tests)."""
        if self._ended is not None:
            return
        if len(message) > self.limits.max_control_chars:  # refused unparsed
            self._junk(f"data channel message of {len(message)} characters refused unparsed (limit "
                       f"{self.limits.max_control_chars}; a dtmf message is ~30)")
            return
        try:
            msg = json.loads(message)
        except (json.JSONDecodeError, UnicodeDecodeError, TypeError):
            self._junk(f"malformed data channel message ignored: {str(message)[:80]!r}")
            return
        kind = msg.get("type") if isinstance(msg, dict) else None
        if kind == "dtmf":
            digit = msg.get("digit")
            if isinstance(digit, str) and digit.upper() in DTMF_DIGITS:
                self._guard.good()
                self._put(Dtmf(digit.upper()))
            else:
                self._junk(f"dtmf message with digit {str(digit)[:20]!r} ignored: use one of 0-9 * # A-D")
        elif kind == "hangup":
            self._finish("caller hung up")
        else:
            self._junk(f"unknown data channel message type {str(kind)[:40]!r} ignored; expected dtmf or hangup")

    def _on_connection_state(self) -> None:
        state = self.pc.connectionState
        if state in ("failed", "closed"):
            self._finish(f"WebRTC connection {state}")

    async def _watch_deadlines(self) -> None:
        """End the call when the peer never sends audio (ICE or DTLS never completed) or its audio stops."""
        while self._ended is None:
            overdue, reason = self._deadline()
            left = overdue - time.monotonic()
            if left <= 0:
                self._finish(reason)
                return
            await asyncio.sleep(left)

    def _deadline(self) -> tuple[float, str]:
        state = self.pc.connectionState
        if self._last_audio_at is None:
            limit = self.limits.connect_timeout_s
            assert self._answered_at is not None
            return self._answered_at + limit, (f"no audio from the browser within {limit:g} s "
                                               f"(WebRTC state {state}): ICE or DTLS did not complete")
        limit = self.limits.idle_timeout_s
        return self._last_audio_at + limit, f"the browser's audio stopped: nothing for {limit:g} s (WebRTC state {state})"

    def _finish(self, reason: str) -> None:
        if self._ended is not None:
            return
        for pcm in self.path.flush_inbound():
            self._inbound.put_audio(pcm)
        self._ended = Hangup(reason)
        self._put(self._ended)
        if self._inbound.dropped_frames:
            log.info("webrtc call %s: %d caller frames dropped (sent faster than real time)",
                     self.call_id, self._inbound.dropped_frames)
        log.info("webrtc call %s ended: %s", self.call_id, reason)

    def _encoding_issue(self, issue: EncodingIssue) -> None:
        count_issue("browser-webrtc", issue)
        self._issue(f"call {self.call_id}: {issue.message}")

    def _junk(self, message: str) -> None:
        """A message the page would not send: reported (rate-limited); too many end the call."""
        self.stats["junk"] += 1
        self._issue(message)
        if self._guard.spend():
            self._finish(f"closed: {self._guard.junk} malformed or unexpected data channel messages "
                         "(the page keeps sending junk)")

    def _issue(self, message: str) -> None:
        self.stats["issues"] += 1
        if message in self._issues_seen:
            return  # a per-frame problem is reported once, not fifty times a second
        if len(self._issues_seen) < self.limits.log_first_issues:
            self._issues_seen.add(message)
        line = self._guard.admit(message)
        if line is None:
            return  # counted; the log and the call's events stay small under a flood
        log.info("webrtc protocol issue (call %s): %s", self.call_id, line)
        self._put(ProtocolIssue(line))

    def _mark_played(self, name: str) -> None:
        self._put(MarkPlayed(name))

    # ---- outbound ----
    async def send_audio(self, pcm: bytes) -> None:
        if len(pcm) != FRAME_BYTES:
            raise ValueError(f"outbound frames must be {FRAME_BYTES} bytes, got {len(pcm)}")
        self.track.push(self.path.outbound(pcm))
        self.stats["frames_out"] += 1

    async def send_mark(self, name: str) -> None:
        self.track.push_mark(name)

    async def clear(self) -> None:
        self.track.clear()

    async def hangup(self) -> None:
        """Let the queued audio play out (bounded), tell the page, end the call; `close` frees it."""
        await self._drain_outbound()
        self._send_json({"type": "hangup", "reason": "agent hung up"})
        self._finish("agent hung up")

    async def transfer(self, to: str) -> bool:
        """A browser call cannot be bridged to a phone: the page is told the number, and the call ends."""
        await self._drain_outbound()
        self._send_json({"type": "transfer", "to": to})
        self._finish(f"transferred to {to}")
        return True

    async def send_event(self, event: Mapping[str, Any]) -> None:
        """A call event for the page over the data channel (held until the channel opens)."""
        kind = event.get("type")
        if not isinstance(kind, str) or kind in CONTROL_TYPES:
            raise ValueError(f"event type must be a string other than {sorted(CONTROL_TYPES)}, got {kind!r}")
        self._send_json(dict(event))
        self.stats["events_out"] += 1

    async def close(self) -> None:
        """Close the peer connection and stop the tasks (after the last event)."""
        self._finish("call closed")
        deadline = time.monotonic() + 2.0
        channel = self._channel
        while channel is not None and channel.bufferedAmount > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)  # the last events (the outcome) must reach the page first
        await asyncio.sleep(0.05)
        for task in list(self._tasks):
            task.cancel()
        self.track.stop()
        try:
            async with asyncio.timeout(CLOSE_DEADLINE_S):  # a vanished peer cannot hold the call open
                await self.pc.close()
        except TimeoutError:
            log.warning("webrtc call %s: the peer connection did not close within %g s", self.call_id,
                        CLOSE_DEADLINE_S)

    async def _drain_outbound(self, limit_s: float = 5.0) -> None:
        deadline = time.monotonic() + limit_s
        while self.track.queued_frames and time.monotonic() < deadline and self.pc.connectionState == "connected":
            await asyncio.sleep(FRAME_S)

    def _send_json(self, message: dict[str, Any]) -> None:
        text = json.dumps(message, separators=(",", ":"), default=str)
        channel = self._channel
        if channel is not None and channel.bufferedAmount > MAX_CHANNEL_BUFFER_BYTES:
            self.stats["dropped_events"] += 1  # the page stopped acknowledging: it is gone or stuck
            return
        if channel is None or channel.readyState != "open":
            if len(self._unsent) >= self.limits.max_held_events:  # a page that never opens its channel
                self._unsent.popleft()
                self.stats["dropped_events"] += 1
            self._unsent.append(text)
            return
        channel.send(text)

    def _flush_events(self) -> None:
        channel = self._channel
        while channel is not None and channel.readyState == "open" and self._unsent:
            channel.send(self._unsent.popleft())

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _check_offer_size(sdp: str) -> None:
    """Refuse an offer with more media sections or candidates than a talk page sends, before aiortc builds them."""
    lines = sdp.splitlines()
    media = sum(1 for line in lines if line.startswith("m="))
    candidates = sum(1 for line in lines if line.startswith("a=candidate:"))
    if media > MAX_OFFER_MEDIA:
        raise ValueError(f"{media} media sections (m= lines); a call from the talk page has 2 (audio and its "
                         f"data channel), at most {MAX_OFFER_MEDIA} are accepted")
    if candidates > MAX_OFFER_CANDIDATES:
        raise ValueError(f"{candidates} ICE candidates; at most {MAX_OFFER_CANDIDATES} are accepted")
