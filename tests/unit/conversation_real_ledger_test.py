"""The receptionist against the real booking ledger on an in-memory SQLite database."""
from __future__ import annotations

from datetime import datetime

import pytest

from conversation_fakes import load_scenario

from spotfunnel.clock import FrozenClock
from spotfunnel.conversation.agent import load_agent
from spotfunnel.conversation.policy import UserTurn
from spotfunnel.conversation.receptionist import ReceptionistPolicy

db_module = pytest.importorskip("spotfunnel.store.db")
from spotfunnel.store.ledger import BookingLedger  # noqa: E402


@pytest.mark.parametrize("name", ["new-booking-basic", "taken-slot-alternative", "cancel-by-caller-id", "hours-question"])
async def test_example_scenario_with_real_ledger(name: str) -> None:
    scenario = load_scenario(name)
    agent = load_agent(scenario["tenant"])
    clock = FrozenClock(datetime.fromisoformat(scenario["now"]))
    db = db_module.Database.memory()
    try:
        ledger = BookingLedger(db, agent.profile, clock)
        await ledger.seed(scenario.get("existing_bookings", []))
        policy = ReceptionistPolicy(agent, ledger, clock, scenario["caller_id"], call_id=f"call-{name}")
        said = [policy.greeting().text]
        for turn in scenario["turns"]:
            replies = [r async for r in policy.respond(UserTurn(text=turn["say"]))]
            assert replies and not any(r.reprompt for r in replies), (turn["say"], [r.text for r in replies])
            said.extend(r.text for r in replies)
        assert policy.outcome == scenario["expect"]["outcome"]
        active = {(b.name, b.phone, b.service_id, b.start) for b in await ledger.active()}
        expected = {
            (b["name"], b["phone"], b["service"], datetime.fromisoformat(b["start"])) for b in scenario["expect"]["bookings"]
        }
        assert active == expected
        for phrase in scenario["expect"].get("agent_said", []):
            assert any(phrase.lower() in s.lower() for s in said)
    finally:
        db.dispose()
