"""SDP offer/answer for one audio stream (RFC 4566, RFC 3264): G.711 PCMU/PCMA, ptime, telephone-event."""
from __future__ import annotations

import ipaddress
import random
import re
from dataclasses import dataclass, field

from spotfunnel.transports.sip.netaddr import AddressError, check_port

__all__ = ["AgreedMedia", "NoCommonCodec", "SdpError", "SessionDescription", "build_answer", "build_offer",
           "negotiate", "negotiate_body", "parse_sdp"]

#: static payload types of RFC 3551 this edge speaks, and their encoding names
STATIC_PT = {0: "PCMU", 8: "PCMA"}
CODEC_PT = {"PCMU": 0, "PCMA": 8}
DEFAULT_PTIME = 20
#: packet lengths we agree to send (G.711 is sample-based; anything in 10 ms steps up to 60 works)
ALLOWED_PTIMES = (10, 20, 30, 40, 50, 60)
DTMF_PT_DEFAULT = 101
#: the answer's direction for an offer's (RFC 3264 6.1): a caller who holds (sendonly) gets recvonly
_SMALL_NUMBER = re.compile(r"^[0-9]{1,6}$")  # ASCII digits, bounded: '²' and 10,000 digits are not numbers
_MIRROR = {"sendrecv": "sendrecv", "sendonly": "recvonly", "recvonly": "sendonly", "inactive": "inactive"}


class SdpError(ValueError):
    """The SDP body cannot be read; the message says which line is wrong."""


class NoCommonCodec(ValueError):
    """The offer has no audio codec this edge speaks (answered 488 Not Acceptable Here)."""


@dataclass
class MediaDescription:
    """One m= line with its attributes."""

    kind: str
    port: int
    proto: str
    formats: list[int]
    connection: str | None = None
    rtpmap: dict[int, tuple[str, int]] = field(default_factory=dict)  # pt -> (encoding name, clock rate)
    fmtp: dict[int, str] = field(default_factory=dict)
    ptime: int | None = None
    direction: str = "sendrecv"


_DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")


@dataclass
class SessionDescription:
    connection: str | None = None
    direction: str = "sendrecv"  # session level (RFC 4566 6): the default of every m= line
    media: list[MediaDescription] = field(default_factory=list)


@dataclass(frozen=True)
class AgreedMedia:
    """What offer/answer settled: the codec both ends use, its payload type, packet length, DTMF."""

    codec: str  # "PCMU" | "PCMA"
    payload_type: int
    ptime: int
    dtmf_payload_type: int | None
    remote_host: str
    remote_port: int
    direction: str = "sendrecv"  # ours in the answer: the offer's mirrored (RFC 3264 6.1)

    @property
    def samples_per_packet(self) -> int:
        return 8000 * self.ptime // 1000


def parse_sdp(text: str) -> SessionDescription:
    """Parse the lines this edge needs (c=, m=, a=rtpmap/fmtp/ptime/direction); others are skipped."""
    sd = SessionDescription()
    current: MediaDescription | None = None
    for raw in text.replace("\r\n", "\n").split("\n"):
        line = raw.strip()
        if not line:
            continue
        if len(line) < 2 or line[1] != "=":
            raise SdpError(f"SDP line is not 'x=value': {line[:60]!r}")
        kind, value = line[0], line[2:]
        if kind == "m":
            current = _media_line(value)
            current.direction = sd.direction  # a session-level direction holds unless the media sets its own
            sd.media.append(current)
        elif kind == "c":
            addr = _connection(value)
            if current is None:
                sd.connection = addr
            else:
                current.connection = addr
        elif kind == "a" and current is not None:
            _attribute(current, value)
        elif kind == "a" and value in _DIRECTIONS:
            sd.direction = value
    return sd


def _media_line(value: str) -> MediaDescription:
    parts = value.split()
    if len(parts) < 4:
        raise SdpError(f"bad m= line {value[:60]!r} (expected 'audio PORT RTP/AVP PT...')")
    try:
        port = check_port(parts[1].split("/")[0], "m= line", allow_zero=True)
    except AddressError as exc:
        raise SdpError(str(exc)) from None
    formats = [int(p) for p in parts[3:] if _SMALL_NUMBER.match(p)]
    if any(pt > 127 for pt in formats):
        raise SdpError(f"bad m= line {value[:60]!r}: RTP payload types are 0-127")
    return MediaDescription(parts[0], port, parts[2], formats)


def _connection(value: str) -> str:
    parts = value.split()
    if len(parts) != 3 or parts[0] != "IN" or parts[1] not in ("IP4", "IP6"):
        raise SdpError(f"bad c= line {value[:60]!r} (expected 'IN IP4 ADDRESS')")
    host = parts[2].split("/")[0]
    try:  # RTP goes here: an address of the family named, never a name (it would be resolved on the call path)
        ip = ipaddress.IPv4Address(host) if parts[1] == "IP4" else ipaddress.IPv6Address(host)
    except ValueError:
        raise SdpError(f"bad c= line {value[:60]!r}: {host[:60]!r} is not an {parts[1]} address "
                       "(this server does not resolve names in SDP)") from None
    return str(ip)


def _attribute(media: MediaDescription, value: str) -> None:
    name, _, rest = value.partition(":")
    if name == "rtpmap":
        pt, _, enc = rest.partition(" ")
        enc_name, _, clock = enc.partition("/")
        if _SMALL_NUMBER.match(pt) and _SMALL_NUMBER.match(clock.split("/")[0]):
            media.rtpmap[int(pt)] = (enc_name.strip().upper(), int(clock.split("/")[0]))
    elif name == "fmtp":
        pt, _, params = rest.partition(" ")
        if _SMALL_NUMBER.match(pt):
            media.fmtp[int(pt)] = params.strip()
    elif name == "ptime" and _SMALL_NUMBER.match(rest.strip()):
        media.ptime = int(rest.strip())
    elif name in _DIRECTIONS:
        media.direction = name


def _encoding(media: MediaDescription, pt: int) -> tuple[str, int] | None:
    if pt in media.rtpmap:
        return media.rtpmap[pt]
    if pt in STATIC_PT:
        return STATIC_PT[pt], 8000
    return None


def negotiate(offer: SessionDescription, codecs: tuple[str, ...] = ("PCMU", "PCMA")) -> AgreedMedia:
    """Pick the first offered format we speak (the offerer's preference order, RFC 3264 6.1).

    The caller's ptime is kept when it is one we can send, else 20 ms. Raises NoCommonCodec or
    SdpError with the reason.
    """
    audio = next((m for m in offer.media if m.kind == "audio" and m.port > 0), None)
    if audio is None:
        raise NoCommonCodec("the offer has no active audio stream (m=audio with a port)")
    if not audio.proto.upper().startswith("RTP/AVP"):
        raise NoCommonCodec(f"media protocol {audio.proto} is not plain RTP/AVP (SRTP is not supported)")
    host = audio.connection or offer.connection
    if not host:
        raise SdpError("the offer has no c= connection address")
    chosen = None
    for pt in audio.formats:
        enc = _encoding(audio, pt)
        if enc is not None and enc[0] in codecs and enc[1] == 8000:
            chosen = (enc[0], pt)
            break
    if chosen is None:
        offered = ", ".join(f"{pt}={(_encoding(audio, pt) or ('?', 0))[0]}" for pt in audio.formats)
        raise NoCommonCodec(f"no common codec: offered {offered or 'nothing'}; this server speaks "
                            f"{' and '.join(codecs)} at 8000 Hz")
    dtmf = next((pt for pt in audio.formats if (_encoding(audio, pt) or ("", 0))[0] == "TELEPHONE-EVENT"), None)
    ptime = audio.ptime if audio.ptime in ALLOWED_PTIMES else DEFAULT_PTIME
    return AgreedMedia(chosen[0], chosen[1], ptime, dtmf, host, audio.port, _MIRROR[audio.direction])


def negotiate_body(content_type: str | None, body: bytes,
                   codecs: tuple[str, ...]) -> tuple[AgreedMedia | None, str | None]:
    """Negotiate the SDP offer a SIP request carries: (agreed, None), or (None, why it cannot be)."""
    if (content_type or "").split(";")[0].strip().lower() != "application/sdp" or not body:
        return None, "the INVITE must carry an SDP offer (Content-Type: application/sdp)"
    try:
        return negotiate(parse_sdp(body.decode("utf-8")), codecs), None
    except UnicodeDecodeError:
        return None, "the SDP body is not UTF-8 text"
    except (SdpError, NoCommonCodec) as exc:
        return None, str(exc)


def _session_lines(host: str, session_id: int, version: int | None = None) -> list[str]:
    family = "IP6" if ":" in host else "IP4"
    version = session_id if version is None else version
    return ["v=0", f"o=spotfunnel {session_id} {version} IN {family} {host}", "s=SpotFunnel",
            f"c=IN {family} {host}", "t=0 0"]


def build_answer(agreed: AgreedMedia, host: str, port: int, session_id: int | None = None,
                 version: int | None = None) -> str:
    """The answer: exactly the agreed codec (and telephone-event when offered), with our ptime.

    Within a dialog pass the same `session_id` and a `version` one higher each time (RFC 3264 8).
    """
    sid = session_id if session_id is not None else random.randrange(1, 2**31)
    fmts = [agreed.payload_type] + ([agreed.dtmf_payload_type] if agreed.dtmf_payload_type is not None else [])
    lines = _session_lines(host, sid, version) + [f"m=audio {port} RTP/AVP {' '.join(map(str, fmts))}",
                                        f"a=rtpmap:{agreed.payload_type} {agreed.codec}/8000"]
    if agreed.dtmf_payload_type is not None:
        lines += [f"a=rtpmap:{agreed.dtmf_payload_type} telephone-event/8000",
                  f"a=fmtp:{agreed.dtmf_payload_type} 0-15"]
    lines += [f"a=ptime:{agreed.ptime}", f"a={agreed.direction}"]
    return "\r\n".join(lines) + "\r\n"


def build_offer(host: str, port: int, codecs: tuple[str, ...] = ("PCMU", "PCMA"), ptime: int = DEFAULT_PTIME,
                dtmf_payload_type: int | None = DTMF_PT_DEFAULT) -> str:
    """An offer for the UAC side: the codecs in preference order, telephone-event, ptime."""
    for codec in codecs:
        if codec not in CODEC_PT:
            raise ValueError(f"unknown codec {codec!r}; use PCMU or PCMA")
    fmts = [CODEC_PT[c] for c in codecs] + ([dtmf_payload_type] if dtmf_payload_type is not None else [])
    lines = _session_lines(host, random.randrange(1, 2**31)) + [
        f"m=audio {port} RTP/AVP {' '.join(map(str, fmts))}"]
    lines += [f"a=rtpmap:{CODEC_PT[c]} {c}/8000" for c in codecs]
    if dtmf_payload_type is not None:
        lines += [f"a=rtpmap:{dtmf_payload_type} telephone-event/8000", f"a=fmtp:{dtmf_payload_type} 0-15"]
    lines += [f"a=ptime:{ptime}", "a=sendrecv"]
    return "\r\n".join(lines) + "\r\n"
