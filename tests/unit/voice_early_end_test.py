"""Early end of turn: the policy judges each distinct partial transcript once, not once per frame."""
from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

import spotfunnel.conversation.extract.dates as dates
from spotfunnel.clock import FrozenClock
from spotfunnel.conversation.agent import load_agent
from spotfunnel.conversation.receptionist import ReceptionistPolicy
from spotfunnel.conversation.state import Ask
from spotfunnel.store.db import Database
from spotfunnel.store.ledger import BookingLedger
from spotfunnel.voice.vad import EnergyFrameVad

from voice_fakes import ScriptedStt, feed, silence_frames, start_session, tone_frames

DAY_WITHOUT_TIME = "on the 14th of March"  # a day but no time: not yet an answer to "when?"


@pytest.fixture
def policy() -> Iterator[ReceptionistPolicy]:
    agent = load_agent("maple-street-salon")
    clock = FrozenClock(datetime.fromisoformat("2025-03-03T10:00:00-05:00"))
    db = Database.memory()
    try:
        policy = ReceptionistPolicy(agent, BookingLedger(db, agent.profile, clock), clock, "+14155550100", "call-1")
        policy.ctx.state.ask = Ask.WHEN
        yield policy
    finally:
        db.dispose()


@pytest.fixture
def parser_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every phrase handed to dateparser, through the real parser."""
    calls: list[str] = []
    real = dates.dateparser.parse

    def counting(phrase: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(phrase)
        return real(phrase, *args, **kwargs)

    monkeypatch.setattr(dates.dateparser, "parse", counting)
    return calls


def test_the_same_partial_is_parsed_once(policy: ReceptionistPolicy, parser_calls: list[str]) -> None:
    assert policy.completes_answer(DAY_WITHOUT_TIME) is False
    once = len(parser_calls)
    assert once > 0  # the phrase really went through dateparser
    for _ in range(30):  # the voice loop asks on every 20 ms frame until the turn ends
        assert policy.completes_answer(DAY_WITHOUT_TIME) is False
    assert len(parser_calls) == once


def test_a_new_partial_or_a_new_question_is_judged_afresh(policy: ReceptionistPolicy,
                                                          parser_calls: list[str]) -> None:
    policy.completes_answer(DAY_WITHOUT_TIME)
    first = len(parser_calls)
    assert policy.completes_answer(DAY_WITHOUT_TIME + " at 3 pm") is True
    second = len(parser_calls)
    assert second > first
    policy.ctx.state.ask = Ask.NAME  # the open question changed: the old verdict no longer applies
    assert policy.completes_answer(DAY_WITHOUT_TIME + " at 3 pm") is False


async def test_the_voice_loop_asking_every_frame_parses_the_partial_once(
        policy: ReceptionistPolicy, parser_calls: list[str]) -> None:
    asked: list[str] = []

    def completes_answer(text: str) -> bool:
        asked.append(text)
        return policy.completes_answer(text)

    session, line, task = await start_session(ScriptedStt([DAY_WITHOUT_TIME]), EnergyFrameVad(), completes_answer)
    await feed(line, tone_frames(400) + silence_frames(700))
    await line.hangup()
    await task
    assert [t.text for t in session.received] == [DAY_WITHOUT_TIME]
    assert len(asked) >= 10  # asked on every frame from the speculation until the 600 ms pause ended it
    policy._verdicts.clear()
    parsed_by_the_call, parser_calls[:] = len(parser_calls), []
    policy.completes_answer(DAY_WITHOUT_TIME)
    assert parsed_by_the_call == len(parser_calls)  # the whole turn cost one judgement
