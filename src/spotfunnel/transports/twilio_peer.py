"""A Twilio Media Streams client that plays Twilio's part (caller audio out, playback buffer, mark echoes) for tests and eval."""
from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import uuid
import xml.etree.ElementTree as ET
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import httpx
import websockets
from websockets.exceptions import ConnectionClosed

from spotfunnel.audio.frames import FRAME_BYTES
from spotfunnel.audio.g711 import ulaw_decode, ulaw_encode
from spotfunnel.audio.resample import SteadyResampler

__all__ = ["TwilioPeer", "answer_like_twilio"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Mark:
    name: str


class TwilioPeer:
    """Plays Twilio against a Media Streams server over a real websocket.

    `exchange(frame)` sends one 20 ms caller frame and returns the 20 ms of agent audio the caller
    hears during that tick (PCM16 16 kHz, 640 bytes) or None. Agent media go into a playback
    buffer; `clear` empties it (echoing the marks it held, as Twilio does); a mark is echoed when
    playback reaches it. In lockstep mode each exchange waits for one agent media message (the
    server runs the call in lockstep only when eval's harness asked for it in process: nothing this
    peer sends can switch it on). Pacing in real time is the caller's job, not the peer's.
    """

    def __init__(
        self,
        url: str,
        custom_parameters: Mapping[str, str] | None = None,
        *,
        lockstep: bool = False,
        caller: str = "+15550100001",
        called: str = "+15550100002",
        lockstep_timeout_s: float = 30.0,
        call_sid: str | None = None,
    ) -> None:
        self.url = url
        self.lockstep = lockstep
        self.custom_parameters = dict(custom_parameters or {})
        self.caller = caller
        self.called = called
        self.lockstep_timeout_s = lockstep_timeout_s
        self.stream_sid = "MZ" + uuid.uuid4().hex
        self.call_sid = call_sid or "CA" + uuid.uuid4().hex
        self.account_sid = "AC" + uuid.uuid4().hex
        #: True once the socket is closed; if the server closed it, the agent hung up (`ended_reason`)
        self.closed = False
        self.ended_reason: str | None = None
        self.marks_echoed: list[str] = []
        self.clears_received = 0
        self.media_received = 0
        self._ws: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._closed_event = asyncio.Event()
        self._arrived = asyncio.Condition()
        self._credits = 0  # agent media messages not yet matched to a lockstep exchange
        self._playback: deque[bytes | _Mark] = deque()
        self._decoder = SteadyResampler(8000, 16_000)
        self._encoder = SteadyResampler(16_000, 8000)
        self._send_lock = asyncio.Lock()
        self._seq = 0
        self._chunk = 0
        self._timestamp_ms = 0.0
        self._we_hung_up = False

    # ---- lifecycle -----------------------------------------------------------------------

    async def connect(self) -> None:
        """Open the websocket and send `connected` and `start` as Twilio does."""
        self._ws = await websockets.connect(self.url, open_timeout=10)
        await self._send({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        await self._send(self._start_message())
        self._reader = asyncio.create_task(self._read_loop(), name="twilio-peer-reader")

    def _start_message(self) -> dict[str, Any]:
        self._seq += 1
        return {
            "event": "start",
            "sequenceNumber": str(self._seq),
            "streamSid": self.stream_sid,
            "start": {
                "accountSid": self.account_sid,
                "streamSid": self.stream_sid,
                "callSid": self.call_sid,
                "from": self.caller,
                "to": self.called,
                "tracks": ["inbound"],
                "customParameters": self.custom_parameters,
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            },
        }

    async def __aenter__(self) -> TwilioPeer:
        await self.connect()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.hangup()

    async def wait_closed(self, timeout_s: float | None = None) -> bool:
        """Wait until the socket is closed; False on timeout."""
        try:
            await asyncio.wait_for(self._closed_event.wait(), timeout_s)
        except asyncio.TimeoutError:
            return False
        return True

    async def hangup(self) -> None:
        """The caller hangs up: send `stop` and close the socket (no-op when already closed)."""
        if not self.closed:
            self._we_hung_up = True
            self._seq += 1
            await self._send({"event": "stop", "sequenceNumber": str(self._seq), "streamSid": self.stream_sid,
                              "stop": {"accountSid": self.account_sid, "callSid": self.call_sid}})
            if self._ws is not None:
                await self._ws.close()
            self._mark_closed("caller hung up")
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)

    # ---- caller side ---------------------------------------------------------------------

    async def exchange(self, frame16k: bytes) -> bytes | None:
        """Send one caller frame; return the 20 ms of agent audio heard meanwhile (or None).

        After the socket closed nothing is sent and the remaining playback drains.
        """
        if self._ws is None:
            raise RuntimeError("TwilioPeer.exchange called before connect()")
        if not self.closed:
            await self._send_media(frame16k)
            if self.lockstep:
                await self._await_agent_media()
        frame, passed = self._pop_frame()
        await self._echo(passed)
        return frame

    async def send_dtmf(self, digit: str) -> None:
        """Press a key: a `dtmf` message as Twilio sends it."""
        self._seq += 1
        await self._send({"event": "dtmf", "sequenceNumber": str(self._seq), "streamSid": self.stream_sid,
                          "dtmf": {"track": "inbound_track", "digit": digit}})

    async def _send_media(self, frame16k: bytes) -> None:
        mulaw = ulaw_encode(self._encoder.process(frame16k))
        self._seq += 1
        self._chunk += 1
        message = {
            "event": "media",
            "sequenceNumber": str(self._seq),
            "streamSid": self.stream_sid,
            "media": {"track": "inbound", "chunk": str(self._chunk), "timestamp": str(int(self._timestamp_ms)),
                      "payload": base64.b64encode(mulaw).decode("ascii")},
        }
        self._timestamp_ms += len(mulaw) / 8.0
        await self._send(message)

    async def _await_agent_media(self) -> None:
        async with self._arrived:
            try:
                await asyncio.wait_for(
                    self._arrived.wait_for(lambda: self._credits > 0 or self.closed), self.lockstep_timeout_s)
            except asyncio.TimeoutError:
                raise TimeoutError(f"lockstep: the server sent no media within {self.lockstep_timeout_s:g} s "
                                   f"of caller frame {self._chunk} (stream {self.stream_sid})") from None
            if self._credits > 0:
                self._credits -= 1

    # ---- playback model ------------------------------------------------------------------

    def _pop_frame(self) -> tuple[bytes | None, list[str]]:
        """Take the next 20 ms from the playback buffer; also the marks playback passed."""
        out = bytearray()
        passed: list[str] = []
        while self._playback and (len(out) < FRAME_BYTES or isinstance(self._playback[0], _Mark)):
            item = self._playback.popleft()
            if isinstance(item, _Mark):
                passed.append(item.name)
                continue
            take = FRAME_BYTES - len(out)
            out += item[:take]
            if len(item) > take:
                self._playback.appendleft(item[take:])
        if not out:
            return None, passed
        return bytes(out) + bytes(FRAME_BYTES - len(out)), passed

    def _on_agent_media(self, message: dict[str, Any]) -> None:
        media = message.get("media")
        payload = media.get("payload") if isinstance(media, dict) else None
        try:
            mulaw = base64.b64decode(payload, validate=True) if isinstance(payload, str) else None
        except (binascii.Error, ValueError):
            mulaw = None
        if mulaw is None:
            log.warning("twilio peer: media message without a valid payload: %.80s", message)
        else:
            pcm = self._decoder.process(ulaw_decode(mulaw))
            if pcm:
                self._playback.append(pcm)
        self.media_received += 1
        self._credits += 1

    def _on_clear(self) -> list[str]:
        """Twilio empties its buffer and returns every mark still waiting in it."""
        self.clears_received += 1
        passed = [item.name for item in self._playback if isinstance(item, _Mark)]
        self._playback.clear()
        self._decoder = SteadyResampler(8000, 16_000)  # drop the filter's tail of the cut audio
        return passed

    def _on_mark(self, message: dict[str, Any]) -> list[str]:
        mark = message.get("mark")
        name = mark.get("name") if isinstance(mark, dict) else None
        if not isinstance(name, str):
            log.warning("twilio peer: mark message without a name: %.80s", message)
            return []
        if not self._playback:
            return [name]  # nothing left to play: it has been played
        self._playback.append(_Mark(name))
        return []

    # ---- socket --------------------------------------------------------------------------

    async def _read_loop(self) -> None:
        try:
            async for raw in self._ws:
                await self._handle(raw)
        except ConnectionClosed:
            pass
        finally:
            self._mark_closed("caller hung up" if self._we_hung_up else "agent hung up")
            async with self._arrived:
                self._arrived.notify_all()  # wake a lockstep exchange waiting for media

    async def _handle(self, raw: str | bytes) -> None:
        try:
            message = json.loads(raw)
        except json.JSONDecodeError:
            log.warning("twilio peer: server sent malformed JSON: %.80r", raw)
            return
        event = message.get("event") if isinstance(message, dict) else None
        passed: list[str] = []
        async with self._arrived:
            if event == "media":
                self._on_agent_media(message)
            elif event == "clear":
                passed = self._on_clear()
            elif event == "mark":
                passed = self._on_mark(message)
            else:
                log.warning("twilio peer: unexpected message from server: %.80r", raw)
            self._arrived.notify_all()
        await self._echo(passed)

    async def _echo(self, names: list[str]) -> None:
        for name in names:
            self.marks_echoed.append(name)
            self._seq += 1
            await self._send({"event": "mark", "sequenceNumber": str(self._seq), "streamSid": self.stream_sid,
                              "mark": {"name": name}})

    async def _send(self, message: dict[str, Any]) -> None:
        if self._ws is None or self.closed:
            return
        try:
            async with self._send_lock:
                await self._ws.send(json.dumps(message))
        except ConnectionClosed:
            self._mark_closed("caller hung up" if self._we_hung_up else "agent hung up")

    def _mark_closed(self, reason: str) -> None:
        if not self.closed:
            self.closed = True
            self.ended_reason = reason
            self._closed_event.set()


async def answer_like_twilio(server: str, *, caller: str, called: str, lockstep: bool = False,
                             timeout_s: float = 10.0, call_sid: str | None = None,
                             webhook: str = "/twilio/voice") -> TwilioPeer:
    """Ring `server` (http://host:port) as Twilio does: POST the voice webhook, then a peer for the TwiML's <Stream>.

    The stream URL and its parameters (the single-use stream token) are whatever the webhook
    answered; the peer is not connected yet. Raises ValueError when the server answered without a
    stream (a refusal such as "number not in service" or "all lines busy"). An outbound call we
    placed: `webhook` is the Url given to Twilio (with our call id), `call_sid` Twilio's sid, and
    the person called is `caller` (Twilio's To) while `called` is the tenant's number (From).
    """
    call_sid = call_sid or "CA" + uuid.uuid4().hex
    outbound = "?outbound=" in webhook
    form = {"CallSid": call_sid, "AccountSid": "AC" + uuid.uuid4().hex, "From": called if outbound else caller,
            "To": caller if outbound else called, "Direction": "outbound-api" if outbound else "inbound",
            "CallStatus": "in-progress" if outbound else "ringing"}
    try:
        async with httpx.AsyncClient(timeout=timeout_s) as http:
            response = await http.post(f"{server.rstrip('/')}{webhook}", data=form)
    except httpx.HTTPError as exc:
        raise ValueError(f"no answer from {server} ({type(exc).__name__}); is `spotfunnel serve` running?") from None
    if response.status_code != 200:
        raise ValueError(f"the voice webhook answered HTTP {response.status_code}: {response.text[:200]}")
    try:
        stream = ET.fromstring(response.text).find("./Connect/Stream")
    except ET.ParseError as exc:
        raise ValueError(f"the voice webhook's TwiML does not parse ({exc}): {response.text[:200]}") from None
    if stream is None or not stream.get("url"):
        raise ValueError(f"the server did not connect a stream: {response.text[:300]}")
    params = {p.get("name", ""): p.get("value", "") for p in stream.findall("Parameter")}
    return TwilioPeer(str(stream.get("url")), params, lockstep=lockstep, caller=caller, called=called,
                      call_sid=call_sid, lockstep_timeout_s=timeout_s * 3)
