"""The browser WebSocket PCM transport driven by a fake socket: framing, control parsing, bad input, caps, pacing."""
from __future__ import annotations

import asyncio

import numpy as np
import pytest
from browser_fakes import FakeBrowserSocket

from spotfunnel.transports.base import AudioIn, CallStarted, Dtmf, Hangup, InboundEvent, MarkPlayed, ProtocolIssue
from spotfunnel.transports.browser_guard import BrowserLimits
from spotfunnel.transports.browser_ws import BrowserWsTransport

START = {"type": "start", "format": {"encoding": "audio/l16", "sampleRate": 16000, "channels": 1}}
#: every issue reported: these tests look at each message's wording
CHATTY = BrowserLimits(log_first_issues=100)


def tone(frames: int, freq: float = 440.0) -> bytes:
    t = np.arange(frames * 320) / 16000
    return (np.sin(2 * np.pi * freq * t) * 6000).astype("<i2").tobytes()


async def drain(transport: BrowserWsTransport) -> list[InboundEvent]:
    """Everything up to and including the Hangup."""
    out: list[InboundEvent] = []
    while not out or not isinstance(out[-1], Hangup):
        out.append(await transport.receive())
    return out


async def test_start_then_frames_dtmf_marks_and_hangup() -> None:
    audio = tone(3)
    sock = FakeBrowserSocket().text(START)
    for i in range(3):
        sock.binary(audio[i * 640:(i + 1) * 640])
    sock.text({"type": "dtmf", "digit": "5"}).text({"type": "mark", "name": "speech-1"}).text({"type": "hangup"})
    t = BrowserWsTransport(sock, tenant="maple-street-salon")
    events = await drain(t)
    started = events[0]
    assert isinstance(started, CallStarted)
    assert started.tenant_id == "maple-street-salon" and started.caller_id == ""
    assert started.call_id == t.call_id
    assert [e.pcm for e in events if isinstance(e, AudioIn)] == [audio[i * 640:(i + 1) * 640] for i in range(3)]
    assert Dtmf("5") in events and MarkPlayed("speech-1") in events
    assert events[-1] == Hangup("caller hung up")
    assert await t.receive() == Hangup("caller hung up")  # repeated on later calls
    assert not [e for e in events if isinstance(e, ProtocolIssue)]


async def test_odd_sized_messages_are_rechunked_and_reported_once() -> None:
    audio = tone(4)
    sock = FakeBrowserSocket().text(START).binary(audio[:1280]).binary(audio[1280:1280 + 960])
    sock.binary(audio[2240:2560]).disconnect()
    events = await drain(BrowserWsTransport(sock))
    frames = [e.pcm for e in events if isinstance(e, AudioIn)]
    assert frames == [audio[i:i + 640] for i in range(0, 2560, 640)]
    issues = [e.message for e in events if isinstance(e, ProtocolIssue)]
    assert len(issues) == 3  # 1280, 960 and 320 bytes: each size once
    assert all("not a 20 ms frame" in m and "re-chunked" in m for m in issues)
    assert events[-1] == Hangup("caller closed the page")


@pytest.mark.parametrize("bad", [
    b"\x01\x02\x03",  # not whole samples
])
async def test_bad_binary_gives_protocol_issue_not_a_crash(bad: bytes) -> None:
    sock = FakeBrowserSocket().text(START).binary(bad).binary(tone(1)).text({"type": "hangup"})
    events = await drain(BrowserWsTransport(sock))
    issues = [e.message for e in events if isinstance(e, ProtocolIssue)]
    assert any("not whole PCM16 samples" in m and "dropped" in m for m in issues)
    assert len([e for e in events if isinstance(e, AudioIn)]) == 1


async def test_bad_control_messages_are_issues() -> None:
    sock = FakeBrowserSocket().binary(tone(1)).text({"type": "dtmf", "digit": "1"}).text(START)
    sock.text("{not json").text({"type": "dance"}).text(["a", "list"]).text({"type": "dtmf", "digit": "x"})
    sock.text({"type": "dtmf"}).text({"type": "mark"}).text(START).text({"type": "hangup"})
    events = await drain(BrowserWsTransport(sock, limits=CHATTY))
    issues = [e.message for e in events if isinstance(e, ProtocolIssue)]
    assert "audio before start" in issues[0] and "dtmf before start" in issues[1]
    assert any("malformed JSON" in m for m in issues)
    assert any("unknown or missing message type 'dance'" in m for m in issues)
    assert sum("digit" in m and "0-9 * # A-D" in m for m in issues) == 2
    assert any("mark message without a name" in m for m in issues)
    assert any("second start" in m for m in issues)
    assert [e for e in events if isinstance(e, CallStarted)] and not [e for e in events if isinstance(e, Dtmf)]


async def test_declared_format_mismatch_rejects_the_call_with_a_clear_message() -> None:
    start = dict(START, format={"encoding": "audio/l16", "sampleRate": 48000, "channels": 1})
    events = await drain(BrowserWsTransport(FakeBrowserSocket().text(start)))
    issue = next(e for e in events if isinstance(e, ProtocolIssue))
    assert "sample rate 48000 is not 16000 Hz" in issue.message and "browser-pcm" in issue.message
    assert isinstance(events[-1], Hangup) and events[-1].reason.startswith("rejected:")
    assert not [e for e in events if isinstance(e, CallStarted)]


async def test_dead_line_at_the_start_is_reported() -> None:
    sock = FakeBrowserSocket().text(START)
    for _ in range(50):
        sock.binary(bytes(640))
    events = await drain(BrowserWsTransport(sock.text({"type": "hangup"})))
    issues = [e.message for e in events if isinstance(e, ProtocolIssue)]
    assert len(issues) == 1 and "silent" in issues[0] and "digital silence" in issues[0]


async def test_outbound_audio_control_and_events() -> None:
    sock = FakeBrowserSocket()
    t = BrowserWsTransport(sock)
    frame = tone(1)
    await t.send_audio(frame)
    await t.send_mark("speech-3")
    await t.clear()
    await t.send_event({"type": "caller", "text": "hello"})
    with pytest.raises(ValueError, match="640 bytes"):
        await t.send_audio(frame[:100])
    with pytest.raises(ValueError, match="event type"):
        await t.send_event({"type": "hangup"})
    await t.hangup()
    assert sock.sent_bytes == [frame]
    assert sock.sent_json == [{"type": "mark", "name": "speech-3"}, {"type": "clear"},
                              {"type": "caller", "text": "hello"}, {"type": "hangup", "reason": "agent hung up"}]
    assert await t.receive() == Hangup("agent hung up")
    assert not sock.closed  # open for the last events until close()
    await t.close()
    assert sock.closed


async def test_transfer_tells_the_page_and_ends_the_call() -> None:
    sock = FakeBrowserSocket()
    t = BrowserWsTransport(sock)
    await t.transfer("+14155550199")
    assert sock.sent_json == [{"type": "transfer", "to": "+14155550199"}]
    assert await t.receive() == Hangup("transferred to +14155550199")


async def test_a_failed_send_ends_the_call_instead_of_raising() -> None:
    t = BrowserWsTransport(FakeBrowserSocket(fail_sends=True))
    await t.send_audio(tone(1))
    assert isinstance(await t.receive(), Hangup)
    assert t.stats["frames_out"] == 0


async def test_the_page_cannot_name_the_caller_the_tenant_or_a_test_switch() -> None:
    start = dict(START, caller="+14155550111", tenant="other-salon", setup="prepared-key", lockstep="1",
                 direction="outbound")
    t = BrowserWsTransport(FakeBrowserSocket().text(start).text({"type": "hangup"}), tenant="maple-street-salon")
    started = (await drain(t))[0]
    assert started == CallStarted(call_id=t.call_id or "", caller_id="", called="", tenant_id="maple-street-salon")
    assert started.params == {} and t.lockstep is False


async def test_oversized_messages_are_dropped_unparsed_and_counted() -> None:
    limits = BrowserLimits(max_audio_bytes=1280, max_control_chars=200)
    sock = FakeBrowserSocket().text(START).binary(bytes(1282)).text(" " * 201).binary(tone(1)).text({"type": "hangup"})
    t = BrowserWsTransport(sock, limits=limits)
    events = await drain(t)
    issues = [e.message for e in events if isinstance(e, ProtocolIssue)]
    assert "1282-byte audio message dropped: the limit is 1280 bytes" in issues[0]
    assert "control message of 201 characters refused unparsed (limit 200" in issues[1]
    assert len([e for e in events if isinstance(e, AudioIn)]) == 1 and t.stats["junk"] == 2


async def test_a_junk_flood_is_counted_quietly_and_closes_the_socket() -> None:
    limits = BrowserLimits(junk_budget=20, log_first_issues=3)
    sock = FakeBrowserSocket().text(START)
    for i in range(1000):
        sock.text(f"junk {i}")
    t = BrowserWsTransport(sock, limits=limits)
    events = await drain(t)
    issues = [e for e in events if isinstance(e, ProtocolIssue)]
    assert len(issues) == 3  # the first few reported; the rest counted, not logged one by one
    assert t.stats["junk"] == 20 and "keeps sending junk" in events[-1].reason  # type: ignore[union-attr]
    assert sock.closed and sock.close_code == 1008
    assert sock.inbox.qsize() == 1000 - 20  # nothing read past the budget


async def test_good_messages_earn_back_the_junk_budget() -> None:
    limits = BrowserLimits(junk_budget=5, good_per_junk=2)
    sock = FakeBrowserSocket().text(START)
    for _ in range(40):  # one bad message for every two good frames: a sloppy page, never cut off
        sock.text("oops").binary(tone(1)).binary(tone(1))
    t = BrowserWsTransport(sock.text({"type": "hangup"}), limits=limits)
    events = await drain(t)
    assert events[-1] == Hangup("caller hung up") and t.stats["junk"] == 40 and not sock.closed


async def test_a_burst_faster_than_real_time_is_paced_and_its_excess_dropped() -> None:
    wall = [1000.0]  # the edge's wall clock stands still unless the test moves it
    sock = FakeBrowserSocket().text(START)
    for _ in range(200):  # 4 s of audio sent at once
        sock.binary(tone(1))
    t = BrowserWsTransport(sock, limits=BrowserLimits(max_buffered_frames=25, burst_s=0.2), wall=lambda: wall[0])
    assert isinstance(await t.receive(), CallStarted)
    at_once = 0
    with pytest.raises(TimeoutError):  # the clock stands still: past the burst, no frame is due
        while True:
            item = await asyncio.wait_for(t.receive(), 0.5)
            assert isinstance(item, AudioIn)
            at_once += 1
    assert at_once == 11  # the 200 ms burst allowance (and the frame due now), not the 4 s sent
    assert t.stats["frames_in"] == at_once + 25 and t.stats["dropped_in"] == 200 - at_once - 25
    wall[0] += 0.02  # one frame's time later, one more frame is due
    assert isinstance(await asyncio.wait_for(t.receive(), 0.5), AudioIn)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(t.receive(), 0.5)
