"""SIP message parsing and serialising: well-formed requests and responses, compact forms, malformed input."""
from __future__ import annotations

import pytest

from spotfunnel.transports.sip.dialog import call_params
from spotfunnel.transports.sip.message import (
    SipParseError, check_request, header_param, name_addr_uri, parse_message, response_to, uri_host_port, uri_user,
)
from spotfunnel.transports.sip.salvage import salvage_request

INVITE = (
    "INVITE sip:+14155550100@127.0.0.1:5060 SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1;rport\r\n"
    "v: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK-proxy\r\n"
    "f: \"Caller, Jr\" <sip:+14155550111@127.0.0.1:5061>;tag=abc\r\n"
    "t: <sip:+14155550100@127.0.0.1>\r\n"
    "i: call-1@host\r\n"
    "CSeq: 1 INVITE\r\n"
    "Subject: a long\r\n"
    "  folded header\r\n"
    "X-SpotFunnel-Setup: key123\r\n"
    "X-SpotFunnel-Lockstep: 1\r\n"
    "c: application/sdp\r\n"
    "l: 4\r\n"
    "\r\n"
    "v=0\r\nIGNORED-TAIL"
).encode()


def test_parses_a_request_with_compact_headers_folding_and_body() -> None:
    msg = parse_message(INVITE)
    assert msg.method == "INVITE" and msg.uri == "sip:+14155550100@127.0.0.1:5060"
    assert msg.call_id == "call-1@host"
    assert msg.cseq == (1, "INVITE")
    assert msg.branch == "z9hG4bK-1"
    assert len(msg.get_all("Via")) == 2
    assert msg.get("Content-Type") == "application/sdp"
    assert msg.get("subject") == "a long folded header"
    assert msg.body == b"v=0\r"  # Content-Length says 4: the rest of the datagram is not the body
    check_request(msg)


def test_custom_headers_never_become_call_parameters() -> None:
    """A remote party cannot pick a prepared setup or switch lockstep on; only a trusted source names a tenant."""
    invite = parse_message(INVITE.replace(b"i: call-1", b"X-SpotFunnel-Tenant: salon\r\ni: call-1"))
    assert call_params(invite) == {"caller": "+14155550111", "called": "+14155550100"}
    assert call_params(invite, trusted=True) == {"caller": "+14155550111", "called": "+14155550100",
                                                 "tenant": "salon"}


def test_response_and_serialise_round_trip() -> None:
    req = parse_message(INVITE)
    resp = response_to(req, 200, "OK", to_tag="xyz", headers=[("Contact", "<sip:a@b>")], body=b"hello")
    again = parse_message(resp.serialise())
    assert again.status == 200 and again.reason == "OK"
    assert header_param(again.get("To") or "", "tag") == "xyz"
    assert again.get_all("Via") == req.get_all("Via")
    assert again.body == b"hello" and again.get("Content-Length") == "5"


def test_header_values_with_commas_inside_quotes_and_angle_brackets() -> None:
    msg = parse_message(INVITE)
    assert name_addr_uri(msg.get("From") or "") == "sip:+14155550111@127.0.0.1:5061"
    assert header_param(msg.get("From") or "", "tag") == "abc"
    assert uri_user("sip:+1415@host:5070;transport=udp") == "+1415"
    assert uri_user("tel:+14155550100;phone-context=x") == "+14155550100"
    assert uri_host_port("sip:alice@127.0.0.1:5070;transport=udp") == ("127.0.0.1", 5070)
    assert uri_host_port("sip:[::1]:5090") == ("::1", 5090)
    assert uri_host_port("sip:example.com") == ("example.com", 5060)


def test_status_line() -> None:
    msg = parse_message(b"SIP/2.0 486 Busy Here\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n")
    assert msg.status == 486 and msg.reason == "Busy Here" and not msg.is_request


@pytest.mark.parametrize("data, says", [
    (b"", "empty"),
    (b"\xff\xfe\x00garbage", "UTF-8"),
    (b"HELLO\r\n\r\n", "request line"),
    (b"INVITE sip:x SIP/3.0\r\n\r\n", "request line"),
    (b"INVITE nocolon SIP/2.0\r\n\r\n", "Request-URI"),
    (b"SIP/2.0 2000 OK\r\n\r\n", "status line"),
    (b"OPTIONS sip:x@y SIP/2.0\r\nthis line has no colon\r\n\r\n", "Name: value"),
    (b"OPTIONS sip:x@y SIP/2.0\r\nContent-Length: ten\r\n\r\n", "Content-Length"),
    (b"OPTIONS sip:x@y SIP/2.0\r\nContent-Length: 100\r\n\r\nshort", "truncated"),
    (b"x" * 70_000, "larger"),
])
def test_malformed_messages_raise_a_clear_error(data: bytes, says: str) -> None:
    with pytest.raises(SipParseError, match=says):
        parse_message(data)


def test_missing_mandatory_headers_and_bad_cseq_are_named() -> None:
    no_callid = parse_message(b"OPTIONS sip:x@y SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1"
                              b"\r\nTo: <sip:x@y>\r\nCSeq: 1 OPTIONS\r\n\r\n")
    with pytest.raises(SipParseError, match="Call-ID"):
        check_request(no_callid)
    bad = parse_message(INVITE.replace(b"CSeq: 1 INVITE", b"CSeq: one INVITE"))
    with pytest.raises(SipParseError, match="CSeq"):
        check_request(bad)
    mismatch = parse_message(INVITE.replace(b"CSeq: 1 INVITE", b"CSeq: 1 BYE"))
    with pytest.raises(SipParseError, match="does not match"):
        check_request(mismatch)


def test_salvage_keeps_enough_of_a_broken_request_to_answer_400() -> None:
    broken = INVITE.replace(b"CSeq: 1 INVITE\r\n", b"CSeq: 1 INVITE\r\nthis line is broken\r\n")
    with pytest.raises(SipParseError):
        parse_message(broken)
    salvaged = salvage_request(broken)
    assert salvaged is not None and salvaged.method == "INVITE" and salvaged.call_id == "call-1@host"
    assert salvage_request(b"\x00\x01 binary junk") is None
    assert salvage_request(b"INVITE sip:x SIP/2.0\r\nbroken\r\n\r\n") is None  # nothing to address a reply to
