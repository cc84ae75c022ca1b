"""The in-process transport: a caller line and an agent side joined by queues (eval and tests)."""
from __future__ import annotations

import asyncio
from collections import deque
from typing import Union

from spotfunnel.audio.frames import FRAME_BYTES
from spotfunnel.transports.base import AudioIn, CallStarted, Dtmf, Hangup, InboundEvent, MarkPlayed

_Out = Union[bytes, tuple[str, str]]  # audio frame, or ("mark", name) / ("clear", "") / ("hangup", "")


class LocalTransport:
    """The agent's side of an in-process call."""

    echoes_marks = True  # the caller line echoes each mark once the audio before it has played

    def __init__(self, lockstep: bool) -> None:
        self.lockstep = lockstep
        self.inbound: asyncio.Queue[InboundEvent] = asyncio.Queue()
        self.outbound: asyncio.Queue[_Out] = asyncio.Queue()
        self.control_requests: list[tuple[str, str]] = []
        self.closed = False

    async def receive(self) -> InboundEvent:
        if self.closed and self.inbound.empty():
            return Hangup("transport closed")
        return await self.inbound.get()

    async def send_audio(self, pcm: bytes) -> None:
        if len(pcm) != FRAME_BYTES:
            raise ValueError(f"outbound frames must be {FRAME_BYTES} bytes, got {len(pcm)}")
        self.outbound.put_nowait(pcm)

    async def send_mark(self, name: str) -> None:
        self.outbound.put_nowait(("mark", name))

    async def clear(self) -> None:
        self.outbound.put_nowait(("clear", ""))

    async def hangup(self) -> None:
        self.control_requests.append(("hangup", ""))
        self.outbound.put_nowait(("hangup", ""))
        self.closed = True
        self.inbound.put_nowait(Hangup("agent hung up"))

    async def transfer(self, to: str) -> bool:
        self.control_requests.append(("transfer", to))
        self.outbound.put_nowait(("hangup", "transfer"))
        self.closed = True
        self.inbound.put_nowait(Hangup(f"transferred to {to}"))
        return True


class LocalCallerLine:
    """The caller's handset: sends 20 ms frames, hears the agent's audio as a phone would play it."""

    def __init__(self, transport: LocalTransport) -> None:
        self._t = transport
        self._playback: deque[bytes | str] = deque()  # audio frames and mark names, in order
        self.closed = False
        self.ended_reason = ""

    async def start(self, call: CallStarted) -> None:
        self._t.inbound.put_nowait(call)

    async def exchange(self, frame: bytes) -> bytes | None:
        """Send one caller frame; return the agent audio heard during this 20 ms (or None)."""
        if self.closed:
            return None
        self._t.inbound.put_nowait(AudioIn(frame))
        if self._t.lockstep:
            await self._drain(wait_for_audio=True)
        else:
            await self._drain(wait_for_audio=False)
        return self._play_one()

    async def _drain(self, wait_for_audio: bool) -> None:
        while True:
            if wait_for_audio and not self.closed:
                item = await self._t.outbound.get()
            else:
                try:
                    item = self._t.outbound.get_nowait()
                except asyncio.QueueEmpty:
                    return
            if isinstance(item, bytes):
                self._playback.append(item)
                if wait_for_audio:
                    return
            elif item[0] == "mark":
                self._playback.append(item[1])
            elif item[0] == "clear":
                self._playback = deque(x for x in self._playback if isinstance(x, str))
            elif item[0] == "hangup":
                self.closed = True
                self.ended_reason = item[1] or "agent hung up"
                return

    def _play_one(self) -> bytes | None:
        heard: bytes | None = None
        while self._playback:
            item = self._playback.popleft()
            if isinstance(item, str):
                self._t.inbound.put_nowait(MarkPlayed(item))
                continue
            heard = item
            break
        while self._playback and isinstance(self._playback[0], str):
            self._t.inbound.put_nowait(MarkPlayed(str(self._playback.popleft())))
        return heard

    async def send_dtmf(self, digit: str) -> None:
        self._t.inbound.put_nowait(Dtmf(digit))

    async def hangup(self) -> None:
        self.closed = True
        self._t.inbound.put_nowait(Hangup("caller hung up"))
