"""Encoding profiles per provider and the checks that catch a mismatched or broken inbound stream (R-PROD-002)."""
from __future__ import annotations

from collections import Counter as _Tally
from dataclasses import dataclass
from typing import Any, Literal, Mapping

import numpy as np
from prometheus_client import Counter

from spotfunnel.audio.g711 import alaw_decode, ulaw_decode
from spotfunnel.audio.levels import rms_dbfs

__all__ = [
    "BROWSER_OPUS", "BROWSER_PCM16", "ENCODING_ISSUES", "LOCAL_PCM16", "SIP_PCMA", "SIP_PCMU",
    "TWILIO_MEDIA_STREAMS",
    "Codec", "EncodingIssue", "EncodingProfile", "IssueKind", "StreamCheck", "analyse_audio",
    "check_declared_format", "count_issue",
]

Codec = Literal["pcmu", "pcma", "pcm16", "opus"]
IssueKind = Literal["format", "frame_size", "silence", "clipping"]

#: the media type names providers declare for each codec (Twilio's `mediaFormat.encoding`)
CODEC_MIME: dict[str, str] = {
    "pcmu": "audio/x-mulaw", "pcma": "audio/x-alaw", "pcm16": "audio/l16", "opus": "audio/opus",
}
_MIME_CODEC: dict[str, str] = {mime: codec for codec, mime in CODEC_MIME.items()}
_MIME_CODEC.update({"audio/pcmu": "pcmu", "audio/pcma": "pcma", "audio/basic": "pcmu"})

#: below this RMS level the opening audio counts as a dead line. A live but quiet line (a caller
#: waiting for the greeting) still carries noise, -60 to -85 dBFS through G.711, whose smallest
#: step is -72 dBFS; only (nearly) all-zero audio is below -90, and digital silence is -inf.
DEAD_LINE_DBFS = -90.0
#: more than this fraction of samples at the codec's full scale counts as clipping
CLIP_FRACTION = 0.01

ENCODING_ISSUES = Counter(
    "spotfunnel_encoding_issues_total",
    "Inbound audio encoding problems found on calls (R-PROD-002), by transport and kind.",
    ["transport", "kind"],
)


@dataclass(frozen=True)
class EncodingProfile:
    """What a provider puts on the wire: codec, sample rate, packet length and channel count."""

    name: str
    codec: Codec
    sample_rate: int
    frame_ms: int = 20
    channels: int = 1

    @property
    def mime(self) -> str:
        return CODEC_MIME[self.codec]

    @property
    def sample_bytes(self) -> int | None:
        """Bytes per sample per channel on the wire (None for a variable-rate codec like Opus)."""
        return {"pcmu": 1, "pcma": 1, "pcm16": 2}.get(self.codec)

    @property
    def frame_bytes(self) -> int | None:
        """Bytes of one `frame_ms` packet (None for Opus, whose packets vary)."""
        if self.sample_bytes is None:
            return None
        return self.sample_rate * self.frame_ms // 1000 * self.sample_bytes * self.channels

    @property
    def full_scale(self) -> int:
        """The largest sample magnitude the codec can carry once decoded to PCM16."""
        return {"pcmu": 32124, "pcma": 32256}.get(self.codec, 32767)

    def describe(self) -> str:
        layout = "mono" if self.channels == 1 else f"{self.channels} channels"
        return f"{self.mime} {self.sample_rate} Hz {layout}"

    def decode(self, payload: bytes) -> bytes:
        """Wire bytes -> PCM16 little-endian at the profile's own rate (first channel only)."""
        if self.codec == "pcmu":
            pcm = ulaw_decode(payload)
        elif self.codec == "pcma":
            pcm = alaw_decode(payload)
        elif self.codec == "pcm16":
            pcm = payload[: len(payload) - len(payload) % 2]
        else:
            raise ValueError(f"profile {self.name}: {self.codec} payloads need a stateful decoder")
        if self.channels == 1:
            return pcm
        return np.frombuffer(pcm, dtype="<i2")[:: self.channels].tobytes()


TWILIO_MEDIA_STREAMS = EncodingProfile("twilio", "pcmu", 8000, 20, 1)
SIP_PCMU = EncodingProfile("sip-pcmu", "pcmu", 8000, 20, 1)
SIP_PCMA = EncodingProfile("sip-pcma", "pcma", 8000, 20, 1)
LOCAL_PCM16 = EncodingProfile("local", "pcm16", 16000, 20, 1)
BROWSER_OPUS = EncodingProfile("browser-opus", "opus", 48000, 20, 1)
BROWSER_PCM16 = EncodingProfile("browser-pcm", "pcm16", 16000, 20, 1)


@dataclass(frozen=True)
class EncodingIssue:
    """One problem with an inbound stream; `kind` is the metric label, `message` says it plainly."""

    kind: IssueKind
    message: str


def count_issue(transport: str, issue: EncodingIssue) -> None:
    """Add one to `spotfunnel_encoding_issues_total{transport, kind}`."""
    ENCODING_ISSUES.labels(transport=transport, kind=issue.kind).inc()


def _as_int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def check_declared_format(profile: EncodingProfile, declared: Any) -> list[EncodingIssue]:
    """Compare a declared media format ({encoding, sampleRate, channels}) with the profile."""
    if not isinstance(declared, Mapping):
        return [EncodingIssue("format", f"no media format declared; the {profile.name} profile expects "
                                        f"{profile.describe()}")]
    encoding = str(declared.get("encoding", "")).lower()
    rate, channels = _as_int(declared.get("sampleRate")), _as_int(declared.get("channels"))
    wrong = []
    if _MIME_CODEC.get(encoding) != profile.codec:
        wrong.append(f"encoding {declared.get('encoding')!r} is not {profile.mime}")
    if rate != profile.sample_rate:
        wrong.append(f"sample rate {declared.get('sampleRate')!r} is not {profile.sample_rate} Hz")
    if channels != profile.channels:
        wrong.append(f"channels {declared.get('channels')!r} is not {profile.channels}")
    if not wrong:
        return []
    return [EncodingIssue("format", f"declared media format does not match: {'; '.join(wrong)} "
                                    f"(the {profile.name} profile expects {profile.describe()})")]


def analyse_audio(pcm: bytes, profile: EncodingProfile, *, dead_line_dbfs: float = DEAD_LINE_DBFS,
                  clip_fraction: float = CLIP_FRACTION) -> list[EncodingIssue]:
    """Dead line (all silence) and clipping (too many samples at full scale) in decoded PCM16 audio."""
    samples = np.frombuffer(pcm, dtype="<i2", count=len(pcm) // 2)
    if samples.size == 0:
        return []
    seconds = samples.size / profile.sample_rate
    level = rms_dbfs(pcm)
    if level < dead_line_dbfs:
        shown = "digital silence" if level == float("-inf") else f"{level:.0f} dBFS"
        return [EncodingIssue("silence", f"the first {seconds:.1f} s of inbound audio is silent ({shown}): "
                                         "a dead line, a muted leg or one-way audio?")]
    clipped = float(np.mean(np.abs(samples.astype(np.int32)) >= profile.full_scale))
    if clipped > clip_fraction:
        return [EncodingIssue("clipping", f"{clipped:.1%} of the samples in the first {seconds:.1f} s are at "
                                          f"full scale (over {clip_fraction:.0%}): clipped or wrongly "
                                          f"decoded audio (is it really {profile.mime}?)")]
    return []


class StreamCheck:
    """Watches one inbound stream against its profile: payload sizes and its opening audio."""

    def __init__(self, profile: EncodingProfile, window_ms: int = 1000) -> None:
        self.profile = profile
        self.window_ms = window_ms
        self.payload_sizes: _Tally[int] = _Tally()
        self._opening = bytearray()
        self._window_bytes = profile.sample_rate * window_ms // 1000 * 2
        self._analysed = False

    @property
    def analysed(self) -> bool:
        """True once the opening window has been checked (it is checked only once per stream)."""
        return self._analysed

    def check_declared(self, declared: Any) -> list[EncodingIssue]:
        return check_declared_format(self.profile, declared)

    def add_payload(self, payload: bytes) -> list[EncodingIssue]:
        """Record one inbound payload; issues about its size, and once the window is full, the audio."""
        self.payload_sizes[len(payload)] += 1
        issues = self._size_issues(len(payload))
        if not self._analysed and self.profile.sample_bytes is not None:
            self._opening += self.profile.decode(payload)
            if len(self._opening) >= self._window_bytes:
                issues += self.finish_window()
        return issues

    def finish_window(self) -> list[EncodingIssue]:
        """Check the opening audio now (the stream may end before the window is full)."""
        if self._analysed:
            return []
        self._analysed = True
        opening = bytes(self._opening[: self._window_bytes])
        self._opening.clear()
        return analyse_audio(opening, self.profile)

    def _size_issues(self, size: int) -> list[EncodingIssue]:
        unit = (self.profile.sample_bytes or 1) * self.profile.channels
        if size % unit == 0 or self.payload_sizes[size] > 1:
            return []  # reported once per odd size
        return [EncodingIssue("frame_size", f"a {size}-byte payload is not a whole number of "
                                            f"{unit}-byte samples for {self.profile.describe()}")]

    def size_report(self) -> str:
        """The payload sizes seen against the profile's frame size, e.g. '160 B x 50 (frame 160 B)'."""
        seen = ", ".join(f"{size} B x {n}" for size, n in self.payload_sizes.most_common(5)) or "none"
        more = len(self.payload_sizes) - 5
        tail = f", and {more} other size(s)" if more > 0 else ""
        return f"payload sizes {seen}{tail} (profile {self.profile.name} frame {self.profile.frame_bytes} B)"
