"""The WebRTC attack (benchmarks/abuse.py): browser peers that connect, then freeze, and a normal caller after them.

Run as a script (`--silent-peers URL N`) it is the frozen browsers' process: it connects N aiortc
peers, says how many were admitted, and waits; the benchmark then stops it with SIGSTOP, so its
peers fall silent at once (no RTP, no RTCP, no ICE consent answers), as a tab or a laptop lid would.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
for path in (REPO_ROOT / "src", REPO_ROOT / "benchmarks"):
    if str(path) not in sys.path:  # runnable as a script without an installed package too
        sys.path.insert(0, str(path))

import httpx  # noqa: E402
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription  # noqa: E402
from aiortc.contrib.media import MediaPlayer  # noqa: E402

from abuse_server import Attack, Outcome  # noqa: E402

from spotfunnel.transports.browser_guard import BrowserLimits  # noqa: E402
from spotfunnel.transports.webrtc import loopback_candidates  # noqa: E402

__all__ = ["WEBRTC_ATTACKS"]

SILENT_PEERS = 5
CONNECT_TIMEOUT_S = 10.0


def microphone() -> MediaStreamTrack:
    """A caller's microphone: a quiet 220 Hz tone, paced in real time (FFmpeg's sine source through aiortc's player)."""
    track = MediaPlayer("sine=frequency=220:sample_rate=48000:duration=600", format="lavfi").audio
    if track is None:
        raise RuntimeError("FFmpeg's lavfi sine source gave no audio track (PyAV built without libavfilter?)")
    return track


def _loopback_only(sdp: str) -> str:
    return "\r\n".join(line for line in sdp.split("\r\n")
                       if not line.startswith("a=candidate:") or " 127.0.0.1 " in line) + "\r\n"


async def browser_call(base: str, http: httpx.AsyncClient) -> tuple[int, RTCPeerConnection]:
    """Offer a call as the talk page does; (HTTP status, the peer), connected when the status is 200."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTrack(microphone())
    pc.createDataChannel("control")
    with loopback_candidates(True):
        await pc.setLocalDescription(await pc.createOffer())
    response = await http.post(f"{base}/webrtc/offer",
                               json={"sdp": _loopback_only(pc.localDescription.sdp), "type": "offer"})
    if response.status_code != 200:
        return response.status_code, pc
    answer = response.json()
    await pc.setRemoteDescription(RTCSessionDescription(_loopback_only(answer["sdp"]), "answer"))
    deadline = time.monotonic() + CONNECT_TIMEOUT_S
    while pc.connectionState != "connected" and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return (200 if pc.connectionState == "connected" else 504), pc


async def _frozen_browsers(base: str, n: int) -> None:
    """The child process: connect `n` peers, send a second of audio, report, then wait to be frozen."""
    async with httpx.AsyncClient(timeout=CONNECT_TIMEOUT_S) as http:
        calls = [await browser_call(base, http) for _ in range(n)]
    await asyncio.sleep(1.0)
    statuses = [status for status, _pc in calls]
    print(f"admitted={statuses.count(200)} refused={len(statuses) - statuses.count(200)} statuses={statuses}",
          flush=True)
    await asyncio.sleep(3600)


async def silent_peers(attack: Attack) -> Outcome:
    """Issue 8 #7: five peers connect then go silent; a normal browser caller must still get in."""
    out = Outcome(f"{SILENT_PEERS} WebRTC peers that connect, send 1 s of audio, then freeze")
    # the server's media-idle deadline frees a silent peer's seat; then a retry or two (1 s apart) gets in
    patience_s = BrowserLimits().idle_timeout_s + attack.seconds(20.0, 12.0)
    child = await asyncio.create_subprocess_exec(sys.executable, __file__, "--silent-peers", attack.server.base,
                                                 str(SILENT_PEERS), stdout=asyncio.subprocess.PIPE)
    try:
        line = await asyncio.wait_for(child.stdout.readline(), 60.0) if child.stdout else b""
        os.kill(child.pid, signal.SIGSTOP)
        out.notes.append(f"silent peers: {line.decode().strip() or 'no report'}")
        status, waited = await _admitted_within(attack.server.base, patience_s)
        out.notes.append(f"a normal caller {'admitted' if status == 200 else f'not admitted ({status})'} "
                         f"{waited:.1f} s after the peers froze")
        out.check(status == 200, f"no browser call admitted within {patience_s:.0f} s of {SILENT_PEERS} silent peers")
    finally:
        if child.returncode is None:
            child.kill()
        await asyncio.wait_for(child.wait(), 10.0)
    return out


async def _admitted_within(base: str, patience_s: float) -> tuple[int, float]:
    """Try a normal browser call every second until one is admitted and connects, or `patience_s` passes."""
    began = time.monotonic()
    status = 0
    async with httpx.AsyncClient(timeout=CONNECT_TIMEOUT_S) as http:
        while True:
            status, pc = await browser_call(base, http)
            if status == 200:
                await asyncio.sleep(0.5)  # a moment of audio, then the caller hangs up
            await _hang_up(pc)
            if status == 200 or time.monotonic() - began >= patience_s:
                return status, time.monotonic() - began
            await asyncio.sleep(1.0)


async def _hang_up(pc: RTCPeerConnection) -> None:
    """Close the call and stop its microphone (the player's thread)."""
    tracks = [sender.track for sender in pc.getSenders() if sender.track is not None]
    await asyncio.wait_for(pc.close(), CONNECT_TIMEOUT_S)
    for track in tracks:
        track.stop()


WEBRTC_ATTACKS = {"webrtc-silent-peers": silent_peers}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="frozen browser peers for benchmarks/abuse.py")
    parser.add_argument("--silent-peers", nargs=2, metavar=("URL", "N"), required=True)
    args = parser.parse_args()
    asyncio.run(_frozen_browsers(args.silent_peers[0], int(args.silent_peers[1])))
