"""The voice layer's bounds: a call's event history is capped, and speech offered after the line has gone settles at once."""
from __future__ import annotations

from spotfunnel.voice.events import EventLog
from spotfunnel.voice.vad import EnergyFrameVad

from voice_fakes import ScriptedStt, start_session


def test_event_history_is_capped_per_kind_and_counts_what_it_dropped() -> None:
    seen: list[str] = []
    log = EventLog(max_events=300, max_per_kind=100)
    log.subscribe(lambda ev: seen.append(ev.kind))
    log.emit("caller_turn", text="hello")
    for _ in range(10_000):  # a junk flood: one protocol issue per message
        log.emit("protocol_issue", message="malformed JSON ignored")
    log.emit("hangup", reason="caller hung up")
    assert len(log.of("protocol_issue")) == 100 and log.dropped["protocol_issue"] == 9_900
    assert [e.kind for e in log.events if e.kind != "protocol_issue"] == ["caller_turn", "hangup"]  # the rest kept
    assert len(seen) == 10_002  # listeners (the live log, the browser page) still see every event
    for kind in ("a", "b", "c", "d"):  # and the whole history has a cap too
        for _ in range(100):
            log.emit(kind)
    assert len(log.events) == 300 and log.dropped_total == 9_900 + 400 - (300 - 102)


async def test_speech_offered_after_the_line_has_gone_settles_at_once_unheard() -> None:
    session, line, task = await start_session(ScriptedStt([]), EnergyFrameVad())
    await line.hangup()
    await task
    handle = session.say("Let me check that for you.")
    assert handle.done  # nothing will ever play it: nobody may wait for it
    result = await handle.result()
    assert (result.heard, result.interrupted, result.played_ms) == ("", True, 0)
    assert [e.data["text"] for e in session.events.of("agent_speech_unheard")] == ["Let me check that for you."]
