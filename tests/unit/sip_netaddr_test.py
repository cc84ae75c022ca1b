"""Numbers and addresses from the network: only ASCII digits of a bounded length, ports 1-65535, real hosts."""
from __future__ import annotations

import pytest

from spotfunnel.transports.sip.message import SipParseError, check_request, parse_message, uri_host_port
from spotfunnel.transports.sip.netaddr import AddressError, check_host, parse_hostport, unsendable
from spotfunnel.transports.sip.sdp import SdpError, parse_sdp

REQUEST = ("OPTIONS sip:a@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bKa\r\n"
           "From: <sip:b@127.0.0.1>;tag=1\r\nTo: <sip:a@127.0.0.1>\r\nCall-ID: c\r\nCSeq: {cseq} OPTIONS\r\n"
           "Content-Length: {length}\r\n\r\n")


@pytest.mark.parametrize(("cseq", "length"), [("1", "²"), ("1", "9" * 5000), ("9" * 5000, "0"), ("²", "0"),
                                              ("4294967296", "0")])
def test_odd_digits_are_a_parse_error_never_a_crash(cseq: str, length: str) -> None:
    with pytest.raises(SipParseError):
        check_request(parse_message(REQUEST.format(cseq=cseq, length=length).encode()))


def test_hosts_and_ports() -> None:
    assert parse_hostport("[2001:db8::1]:5070", "Via") == ("2001:db8::1", 5070)
    assert parse_hostport("Proxy.Example.", "Via") == ("proxy.example", 5060)
    assert uri_host_port("sip:x@10.0.0.1:5070;lr") == ("10.0.0.1", 5070)
    for bad in ("127.0.0.1:0", "127.0.0.1:99999", "1.2.3.999", "bad_host", "[::1", "host:²"):
        with pytest.raises(AddressError):
            parse_hostport(bad, "Via")
    with pytest.raises(AddressError, match="is not an IP address"):
        check_host("example.com", "c=", names=False)
    assert unsendable(("127.0.0.1", 65536)) and unsendable(("example.com", 5060))
    assert unsendable(("::1", 5060)) is None


@pytest.mark.parametrize("line", ["m=audio 65536 RTP/AVP 0", "m=audio 4000 RTP/AVP 200", "c=IN IP4 1.2.3.999",
                                  "c=IN IP6 10.0.0.1"])
def test_sdp_ports_payload_types_and_addresses_are_checked(line: str) -> None:
    with pytest.raises(SdpError):
        parse_sdp(f"v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 4000 RTP/AVP 0\r\n{line}\r\n")
