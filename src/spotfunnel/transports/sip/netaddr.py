"""Hosts and ports read from the network (SIP headers, SDP), checked before anything is ever sent to them."""
from __future__ import annotations

import ipaddress
import re

__all__ = ["AddressError", "check_host", "check_port", "ip_literal", "parse_hostport", "unsendable"]

Address = tuple[str, int]
#: RFC 1123 host name labels; a name is at most 253 characters
_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
_PORT = re.compile(r"^[0-9]{1,5}$")


class AddressError(ValueError):
    """A host or port from the network is not one we can use; the message names the field and the value."""


def check_port(text: str | int, what: str, *, allow_zero: bool = False) -> int:
    """A port in 1..65535 (0 too with `allow_zero`, as SDP's disabled stream), else AddressError."""
    value = str(text).strip()
    # ASCII digits only: str.isdigit() accepts '²', which int() refuses, and 10,000 digits, which it chokes on
    if not _PORT.match(value) or not (0 if allow_zero else 1) <= int(value) <= 65535:
        raise AddressError(f"{what}: port {value[:20]!r} is not a port number (1-65535)")
    return int(value)


def ip_literal(host: str) -> str | None:
    """The canonical spelling of an IP address literal (IPv6 without brackets), or None for anything else."""
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
    return str(ip)


def check_host(text: str, what: str, *, names: bool = True) -> str:
    """An IP literal (canonical) or, with `names`, an RFC 1123 host name (lower case); else AddressError."""
    host = text.strip()
    literal = ip_literal(host)
    if literal is not None:
        return literal
    labels = host.rstrip(".").split(".")
    if names and 0 < len(host) <= 253 and all(_LABEL.match(label) for label in labels) \
            and not labels[-1].isdigit():  # '1.2.3.999' is a bad address, not a name
        return host.rstrip(".").lower()
    kind = "an IP address or host name" if names else "an IP address"
    raise AddressError(f"{what}: {host[:60]!r} is not {kind}")


def parse_hostport(text: str, what: str, default_port: int = 5060) -> Address:
    """'host', 'host:port', '[v6]' or '[v6]:port' -> (host, port), both checked."""
    text = text.strip()
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise AddressError(f"{what}: {text[:60]!r} is not [IPv6]:port")
        if ip_literal(host) is None or ":" not in host:
            raise AddressError(f"{what}: {host[:60]!r} is not an IPv6 address")
        port = rest[1:]
    else:
        host, _, port = text.partition(":")
    checked = check_host(host, what)
    return checked, check_port(port, what) if port else default_port


def unsendable(addr: Address) -> str | None:
    """Why a datagram cannot go to `addr` (a socket sends only to IP literals on ports 1-65535), or None."""
    host, port = addr
    if not isinstance(port, int) or not 1 <= port <= 65535:
        return f"port {port!r} is outside 1-65535"
    if not isinstance(host, str) or ip_literal(host) is None:
        return f"host {host!r} is not an IP address (names are resolved before a dialog starts)"
    return None
