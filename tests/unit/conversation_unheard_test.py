"""The caller heard it, or it did not happen: a confirmation talked over is asked again, never assumed."""
from __future__ import annotations

from conversation_support import Call


async def test_a_read_back_the_caller_talked_over_is_asked_again() -> None:
    call = Call("2026-12-08T10:00:00-08:00")
    await call.say("I'd like to book a haircut on Thursday at eleven in the morning.")
    await call.say("Maria Lopez.")
    [read_back] = await call.say("Yes, that number is good.")
    assert "Just to confirm" in read_back.text
    # the caller kept talking: only the first words of the read-back played
    call.policy.record_heard(read_back, "Just to", interrupted=True)
    [again] = await call.say("That's the one.")
    assert again.text.endswith(call.policy.ctx.state.question)
    assert await call.active() == []
    # heard in full this time, so a yes now books
    call.policy.record_heard(again, again.text, interrupted=False)
    replies = await call.say("Yes, that's right.")
    assert len(await call.active()) == 1
    assert call.policy.outcome == "booked"
    assert any("all set" in r.text for r in replies)


async def test_an_interruption_after_the_question_was_heard_still_counts() -> None:
    call = Call("2026-12-08T10:00:00-08:00")
    await call.say("I'd like to book a haircut on Thursday at eleven in the morning.")
    await call.say("Maria Lopez.")
    [read_back] = await call.say("Yes, that number is good.")
    words = read_back.text.split()
    call.policy.record_heard(read_back, " ".join(words[:-1]), interrupted=True)  # cut on the last word
    await call.say("Yes.")
    assert len(await call.active()) == 1
