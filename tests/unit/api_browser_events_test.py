"""What the talk page's live transcript receives for each call event."""
from __future__ import annotations

from spotfunnel.api.browser import page_event
from spotfunnel.voice.events import CallEvent


def ev(event_kind: str, /, **data: object) -> CallEvent:
    return CallEvent(event_kind, 0, 0.0, dict(data))


def test_transcript_events_for_the_page() -> None:
    assert page_event(ev("caller_turn", kind="speech", text="A haircut, please.")) == {
        "type": "caller", "text": "A haircut, please."}
    assert page_event(ev("caller_turn", kind="dtmf", text="12")) == {"type": "caller", "text": "pressed 12",
                                                                     "dtmf": True}
    assert page_event(ev("caller_turn", kind="no_input", text="")) is None
    assert page_event(ev("agent_speech_queued", id=3, text="What day?", reprompt=False)) == {
        "type": "agent", "id": 3, "text": "What day?"}
    assert page_event(ev("agent_audio_started", id=3)) == {"type": "agent_audio", "id": 3}
    assert page_event(ev("agent_speech_done", id=3, text="What day?")) == {
        "type": "agent_heard", "id": 3, "text": "What day?"}
    assert page_event(ev("agent_interrupted", reason="caller barged in", heard=["What", ""])) == {
        "type": "interrupted", "heard": ["What", ""]}
    assert page_event(ev("protocol_issue", message="odd frame")) == {"type": "issue", "message": "odd frame"}
    assert page_event(ev("mark_played", name="speech-1-1")) is None
