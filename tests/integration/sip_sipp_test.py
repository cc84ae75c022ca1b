"""SIPp (Debian sip-tester) against our SIP server: the shipped PCMA pcap, and a PCMU pcap of a caller booking."""
from __future__ import annotations

import asyncio
import socket
import uuid
from datetime import datetime
from pathlib import Path

import pytest

from spotfunnel.audio.g711 import ulaw_encode
from spotfunnel.audio.resample import resample_once
from spotfunnel.transports.base import Dtmf
from spotfunnel.transports.sip.rtp import RtpSender
from spotfunnel.transports.sip.server import SipServer

from conftest import EXAMPLES, require_peer
from sip_support import EchoHandler, write_rtp_pcap

SHIPPED_PCAPS = Path("/usr/share/sip-tester")


def free_media_port() -> int:
    """An even UDP port nobody holds now (SIPp's -mp; it also uses the next ports up)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return port - port % 2 if port < 65000 else 40000


async def run_sipp(sipp: str, server_port: int, args: list[str], cwd: Path, timeout_s: float) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sipp, f"127.0.0.1:{server_port}", *args, "-m", "1", "-i", "127.0.0.1", "-mi", "127.0.0.1",
        "-mp", str(free_media_port()), "-nostdin", "-timeout", f"{int(timeout_s)}s", "-timeout_error",
        "-trace_err", cwd=str(cwd), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    try:
        _, err = await asyncio.wait_for(proc.communicate(), timeout_s + 15)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    errors = "".join(p.read_text(errors="replace")[-3000:] for p in cwd.glob("*_errors.log"))
    (cwd / "sipp-stderr.log").write_bytes(err)
    return proc.returncode or 0, err.decode(errors="replace")[-1500:] + errors


async def test_sipp_uac_pcap_pcma_call_completes(tmp_path: Path) -> None:
    sipp = require_peer("sipp", "sip-tester")
    (tmp_path / "pcap").mkdir()
    for pcap in SHIPPED_PCAPS.glob("*.pcap"):  # the scenario plays pcap/g711a.pcap and pcap/dtmf_2833_1.pcap
        (tmp_path / "pcap" / pcap.name).symlink_to(pcap)
    echo = EchoHandler()
    server = SipServer(echo, port=0)
    await server.start()
    try:
        code, log = await run_sipp(sipp, server.port, ["-sn", "uac_pcap", "-s", "+14155550100"], tmp_path, 40)
        await asyncio.wait_for(echo.release.wait(), 5)
    finally:
        await server.stop()
    assert code == 0, log
    call = echo.calls[0]
    assert call.codec.agreed.codec == "PCMA" and call.codec.agreed.payload_type == 8
    # 7 s of speech in 30 ms packets: it arrived as voiced 20 ms frames, and the RFC 2833 '1' once
    assert call.stats["packets_in"] >= 236 and call.stats["loud_frames_in"] >= 200
    assert call.codec.jitter.stats["lost"] == 0
    assert [d.digit for d in echo.of(Dtmf)] == ["1"]


SCENARIO_XML = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="PCMU caller books an appointment">
  <send retrans="500"><![CDATA[
INVITE sip:+14155550100@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:{caller}@[local_ip]:[local_port]>;tag=[pid]SIPpTag[call_number]
To: <sip:+14155550100@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: 1 INVITE
Contact: <sip:{caller}@[local_ip]:[local_port]>
Max-Forwards: 70
Content-Type: application/sdp
Content-Length: [len]

v=0
o=caller 1 1 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [auto_media_port] RTP/AVP 0 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=ptime:20
]]></send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="200" rtd="true"/>
  <send><![CDATA[
ACK sip:+14155550100@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:{caller}@[local_ip]:[local_port]>;tag=[pid]SIPpTag[call_number]
To: <sip:+14155550100@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
CSeq: 1 ACK
Max-Forwards: 70
Content-Length: 0
]]></send>
  <nop><action><exec play_pcap_audio="{pcap}"/></action></nop>
  <!-- the caller has said everything once the recording has played: hang up -->
  <pause milliseconds="{pause_ms}"/>
  <send retrans="500"><![CDATA[
BYE sip:+14155550100@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:{caller}@[local_ip]:[local_port]>;tag=[pid]SIPpTag[call_number]
To: <sip:+14155550100@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
CSeq: 2 BYE
Max-Forwards: 70
Content-Length: 0
]]></send>
  <recv response="200"/>
</scenario>
"""


def caller_pcap(turns: list[bytes], gaps_s: list[float], lead_s: float, path: Path) -> float:
    """A PCMU RTP stream (20 ms packets, silence between turns) of the caller's turns; returns its length."""
    pcm8k = bytearray(bytes(int(lead_s * 8000) * 2))
    for turn, gap in zip(turns, gaps_s):
        pcm8k += resample_once(turn, 16_000, 8000) + bytes(int(gap * 8000) * 2)
    sender = RtpSender(0, ssrc=0x5F0)
    packets = []
    for i in range(len(pcm8k) // 320):
        packets.append((1_700_000_000 + i * 0.02, sender.packet(ulaw_encode(bytes(pcm8k[i * 320:(i + 1) * 320])),
                                                                  160).to_bytes()))
    write_rtp_pcap(path, packets)
    return len(packets) * 0.02


@pytest.mark.models
async def test_sipp_pcmu_caller_books_an_appointment(tmp_path: Path, services) -> None:  # type: ignore[no-untyped-def]
    sipp = require_peer("sipp", "sip-tester")
    from spotfunnel.api.sip_edge import SipEdge
    from spotfunnel.calls.call import CallRecord, CallSetup
    from spotfunnel.calls.directory import CallDirectory
    from spotfunnel.calls.eval import CallerVoice
    from spotfunnel.calls.scenario import load_scenario
    from spotfunnel.calls.services import fixed_phrases, warm_up
    from spotfunnel.clock import FrozenClock
    from spotfunnel.conversation.agent import load_agent
    from spotfunnel.store.db import Database
    from spotfunnel.store.ledger import BookingLedger

    scenario = load_scenario(EXAMPLES / "new-booking-basic.yaml")
    agent = load_agent(scenario.tenant)
    await warm_up(services, fixed_phrases(agent))
    voice = CallerVoice(services)
    # the scenario's caller up to the yes that books; then the caller hangs up (saves 30 s of call)
    turns = [await voice.turn_audio(scenario, i) for i in range(5)]
    assert scenario.turns[4].say == "Yes, that's right."
    # silence after each turn: room for the agent's answer (the read-back after turn 4 is the longest)
    gaps = [6.0, 6.5, 6.0, 10.0, 4.0]
    length = caller_pcap(turns, gaps, lead_s=6.0, path=tmp_path / "caller.pcap")

    db = Database.memory()
    clock = FrozenClock(scenario.now)
    directory = CallDirectory(default_setup=lambda a: CallSetup(agent=a, db=db, clock=clock))
    key = uuid.uuid4().hex
    record = CallRecord(call_id="sipp-booking")
    directory.prepare(key, CallSetup(agent=agent, db=db, clock=clock), record)
    edge = SipEdge(services, directory, port=0)
    await edge.start()
    call_id = f"sipp-booking-{uuid.uuid4().hex}"  # the setup is bound to it in process, never by a header
    edge.expect(call_id, setup_key=key, lockstep=False)
    (tmp_path / "booking.xml").write_text(SCENARIO_XML.format(
        caller=scenario.caller_id, pcap=tmp_path / "caller.pcap", pause_ms=int(length * 1000)))
    try:
        code, log = await run_sipp(sipp, edge.server.port, ["-sf", "booking.xml", "-cid_str", call_id], tmp_path,
                                   length + 40)
        await asyncio.wait_for(record.finished.wait(), 30)
    finally:
        await edge.stop()
    said = [t["text"] for t in record.transcript]
    assert code == 0, f"{log}\ntranscript: {said}"
    assert record.outcome == "booked", said
    booked = await BookingLedger(db, agent.profile, clock).active()
    assert [(b.name, b.phone, b.service_id, b.start) for b in booked] == [
        ("Maria Lopez", "+14155550111", "haircut", datetime.fromisoformat("2026-12-10T11:00:00-08:00"))]
