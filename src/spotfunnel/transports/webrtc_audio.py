"""The browser's WebRTC audio path without a socket: Opus 48 kHz frames <-> 20 ms PCM16 16 kHz frames."""
from __future__ import annotations

import fractions

import av
import numpy as np
from aiortc.codecs.opus import OpusDecoder, OpusEncoder
from aiortc.jitterbuffer import JitterFrame

from spotfunnel.audio.frames import FRAME_BYTES, SAMPLE_RATE, split_frames
from spotfunnel.audio.profiles import BROWSER_OPUS, EncodingIssue
from spotfunnel.audio.resample import SteadyResampler

__all__ = ["OPUS_RATE", "OPUS_FRAME_SAMPLES", "OpusRoundTrip", "WebRtcAudioPath"]

OPUS_RATE = BROWSER_OPUS.sample_rate  # 48 kHz: what WebRTC's Opus decodes to and encodes from
OPUS_FRAME_SAMPLES = OPUS_RATE * BROWSER_OPUS.frame_ms // 1000  # 960
_TIME_BASE = fractions.Fraction(1, OPUS_RATE)


class WebRtcAudioPath:
    """Converts decoded WebRTC audio to the internal format and back, for one call.

    Inbound: any av.AudioFrame (aiortc's Opus decoder gives s16 stereo 48 kHz) -> first channel ->
    48 -> 16 kHz (soxr, steady: 960 samples in give exactly 320 out) -> 640-byte frames.
    Outbound: one 640-byte frame -> 16 -> 48 kHz -> an s16 stereo av.AudioFrame of 960 samples (the
    voice in both channels) with a running pts, which aiortc's Opus encoder takes as is.
    """

    def __init__(self) -> None:
        self._down: dict[int, SteadyResampler] = {}
        self._up = SteadyResampler(SAMPLE_RATE, OPUS_RATE)
        self._held = bytearray()  # 16 kHz audio short of a whole frame
        self._pts = 0

    # ---- inbound ----
    def inbound(self, frame: av.AudioFrame) -> tuple[list[bytes], list[EncodingIssue]]:
        """Whole 640-byte frames ready after this decoded frame, and what is wrong with it (if anything)."""
        issues: list[EncodingIssue] = []
        if frame.sample_rate != OPUS_RATE:
            issues.append(EncodingIssue("format", f"decoded browser audio arrives at {frame.sample_rate} Hz; the "
                                                  f"{BROWSER_OPUS.name} profile expects {OPUS_RATE} Hz "
                                                  "(resampled anyway)"))
        pcm = first_channel_s16(frame)
        rate = frame.sample_rate or OPUS_RATE
        down = self._down.get(rate)
        if down is None:
            down = self._down[rate] = SteadyResampler(rate, SAMPLE_RATE)
        self._held += down.process(pcm)
        whole = len(self._held) - len(self._held) % FRAME_BYTES
        frames = [bytes(self._held[i:i + FRAME_BYTES]) for i in range(0, whole, FRAME_BYTES)]
        del self._held[:whole]
        return frames, issues

    def flush_inbound(self) -> list[bytes]:
        """The audio still held at the end of the call, padded to whole frames."""
        tail = bytes(self._held) + b"".join(r.flush() for r in self._down.values())
        self._held.clear()
        return split_frames(tail)

    # ---- outbound ----
    def outbound(self, pcm16k: bytes) -> av.AudioFrame:
        """One 20 ms frame of agent audio as a 48 kHz s16 mono AudioFrame (960 samples)."""
        if len(pcm16k) != FRAME_BYTES:
            raise ValueError(f"agent frames must be {FRAME_BYTES} bytes of PCM16 16 kHz, got {len(pcm16k)}")
        return self._av_frame(self._up.process(pcm16k))

    def silence(self) -> av.AudioFrame:
        """20 ms of silence at 48 kHz (the track's filler when the agent is not speaking)."""
        return self._av_frame(bytes(OPUS_FRAME_SAMPLES * 2))

    def _av_frame(self, pcm48k: bytes) -> av.AudioFrame:
        samples = len(pcm48k) // 2
        # Both channels carry the voice: handing aiortc's stereo Opus encoder a mono frame makes
        # libswresample upmix at -3 dB, which the caller would hear as a quieter agent.
        stereo = np.repeat(np.frombuffer(pcm48k, dtype="<i2"), 2).tobytes()
        frame = av.AudioFrame(format="s16", layout="stereo", samples=samples)
        frame.planes[0].update(stereo)
        frame.sample_rate = OPUS_RATE
        frame.time_base = _TIME_BASE
        frame.pts = self._pts
        self._pts += samples
        return frame


def first_channel_s16(frame: av.AudioFrame) -> bytes:
    """The first channel of a decoded frame as PCM16 little-endian bytes (any sample format)."""
    data = frame.to_ndarray()
    channels = len(frame.layout.channels)
    if frame.format.is_planar:
        mono = data[0]
    else:
        mono = data.reshape(-1)[::channels]
    if mono.dtype != np.int16:
        if np.issubdtype(mono.dtype, np.floating):
            mono = np.clip(mono * 32768.0, -32768, 32767)
        else:  # s32: keep the top 16 bits
            mono = mono >> 16
    return np.asarray(mono, dtype="<i2").tobytes()


class OpusRoundTrip:
    """The full browser codec path as one call would run it, for benchmarks and `doctor`.

    `send(frame16k)` is the agent's direction (16 -> 48 kHz, Opus encode, as aiortc does it);
    `receive(packet)` the caller's (Opus decode, 48 -> 16 kHz). No sockets, no peer connection.
    """

    def __init__(self) -> None:
        self.path = WebRtcAudioPath()
        self._encoder = OpusEncoder()
        self._decoder = OpusDecoder()
        self._timestamp = 0

    def send(self, pcm16k: bytes) -> list[bytes]:
        """Opus packets for one agent frame (normally exactly one)."""
        packets, _ts = self._encoder.encode(self.path.outbound(pcm16k))
        return packets

    def receive(self, packet: bytes) -> list[bytes]:
        """640-byte frames decoded from one Opus packet."""
        decoded = self._decoder.decode(JitterFrame(data=packet, timestamp=self._timestamp))
        self._timestamp += OPUS_FRAME_SAMPLES
        out: list[bytes] = []
        for frame in decoded:
            frames, _issues = self.path.inbound(frame)  # type: ignore[arg-type]
            out.extend(frames)
        return out
