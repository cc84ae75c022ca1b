"""SDP offer/answer: PCMU and PCMA, the caller's ptime, telephone-event, and offers we must refuse."""
from __future__ import annotations

import pytest

from spotfunnel.transports.sip.sdp import NoCommonCodec, SdpError, build_answer, build_offer, negotiate, parse_sdp


def offer(formats: str, extra: str = "", conn: str = "c=IN IP4 10.1.2.3\r\n") -> str:
    return (f"v=0\r\no=- 1 1 IN IP4 10.1.2.3\r\ns=-\r\n{conn}t=0 0\r\n"
            f"m=audio 40000 RTP/AVP {formats}\r\n{extra}")


def test_pcmu_by_static_payload_type() -> None:
    agreed = negotiate(parse_sdp(offer("0")))
    assert (agreed.codec, agreed.payload_type, agreed.ptime) == ("PCMU", 0, 20)
    assert (agreed.remote_host, agreed.remote_port, agreed.dtmf_payload_type) == ("10.1.2.3", 40000, None)


def test_offerer_preference_order_wins_and_dtmf_is_kept() -> None:
    sdp = offer("8 0 101", "a=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n")
    agreed = negotiate(parse_sdp(sdp))
    assert (agreed.codec, agreed.payload_type, agreed.dtmf_payload_type) == ("PCMA", 8, 101)


def test_the_callers_ptime_is_used_when_it_differs() -> None:
    assert negotiate(parse_sdp(offer("0", "a=ptime:30\r\n"))).ptime == 30
    assert negotiate(parse_sdp(offer("0", "a=ptime:25\r\n"))).ptime == 20  # not a G.711 packet length we send
    assert negotiate(parse_sdp(offer("0", "a=ptime:30\r\n"))).samples_per_packet == 240


def test_a_session_level_direction_holds_unless_the_media_sets_its_own() -> None:
    held = offer("0", conn="c=IN IP4 10.1.2.3\r\na=sendonly\r\n")
    assert negotiate(parse_sdp(held)).direction == "recvonly"  # the caller holds: we only listen
    overridden = offer("0", "a=sendrecv\r\n", conn="c=IN IP4 10.1.2.3\r\na=sendonly\r\n")
    assert negotiate(parse_sdp(overridden)).direction == "sendrecv"


def test_no_common_codec_names_what_was_offered() -> None:
    sdp = offer("9 18 96", "a=rtpmap:9 G722/8000\r\na=rtpmap:18 G729/8000\r\na=rtpmap:96 opus/48000/2\r\n")
    with pytest.raises(NoCommonCodec, match=r"offered 9=G722, 18=G729, 96=OPUS.*PCMU and PCMA"):
        negotiate(parse_sdp(sdp))


def test_dynamic_pcmu_at_the_wrong_rate_is_not_accepted() -> None:
    with pytest.raises(NoCommonCodec):
        negotiate(parse_sdp(offer("97", "a=rtpmap:97 PCMU/16000\r\n")))


def test_only_pcma_allowed_refuses_pcmu() -> None:
    with pytest.raises(NoCommonCodec):
        negotiate(parse_sdp(offer("0")), codecs=("PCMA",))


@pytest.mark.parametrize("sdp, error", [
    (offer("0", conn=""), SdpError),
    ("v=0\r\nm=audio 0 RTP/AVP 0\r\nc=IN IP4 1.2.3.4\r\n", NoCommonCodec),  # port 0: stream rejected
    ("v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 4000 RTP/SAVP 0\r\n", NoCommonCodec),
    ("v=0\r\nc=IN IP4 1.2.3.4\r\nm=video 4000 RTP/AVP 96\r\n", NoCommonCodec),
    ("not sdp at all", SdpError),
    ("v=0\r\nm=audio x RTP/AVP 0\r\n", SdpError),
])
def test_bad_offers(sdp: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        negotiate(parse_sdp(sdp))


def test_answer_carries_exactly_the_agreed_codec() -> None:
    agreed = negotiate(parse_sdp(offer("0 8 101", "a=rtpmap:101 telephone-event/8000\r\na=ptime:30\r\n")))
    answer = parse_sdp(build_answer(agreed, "127.0.0.1", 30000))
    media = answer.media[0]
    assert media.formats == [0, 101] and media.port == 30000 and answer.connection == "127.0.0.1"
    assert media.ptime == 30 and media.rtpmap[101] == ("TELEPHONE-EVENT", 8000)
    # the offerer reads our answer with the same negotiation
    assert negotiate(answer).codec == "PCMU"


def test_offer_for_the_uac() -> None:
    sdp = parse_sdp(build_offer("127.0.0.1", 4000, ("PCMA", "PCMU"), ptime=20))
    assert sdp.media[0].formats == [8, 0, 101]
    with pytest.raises(ValueError, match="unknown codec"):
        build_offer("127.0.0.1", 4000, ("G729",))
