"""One call's RTP media path without a socket: RTP in -> 20 ms PCM16 16 kHz frames and DTMF; frames -> RTP out."""
from __future__ import annotations

import logging
from collections import Counter
from dataclasses import replace
from typing import Callable

import numpy as np

from spotfunnel.audio.frames import FRAME_BYTES, SILENCE_FRAME
from spotfunnel.audio.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from spotfunnel.audio.levels import rms_dbfs
from spotfunnel.audio.profiles import SIP_PCMA, SIP_PCMU, EncodingIssue, EncodingProfile, StreamCheck, count_issue
from spotfunnel.audio.resample import SteadyResampler
from spotfunnel.transports.base import AudioIn, Dtmf, InboundEvent, ProtocolIssue
from spotfunnel.transports.sip.dtmf import DtmfError, DtmfReceiver
from spotfunnel.transports.sip.jitter import Gap, JitterBuffer, Played
from spotfunnel.transports.sip.rtp import RtpError, RtpPacket, RtpSender, parse_rtp
from spotfunnel.transports.sip.sdp import AgreedMedia

__all__ = ["SipMediaCodec", "sip_profile"]

log = logging.getLogger(__name__)

RATE = 8000
FRAME8K_SAMPLES = 160  # 20 ms at 8 kHz
COMFORT_NOISE_PT = 13  # RFC 3389: the sender is silent; we play silence for it
FILL_AFTER_S = 0.06  # no audio packet for this long: the caller's side went quiet (DTX, hold, loss)
LOUD_DBFS = -45.0  # an inbound frame above this counts as voiced in the stats
#: the most payload one packet may carry: 60 ms of G.711 (the longest ptime we agree to); the size
#: comes from the peer, so a larger packet is dropped rather than decoded into a burst of frames
MAX_PAYLOAD_BYTES = 480
_CODECS: dict[str, tuple[Callable[[bytes], bytes], Callable[[bytes], bytes]]] = {
    "PCMU": (ulaw_decode, ulaw_encode), "PCMA": (alaw_decode, alaw_encode),
}


def sip_profile(agreed: AgreedMedia) -> EncodingProfile:
    """The encoding profile that SDP agreed for a call: G.711 at 8 kHz with the agreed packet length."""
    return replace(SIP_PCMU if agreed.codec == "PCMU" else SIP_PCMA, frame_ms=agreed.ptime)


class SipMediaCodec:
    """Decodes inbound RTP and encodes outbound audio for one call (pure: no sockets, no tasks).

    Inbound: `decode_packet` validates the header and payload type, passes telephone-events to
    the DTMF receiver, orders audio through the jitter buffer, decodes G.711, conceals lost
    packets (the last frame at half level, then silence) and resamples to 16 kHz, returning whole
    640-byte frames. In real time (`realtime=True`) `tick(now)` must be called about every 20 ms:
    it releases holes the buffer gave up on and plays silence while no audio arrives, so the voice
    side always gets steady frames. Outbound: `encode_frame` turns one 640-byte frame into zero or
    more RTP packets of the agreed ptime.
    """

    def __init__(self, agreed: AgreedMedia, *, realtime: bool = True, label: str = "") -> None:
        if agreed.codec not in _CODECS:
            raise ValueError(f"unsupported codec {agreed.codec!r}; SIP calls use PCMU or PCMA")
        self.agreed = agreed
        self.label = label
        self.realtime = realtime
        self.profile = sip_profile(agreed)
        self._decode, self._encode = _CODECS[agreed.codec]
        self.jitter = JitterBuffer(depth=3 if realtime else 1)
        self.dtmf = DtmfReceiver()
        self.stream_check = StreamCheck(self.profile)
        self.sender = RtpSender(agreed.payload_type)
        self._up = SteadyResampler(RATE, 16_000)
        self._down = SteadyResampler(16_000, RATE)
        self._in8k = bytearray()
        self._last8k = bytes(FRAME8K_SAMPLES * 2)
        self._packet_samples = agreed.samples_per_packet  # fixed by SDP: a lost packet is concealed as this long
        self._concealed_run = 0
        self._last_audio_at: float | None = None
        self._fill_anchor: float | None = None
        self._filled = 0
        self._out8k = bytearray()
        self._out_pos = 0
        self._out_silent = True
        self.issues: Counter[str] = Counter()
        self.stats: Counter[str] = Counter()

    # ---- inbound ---------------------------------------------------------------------------

    def decode_packet(self, data: bytes, now: float | None = None) -> list[InboundEvent]:
        """One datagram in; the frames, digits and issues it completes, in order."""
        self.stats["packets_in"] += 1
        try:
            packet = parse_rtp(data)
        except RtpError as exc:
            return self._issue("malformed", f"malformed RTP packet dropped: {exc}")
        if len(packet.payload) > MAX_PAYLOAD_BYTES:
            self.stats["packets_oversized"] += 1
            return self._issue("oversized", f"RTP packet of {len(packet.payload)} payload bytes dropped "
                                            f"(at most {MAX_PAYLOAD_BYTES}, 60 ms of G.711)")
        pt = packet.payload_type
        if pt == self.agreed.dtmf_payload_type:
            out = self._on_event(packet)
            if packet.ssrc == self.jitter.ssrc:  # same stream: its sequence number is no loss
                self._push(packet, now)
            return out + self._play(self.jitter.pop_ready(now if self.realtime else None))
        out = []
        if pt not in (self.agreed.payload_type, COMFORT_NOISE_PT):
            out = self._wrong_payload_type(pt)
            if packet.ssrc != self.jitter.ssrc:
                return out
        else:
            self._last_audio_at = now
            self._fill_anchor = None
        self._push(packet, now)
        return out + self._play(self.jitter.pop_ready(now if self.realtime else None))

    def tick(self, now: float, *, fill: bool = True) -> list[InboundEvent]:
        """Real-time housekeeping every ~20 ms: release expired holes, play silence while none arrives.

        `fill=False`: the caller's audio is still queued downstream, so no silence is made up (yet).
        """
        out = self._play(self.jitter.pop_ready(now))
        quiet_since = self._last_audio_at
        if not fill:
            self._fill_anchor = None
        elif len(self.jitter) == 0 and (quiet_since is None or now - quiet_since >= FILL_AFTER_S):
            if self._fill_anchor is None:
                self._fill_anchor, self._filled = now, 0
            due = int((now - self._fill_anchor) / 0.02) - self._filled
            for _ in range(max(0, due)):
                self._filled += 1
                self.stats["filled_frames"] += 1
                self._in8k += bytes(FRAME8K_SAMPLES * 2)
            out += self._frames()
        return out

    def finish(self) -> list[InboundEvent]:
        """End of the stream: play what the buffer still holds; the last partial frame is padded."""
        out = self._play(self.jitter.pop_ready(force=True))
        if self._in8k:
            self._in8k += bytes(FRAME8K_SAMPLES * 2 - len(self._in8k) % (FRAME8K_SAMPLES * 2))
            out += self._frames()
        return out

    def _push(self, packet: RtpPacket, now: float | None) -> None:
        result = self.jitter.push(packet, now or 0.0)
        if result != "accepted":
            self.stats[f"packets_{result}"] += 1
        if result == "duplicate":
            log.debug("sip media %s: duplicate RTP seq %d dropped", self.label, packet.sequence)
        elif result == "late":
            self._issue("late", f"late RTP packet (seq {packet.sequence}) dropped: its slot was already concealed")

    def _on_event(self, packet: RtpPacket) -> list[InboundEvent]:
        try:
            digit = self.dtmf.feed(packet.ssrc, packet.timestamp, packet.payload)
        except DtmfError as exc:
            return self._issue("dtmf", f"telephone-event ignored: {exc}")
        if digit is None:
            return []
        self.stats["dtmf"] += 1
        return [Dtmf(digit)]

    def _wrong_payload_type(self, pt: int) -> list[InboundEvent]:
        self.stats["wrong_payload_type"] += 1
        if self.issues[f"pt{pt}"]:
            self.issues[f"pt{pt}"] += 1
            return []  # reported once per payload type; the stats count every packet
        self.issues[f"pt{pt}"] += 1
        expected = f"{self.agreed.payload_type} ({self.agreed.codec})"
        if self.agreed.dtmf_payload_type is not None:
            expected += f" or {self.agreed.dtmf_payload_type} (telephone-event)"
        issue = EncodingIssue("format", f"RTP payload type {pt} is not what SDP agreed: expected {expected}; "
                                        "those packets are played as silence")
        count_issue("sip", issue)
        return [self._issue_event(issue.message)]

    def _play(self, items: list[Played]) -> list[InboundEvent]:
        out: list[InboundEvent] = []
        for item in items:
            if isinstance(item, Gap):
                self._conceal(item.packets * self._packet_samples)
                continue
            pt = item.payload_type
            if pt == self.agreed.payload_type:
                for issue in self.stream_check.add_payload(item.payload):
                    count_issue("sip", issue)
                    out.append(self._issue_event(issue.message))
                self._in8k += self._decode(item.payload)
                self._concealed_run = 0
            elif pt != self.agreed.dtmf_payload_type:  # comfort noise or a wrong type: silence
                self._in8k += bytes(self._packet_samples * 2)
        return out + self._frames()

    def _conceal(self, samples: int) -> None:
        """Packet loss concealment: the first lost 20 ms repeats the last frame at half level, then silence."""
        self.stats["concealed_samples"] += samples
        while samples > 0:
            n = min(samples, FRAME8K_SAMPLES)
            if self._concealed_run == 0:
                faded = (np.frombuffer(self._last8k, dtype="<i2") // 2).astype("<i2").tobytes()
                self._in8k += faded[: n * 2]
            else:
                self._in8k += bytes(n * 2)
            self._concealed_run += 1
            samples -= n

    def _frames(self) -> list[InboundEvent]:
        out: list[InboundEvent] = []
        size = FRAME8K_SAMPLES * 2
        while len(self._in8k) >= size:
            chunk = bytes(self._in8k[:size])
            del self._in8k[:size]
            self._last8k = chunk
            frame = self._up.process(chunk)
            self.stats["frames_in"] += 1
            if rms_dbfs(frame) > LOUD_DBFS:
                self.stats["loud_frames_in"] += 1
            out.append(AudioIn(frame))
        return out

    def _issue(self, kind: str, message: str) -> list[InboundEvent]:
        """Report the first three of each kind, then every hundredth (a flood must not flood the log)."""
        self.issues[kind] += 1
        n = self.issues[kind]
        if n > 3 and n % 100:
            return []
        suffix = f" ({n} so far)" if n > 3 else ""
        return [self._issue_event(message + suffix)]

    def _issue_event(self, message: str) -> ProtocolIssue:
        text = f"call {self.label}: {message}" if self.label else message
        log.info("sip media issue: %s", text)
        return ProtocolIssue(text)

    # ---- outbound --------------------------------------------------------------------------

    def encode_frame(self, pcm16k: bytes, slot: int | None = None) -> list[bytes]:
        """One 20 ms agent frame -> the RTP packets (wire bytes) it completes.

        `slot` is the frame's place on the call's 20 ms grid; a slot past the last one sent means
        the agent was silent in between: the timestamp jumps and the marker bit starts a talk spurt.
        """
        if len(pcm16k) != FRAME_BYTES:
            raise ValueError(f"outbound frames must be {FRAME_BYTES} bytes (20 ms PCM16 16 kHz), got {len(pcm16k)}")
        out: list[bytes] = []
        position = None if slot is None else slot * FRAME8K_SAMPLES
        end = self._out_pos + len(self._out8k) // 2
        if position is not None and position > end:
            out += self._flush_partial()
            self._out_pos = max(position, self.sender.next_position)
        elif not self._out8k:
            self._out_pos = max(self._out_pos, self.sender.next_position)
        silent = pcm16k == SILENCE_FRAME
        if self._out_silent and not silent:
            self.sender.talkspurt()
        self._out_silent = silent
        self._out8k += self._down.process(pcm16k)
        size = self._packet_samples_out * 2
        while len(self._out8k) >= size:
            out.append(self._packet(bytes(self._out8k[:size])))
            del self._out8k[:size]
        return out

    @property
    def _packet_samples_out(self) -> int:
        return self.agreed.samples_per_packet

    def _packet(self, pcm8k: bytes) -> bytes:
        samples = len(pcm8k) // 2
        packet = self.sender.packet(self._encode(pcm8k), samples, position=self._out_pos)
        self._out_pos = self.sender.next_position
        self.stats["packets_out"] += 1
        return packet.to_bytes()

    def _flush_partial(self) -> list[bytes]:
        if not self._out8k:
            return []
        pad = self._packet_samples_out * 2 - len(self._out8k)
        self._out8k += bytes(pad)
        data = bytes(self._out8k)
        self._out8k.clear()
        return [self._packet(data)]

    def clear(self) -> None:
        """Barge-in: drop the unsent part of a packet; the next audio starts a new talk spurt."""
        self._out8k.clear()
        self._down = SteadyResampler(16_000, RATE)  # the filter's tail belongs to the cut audio
        self.sender.talkspurt()
