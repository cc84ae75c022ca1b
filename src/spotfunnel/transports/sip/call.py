"""One SIP call as a `Transport`: RTP in -> steady 20 ms frames and events; agent frames -> RTP out; BYE and REFER."""
from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Callable, Protocol

from spotfunnel.transports.base import AudioIn, CallStarted, Dtmf, Hangup, InboundEvent, MarkPlayed
from spotfunnel.transports.sip.media import SipMediaCodec

__all__ = ["CallControl", "SipCallTransport"]

log = logging.getLogger(__name__)

TICK_S = 0.02
#: inbound items held for an agent that does not read (20 s of frames): past it new ones are dropped
#: and counted, so a flood of RTP cannot grow memory without bound
MAX_PENDING = 1000
#: caller audio held for pacing (500 ms): RTP that arrives faster than real time waits here and is
#: released one 20 ms frame per tick; past it frames are dropped and counted (`frames_dropped_fast`),
#: so a sender cannot run the call's audio clock at its own pace
MAX_PACED = 25
CONTROL_EVENTS = (Dtmf, MarkPlayed, Hangup)


class CallControl(Protocol):
    """What the SIP server does for a call's transport: end the dialog, hand the caller on."""

    async def bye(self) -> None: ...

    async def refer(self, to: str) -> bool: ...


class SipCallTransport:
    """The agent's side of one SIP call.

    Inbound RTP goes through `SipMediaCodec`; in real time a 20 ms ticker keeps frames coming while
    the caller sends nothing (hold, DTX, loss). Outbound frames become RTP at once, numbered on the
    call's 20 ms grid, so the far end hears them in step with the frames it sent. There is no
    playback report in RTP: a mark counts as played once the audio before it is on the wire.

    In real time inbound audio is paced on the wall clock at the edge: each tick hands the agent one
    20 ms frame, whatever the sender's pace. `lockstep` (set in process by a test harness, never by
    anything the caller sends) means the caller's packets pace everything, one out per one in.
    """

    def __init__(self, started: CallStarted, codec: SipMediaCodec, send_rtp: Callable[[bytes], None],
                 control: CallControl, *, lockstep: bool = False) -> None:
        self.started = started
        self.codec = codec
        self.lockstep = lockstep
        self._send_rtp = send_rtp
        self._control = control
        self._pending: deque[InboundEvent] = deque([started])
        self._paced: deque[AudioIn] = deque()  # caller audio waiting for its tick (real time only)
        self._wake = asyncio.Event()
        self._ended: Hangup | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._frames_delivered = 0
        self.control_requests: list[tuple[str, str]] = []

    @property
    def call_id(self) -> str:
        return self.started.call_id

    @property
    def stats(self) -> dict[str, int]:
        return dict(self.codec.stats)

    def start(self) -> None:
        """Start the real-time ticker (not needed in lockstep, where the caller's packets pace everything)."""
        if not self.lockstep and self._ticker is None:
            self._ticker = asyncio.create_task(self._tick_forever(), name=f"sip-tick-{self.call_id}")

    # ---- inbound ---------------------------------------------------------------------------

    def on_rtp(self, data: bytes) -> None:
        """A datagram arrived on the call's media port."""
        if self._ended is None:
            self._route(self.codec.decode_packet(data, asyncio.get_running_loop().time()))

    def on_dtmf(self, digit: str) -> None:
        """A digit signalled out of band (SIP INFO)."""
        if self._ended is None:
            self._queue([Dtmf(digit)])

    def _queue(self, events: list[InboundEvent]) -> None:
        """Queue for the agent; past MAX_PENDING items audio (and notices) are dropped, not digits or marks."""
        for event in events:
            # control events get headroom above the cap, still bounded against a caller flooding digits
            cap = 2 * MAX_PENDING if isinstance(event, CONTROL_EVENTS) else MAX_PENDING
            if len(self._pending) >= cap:
                if self.codec.stats["events_dropped"] == 0:
                    log.warning("sip call %s: the agent is %d items behind; dropping new items", self.call_id,
                                len(self._pending))
                self.codec.stats["events_dropped"] += 1
                continue
            self._pending.append(event)
        if events:
            self._wake.set()

    def _route(self, events: list[InboundEvent]) -> None:
        """In real time audio waits for its tick (bounded); in lockstep, and other events always, go straight on."""
        if self.lockstep:
            self._queue(events)
            return
        for event in events:
            if not isinstance(event, AudioIn):
                self._queue([event])
            elif len(self._paced) < MAX_PACED:
                self._paced.append(event)
            else:
                if self.codec.stats["frames_dropped_fast"] == 0:
                    log.warning("sip call %s: caller audio arrives faster than real time; dropping the excess",
                                self.call_id)
                self.codec.stats["frames_dropped_fast"] += 1

    async def _tick_forever(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time()
        while self._ended is None:
            deadline += TICK_S
            await asyncio.sleep(max(0.0, deadline - loop.time()))
            self._route(self.codec.tick(loop.time(), fill=not self._paced))
            if self._paced:  # one frame of audio time per 20 ms of wall time
                self._queue([self._paced.popleft()])

    async def receive(self) -> InboundEvent:
        """The next inbound item; Hangup once the call is over (and on every call after)."""
        while not self._pending:
            if self._ended is not None:
                return self._ended
            self._wake.clear()
            await self._wake.wait()
        item = self._pending.popleft()
        if isinstance(item, AudioIn):
            self._frames_delivered += 1
        return item

    def end(self, reason: str) -> None:
        """The call is over (BYE, CANCEL, agent hang-up, server stop): flush held audio, then Hangup."""
        if self._ended is not None:
            return
        self._queue(list(self._paced))
        self._paced.clear()
        self._queue(self.codec.finish())
        self._ended = Hangup(reason)
        self._pending.append(self._ended)
        self._wake.set()
        if self._ticker is not None:
            self._ticker.cancel()
        log.info("sip call %s ended: %s (%s)", self.call_id, reason, dict(self.codec.stats))

    # ---- outbound --------------------------------------------------------------------------

    async def send_audio(self, pcm: bytes) -> None:
        """One 20 ms agent frame, placed on the grid of the caller frame it answers."""
        if self._ended is not None:
            return
        for packet in self.codec.encode_frame(pcm, slot=max(0, self._frames_delivered - 1)):
            self._send_rtp(packet)

    async def send_mark(self, name: str) -> None:
        if self._ended is None:
            self._queue([MarkPlayed(name)])

    async def clear(self) -> None:
        self.codec.clear()

    async def hangup(self) -> None:
        """The agent ends the call: BYE to the caller."""
        if self._ended is not None:
            return
        self.control_requests.append(("hangup", ""))
        self.end("agent hung up")
        await self._control.bye()

    async def transfer(self, to: str) -> bool:
        """Hand the caller to `to` with a REFER (blind transfer), then leave the call with BYE.

        True either way: the call leaves the agent even when the far end refuses the REFER.
        """
        if self._ended is not None:
            return True
        self.control_requests.append(("transfer", to))
        self.end(f"transferred to {to}")
        accepted = await self._control.refer(to)
        if not accepted:
            log.warning("sip call %s: the caller's side refused the transfer to %s; ending the call", self.call_id, to)
        await self._control.bye()
        return True
