"""SIP messages (RFC 3261 over UDP): parse bytes into requests/responses and serialise them back."""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from spotfunnel.transports.sip.netaddr import AddressError, parse_hostport

__all__ = [
    "SipMessage", "SipParseError", "canonical_name", "check_addresses", "check_request", "header_param", "name_addr_uri", "parse_cseq", "parse_message",
    "response_to", "split_header_values", "uri_host_port", "uri_user",
]

MAX_MESSAGE_BYTES = 65_535
REQUIRED_REQUEST_HEADERS = ("Via", "From", "To", "Call-ID", "CSeq")

#: RFC 3261 7.3.3 compact forms, and the canonical spelling of the headers this edge uses
_COMPACT = {"v": "Via", "f": "From", "t": "To", "i": "Call-ID", "m": "Contact", "l": "Content-Length",
            "c": "Content-Type", "k": "Supported", "s": "Subject", "e": "Content-Encoding", "r": "Refer-To",
            "b": "Referred-By", "o": "Event"}
_CANONICAL = {name.lower(): name for name in (
    "Via", "From", "To", "Call-ID", "CSeq", "Contact", "Content-Length", "Content-Type", "Max-Forwards",
    "Record-Route", "Route", "Allow", "Supported", "Accept", "User-Agent", "Server", "Refer-To", "Referred-By",
    "Event", "Subscription-State", "Warning", "Reason", "Expires")}
_METHOD = re.compile(r"^[A-Za-z][A-Za-z0-9.!%*_+`'~-]*$")
#: ASCII digits of a bounded length: `str.isdigit` takes '²' (which int() refuses) and 10,000 digits
_STATUS = re.compile(r"^[1-6][0-9]{2}$")
_LENGTH = re.compile(r"^[0-9]{1,6}$")
_CSEQ = re.compile(r"^[0-9]{1,10}$")
MAX_CSEQ = 2**31 - 1  # RFC 3261 8.1.1.5


class SipParseError(ValueError):
    """The bytes are not a SIP message we can read; the message says what is wrong."""


@dataclass
class SipMessage:
    """One SIP request (`method`, `uri`) or response (`status`, `reason`), headers in wire order."""

    method: str | None = None
    uri: str | None = None
    status: int | None = None
    reason: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    @property
    def is_request(self) -> bool:
        return self.method is not None

    def get(self, name: str) -> str | None:
        """The first value of a header (case-insensitive, compact forms understood), or None."""
        key = canonical_name(name).lower()
        for hname, value in self.headers:
            if hname.lower() == key:
                return value
        return None

    def get_all(self, name: str) -> list[str]:
        """Every value of a header, comma-separated values split (Via, Record-Route, ...)."""
        key = canonical_name(name).lower()
        out: list[str] = []
        for hname, value in self.headers:
            if hname.lower() == key:
                out.extend(split_header_values(value))
        return out

    def set(self, name: str, value: str) -> None:
        """Replace every value of a header with one value (appended if absent)."""
        key = canonical_name(name).lower()
        self.headers = [(n, v) for n, v in self.headers if n.lower() != key]
        self.headers.append((canonical_name(name), value))

    def add(self, name: str, value: str) -> None:
        self.headers.append((canonical_name(name), value))

    @property
    def call_id(self) -> str:
        return self.get("Call-ID") or ""

    @property
    def cseq(self) -> tuple[int, str]:
        return parse_cseq(self.get("CSeq") or "")

    @property
    def branch(self) -> str:
        """The branch of the top Via (the transaction id, RFC 3261 17.2.3)."""
        vias = self.get_all("Via")
        return header_param(vias[0], "branch") or "" if vias else ""

    def serialise(self) -> bytes:
        """Wire bytes; Content-Length is always written and always right."""
        if self.method is not None:
            start = f"{self.method} {self.uri} SIP/2.0"
        else:
            start = f"SIP/2.0 {self.status} {self.reason}"
        lines = [start] + [f"{n}: {v}" for n, v in self.headers if n.lower() != "content-length"]
        lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + self.body

    def summary(self) -> str:
        """A short label for log lines: 'INVITE sip:...' or '200 OK (INVITE)'."""
        if self.method is not None:
            return f"{self.method} {self.uri}"
        return f"{self.status} {self.reason} ({self.cseq[1] if self.get('CSeq') else '?'})"


def canonical_name(name: str) -> str:
    name = name.strip()
    if len(name) == 1 and name.lower() in _COMPACT:
        return _COMPACT[name.lower()]
    return _CANONICAL.get(name.lower(), name)


def parse_message(data: bytes) -> SipMessage:
    """Parse one datagram. Raises SipParseError saying what is wrong (never anything else)."""
    if len(data) > MAX_MESSAGE_BYTES:
        raise SipParseError(f"message of {len(data)} bytes is larger than {MAX_MESSAGE_BYTES}")
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        head, sep, body = data.partition(b"\n\n")
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SipParseError(f"headers are not UTF-8 text (byte {exc.start})") from None
    lines = _unfold(text.replace("\r\n", "\n").split("\n"))
    if not lines or not lines[0].strip():
        raise SipParseError("empty message")
    msg = _start_line(lines[0].strip())
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not name.strip() or " " in name.strip():
            raise SipParseError(f"header line without 'Name: value': {line[:60]!r}")
        msg.headers.append((canonical_name(name), value.strip()))
    msg.body = _body(msg, body)
    return msg


def _unfold(lines: list[str]) -> list[str]:
    """Join continuation lines (starting with a space or tab) to the header above (RFC 3261 7.3.1)."""
    out: list[str] = []
    for line in lines:
        if line[:1] in (" ", "\t") and len(out) > 1:
            out[-1] += " " + line.strip()
        elif line.strip():
            out.append(line)
    return out


def _start_line(line: str) -> SipMessage:
    parts = line.split(" ", 2)
    if parts[0] == "SIP/2.0":
        if len(parts) < 2 or not _STATUS.match(parts[1]):
            raise SipParseError(f"bad status line {line[:60]!r}")
        return SipMessage(status=int(parts[1]), reason=parts[2] if len(parts) > 2 else "")
    if len(parts) != 3 or parts[2] != "SIP/2.0":
        raise SipParseError(f"bad request line {line[:60]!r} (expected 'METHOD URI SIP/2.0')")
    if not _METHOD.match(parts[0]):
        raise SipParseError(f"bad method {parts[0][:20]!r}")
    if ":" not in parts[1]:
        raise SipParseError(f"bad Request-URI {parts[1][:60]!r}")
    return SipMessage(method=parts[0].upper(), uri=parts[1])


def _body(msg: SipMessage, body: bytes) -> bytes:
    raw = msg.get("Content-Length")
    if raw is None:
        return body  # allowed over UDP: the body is the rest of the datagram
    if not _LENGTH.match(raw.strip()):
        raise SipParseError(f"Content-Length {raw[:20]!r} is not a number of bytes")
    length = int(raw)
    if length > len(body):
        raise SipParseError(f"Content-Length {length} but only {len(body)} body bytes arrived (truncated)")
    return body[:length]


def split_header_values(value: str) -> list[str]:
    """Split a header value at commas that are not inside quotes or <...>."""
    out, depth, quoted, start = [], 0, False, 0
    for i, ch in enumerate(value):
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch == "<":
            depth += 1
        elif not quoted and ch == ">":
            depth = max(0, depth - 1)
        elif ch == "," and not quoted and depth == 0:
            out.append(value[start:i].strip())
            start = i + 1
    out.append(value[start:].strip())
    return [v for v in out if v]


def header_param(value: str, name: str) -> str | None:
    """A ;name=value parameter of a header (outside the <uri>), e.g. tag or branch."""
    tail = value.rsplit(">", 1)[-1] if "<" in value else value
    for part in tail.split(";")[1:]:
        key, _, val = part.partition("=")
        if key.strip().lower() == name.lower():
            return val.strip().strip('"')
    return None


def name_addr_uri(value: str) -> str:
    """The URI inside a From/To/Contact value: '"Bob" <sip:bob@x>;tag=1' -> 'sip:bob@x'."""
    if "<" in value:
        return value.split("<", 1)[1].split(">", 1)[0].strip()
    return value.split(";", 1)[0].strip()


def uri_user(uri: str) -> str:
    """The user part of a sip:/sips:/tel: URI ('' when there is none)."""
    rest = uri.split(":", 1)[1] if ":" in uri else uri
    if uri.lower().startswith("tel:"):
        return rest.split(";", 1)[0]
    return rest.split("@", 1)[0] if "@" in rest else ""


def uri_host_port(uri: str, default_port: int = 5060, what: str = "URI") -> tuple[str, int]:
    """Host and port of a sip: URI ('sip:alice@127.0.0.1:5070;transport=udp' -> ('127.0.0.1', 5070)).

    Both are checked (an IP address or host name, a port in 1-65535): SipParseError names what is wrong.
    """
    rest = uri.split(":", 1)[1] if ":" in uri else uri
    hostport = rest.split("@", 1)[-1].split(";", 1)[0].split("?", 1)[0]
    try:
        return parse_hostport(hostport, f"{what} {uri[:60]!r}", default_port)
    except AddressError as exc:
        raise SipParseError(str(exc)) from None


def parse_cseq(value: str) -> tuple[int, str]:
    """'314 INVITE' -> (314, 'INVITE'); raises SipParseError when malformed."""
    parts = value.split()
    if len(parts) != 2 or not _CSEQ.match(parts[0]) or int(parts[0]) > MAX_CSEQ:
        raise SipParseError(f"bad CSeq {value[:40]!r} (expected 'NUMBER METHOD', the number below 2**31)")
    return int(parts[0]), parts[1].upper()


def check_request(msg: SipMessage) -> None:
    """Raise SipParseError naming the first missing mandatory header or a bad CSeq."""
    for name in REQUIRED_REQUEST_HEADERS:
        if not msg.get(name):
            raise SipParseError(f"missing mandatory header {name}")
    number, method = parse_cseq(msg.get("CSeq") or "")
    if method != msg.method and not (msg.method == "ACK" and method == "ACK"):
        raise SipParseError(f"CSeq method {method} does not match the request method {msg.method}")
    check_addresses(msg)


#: headers whose URIs name where a request or a later one may go: each host and port must be usable
_ADDRESS_HEADERS = ("From", "To", "Contact", "Record-Route", "Route", "Refer-To")


def check_addresses(msg: SipMessage) -> None:
    """Raise SipParseError naming the first host or port that is not an address (Via sent-by and URIs).

    Checked once on arrival, so nothing later (the BYE 32 s on, a REFER) meets a port over 65535.
    """
    for via in msg.get_all("Via"):
        parts = via.split(";", 1)[0].split()
        if len(parts) != 2 or not parts[0].upper().startswith("SIP/2.0/"):
            raise SipParseError(f"bad Via {via[:60]!r} (expected 'SIP/2.0/UDP host:port;branch=...')")
        try:
            parse_hostport(parts[1], f"Via sent-by {parts[1][:60]!r}")
        except AddressError as exc:
            raise SipParseError(str(exc)) from None
        rport = header_param(via, "rport")
        if rport:
            uri_host_port(f"sip:x:{rport}", what="Via rport")
    if msg.uri is not None and msg.uri.lower().startswith(("sip:", "sips:")):
        uri_host_port(msg.uri, what="Request-URI")
    for name in _ADDRESS_HEADERS:
        for value in msg.get_all(name):
            uri = name_addr_uri(value)
            if value.strip() != "*" and uri.lower().startswith(("sip:", "sips:")):
                uri_host_port(uri, what=name)


def response_to(request: SipMessage, status: int, reason: str, *, to_tag: str | None = None,
                headers: list[tuple[str, str]] | None = None, body: bytes = b"") -> SipMessage:
    """A response echoing the request's Via, From, To (+ our tag), Call-ID, CSeq (RFC 3261 8.2.6)."""
    resp = SipMessage(status=status, reason=reason)
    for name in ("Via", "From", "To", "Call-ID", "CSeq"):
        for hname, value in request.headers:
            if hname.lower() == name.lower():
                if name == "To" and to_tag and header_param(value, "tag") is None:
                    value = f"{value};tag={to_tag}"
                resp.add(name, value)
    if 100 < status < 300:
        for value in request.get_all("Record-Route"):
            resp.add("Record-Route", value)
    for name, value in headers or []:
        resp.add(name, value)
    resp.body = body
    return resp
