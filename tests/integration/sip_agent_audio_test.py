"""The audio the agent sends back over SIP, as a phone receives it: speech, 8 kHz G.711 in 160-byte packets, no gaps."""
from __future__ import annotations

import asyncio

import pytest

from spotfunnel.audio.frames import SILENCE_FRAME
from spotfunnel.audio.levels import rms_dbfs
from spotfunnel.transports.sip.peer import ReceivedRtp, SipPeer

pytestmark = pytest.mark.models


def talk_spurts(packets: list[ReceivedRtp]) -> list[list[ReceivedRtp]]:
    spurts: list[list[ReceivedRtp]] = []
    for p in packets:
        if p.marker or not spurts:
            spurts.append([])
        spurts[-1].append(p)
    return spurts


async def test_agent_greeting_arrives_as_continuous_pcmu_speech(services) -> None:  # type: ignore[no-untyped-def]
    from spotfunnel.api.sip_edge import loopback_sip
    from spotfunnel.calls.services import fixed_phrases, warm_up
    from spotfunnel.conversation.agent import load_agent

    await warm_up(services, fixed_phrases(load_agent("maple-street-salon")))
    heard = bytearray()
    async with loopback_sip(services) as (url, _directory):
        # no setup header: the tenant is found by the number dialled, as for a real trunk
        peer = SipPeer(url, called="+14155550100", caller="+14155550177", codecs=("PCMU",))
        await peer.connect()
        loop = asyncio.get_running_loop()
        start = loop.time()
        for tick in range(350):  # 7 s of a quiet caller, paced like a phone
            await asyncio.sleep(max(0.0, start + tick * 0.02 - loop.time()))
            heard += await peer.exchange(SILENCE_FRAME) or SILENCE_FRAME
        await peer.hangup()
    packets = peer.received
    assert packets and all(p.payload_type == 0 and p.payload_bytes == 160 for p in packets)  # PCMU, 20 ms at 8 kHz
    assert len({p.ssrc for p in packets}) == 1
    assert all((b.sequence - a.sequence) % 65536 == 1 for a, b in zip(packets, packets[1:]))  # nothing skipped
    for a, b in zip(packets, packets[1:]):
        step = (b.timestamp - a.timestamp) % 2**32
        assert step == 160 or (b.marker and step % 160 == 0 and step > 160), (a, b)  # jumps only after silence
    greeting = talk_spurts(packets)[0]
    assert len(greeting) >= 125  # the greeting plays as one spurt of 2.5 s or more: no gap inside it
    assert rms_dbfs(bytes(heard)) > -40  # and it is loud enough to be speech, not a trickle of noise
    transcript = await services.stt.transcribe(bytes(heard), vocabulary=["Maple Street Salon"])
    assert "maple street" in transcript.text.lower(), transcript.text  # speech the caller can understand
    assert peer.issues == []
