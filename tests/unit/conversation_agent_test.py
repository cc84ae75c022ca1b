"""Agents as data: the demo tenant's facts, the deep merge, and errors that name file, field and problem."""
from __future__ import annotations

import shutil
from datetime import time
from pathlib import Path

import pytest
import yaml

from spotfunnel.conversation.agent import (
    AGENTS_DIR, TENANTS_DIR, AgentConfigError, UnknownTenant, deep_merge, list_tenants, load_agent,
)


def test_demo_tenant_matches_the_contract() -> None:
    agent = load_agent("maple-street-salon")
    p = agent.profile
    assert (p.id, p.name, p.phone, p.handoff_phone) == ("maple-street-salon", "Maple Street Salon", "+14155550100", "+14155550199")
    assert p.address == "1200 Maple Street, San Francisco" and p.timezone == "America/Los_Angeles"
    assert (p.slot_minutes, p.capacity) == (15, 1)
    assert set(p.hours) == {"tuesday", "wednesday", "thursday", "friday", "saturday"}
    assert all((h.open, h.close) == (time(9), time(18)) for d, h in p.hours.items() if d != "saturday")
    assert (p.hours["saturday"].open, p.hours["saturday"].close) == (time(9), time(16))
    assert [(s.id, s.name, s.minutes, s.price) for s in p.services] == [
        ("haircut", "haircut", 45, 45), ("color", "hair color", 90, 120),
        ("beard-trim", "beard trim", 20, 20), ("blowout", "blowout", 30, 35),
    ]


def test_base_agent_and_vocabulary() -> None:
    agent = load_agent("maple-street-salon")
    tt = agent.turn_taking
    assert (tt.silence_ms, tt.early_pause_ms, tt.no_input_ms, tt.max_misunderstandings) == (600, 240, 7000, 3)
    assert (tt.tool_filler_ms, tt.tool_deadline_ms) == (400, 10000)
    assert agent.say("greeting", business="Maple Street Salon") == "Thanks for calling Maple Street Salon. How can I help you today?"
    vocab = agent.stt_vocabulary
    for term in ("Maple Street Salon", "haircut", "beard trim", "hair colouring", "a cut", "trim my beard", "dye"):
        assert term in vocab
    assert len(vocab) == len({v.lower() for v in vocab})
    assert "Maple Street Salon" in agent.voicemail() and "+14155550100" in agent.voicemail()


def test_list_tenants_and_unknown_tenant() -> None:
    assert "maple-street-salon" in list_tenants()
    with pytest.raises(UnknownTenant, match="maple-street-salon") as info:
        load_agent("no-such-salon")
    assert "no-such-salon" in str(info.value) and isinstance(info.value, AgentConfigError)


def test_yamls_are_package_data() -> None:
    assert (AGENTS_DIR / "receptionist.yaml").is_file() and (TENANTS_DIR / "maple-street-salon.yaml").is_file()


def test_deep_merge_overrides_leaves_and_keeps_the_rest() -> None:
    merged = deep_merge({"a": {"b": 1, "c": [1]}, "d": 1}, {"a": {"c": [2]}, "e": 2})
    assert merged == {"a": {"b": 1, "c": [2]}, "d": 1, "e": 2}


@pytest.fixture
def tenants(tmp_path: Path) -> Path:
    folder = tmp_path / "tenants"
    folder.mkdir()
    shutil.copy(AGENTS_DIR / "receptionist.yaml", tmp_path / "receptionist.yaml")
    shutil.copy(TENANTS_DIR / "maple-street-salon.yaml", folder / "maple-street-salon.yaml")
    return folder


def _edit(path: Path, change: dict) -> None:  # type: ignore[type-arg]
    data = deep_merge(yaml.safe_load(path.read_text()), change)
    path.write_text(yaml.safe_dump(data))


def test_overlay_overrides_a_phrase(tenants: Path) -> None:
    _edit(tenants / "maple-street-salon.yaml", {"phrases": {"greeting": "Maple Street, {business} speaking!"}})
    agent = load_agent("maple-street-salon", tenants)
    assert agent.say("greeting", business="X") == "Maple Street, X speaking!"
    assert agent.say("anything_else") == "Is there anything else I can help you with?"


def test_error_names_file_field_and_problem(tenants: Path) -> None:
    overlay = tenants / "maple-street-salon.yaml"
    _edit(overlay, {"profile": {"hours": {"tuesday": {"close": "25:00"}}}})
    with pytest.raises(AgentConfigError) as info:
        load_agent("maple-street-salon", tenants)
    message = str(info.value)
    assert str(overlay) in message and "profile.hours.tuesday.close" in message and "time" in message.lower()


def test_closing_before_opening_is_an_error(tenants: Path) -> None:
    _edit(tenants / "maple-street-salon.yaml", {"profile": {"hours": {"saturday": {"close": "08:00"}}}})
    with pytest.raises(AgentConfigError, match=r"profile\.hours\.saturday: closing time"):
        load_agent("maple-street-salon", tenants)


def test_missing_phrase_names_the_base_file(tenants: Path) -> None:
    base = tenants.parent / "receptionist.yaml"
    data = yaml.safe_load(base.read_text())
    del data["phrases"]["read_back"]
    base.write_text(yaml.safe_dump(data))
    with pytest.raises(AgentConfigError) as info:
        load_agent("maple-street-salon", tenants)
    assert str(base) in str(info.value) and "phrases" in str(info.value) and "read_back" in str(info.value)


def test_unknown_template_field_is_an_error(tenants: Path) -> None:
    _edit(tenants / "maple-street-salon.yaml", {"phrases": {"ask_name": "Your name, {nickname}?"}})
    with pytest.raises(AgentConfigError, match="ask_name: unknown field"):
        load_agent("maple-street-salon", tenants)


def test_unknown_key_and_bad_timing_are_errors(tenants: Path) -> None:
    _edit(tenants / "maple-street-salon.yaml", {"turn_taking": {"silense_ms": 500}})
    with pytest.raises(AgentConfigError, match=r"turn_taking\.silense_ms"):
        load_agent("maple-street-salon", tenants)


def test_yaml_syntax_error_names_the_line(tenants: Path) -> None:
    overlay = tenants / "maple-street-salon.yaml"
    overlay.write_text("profile:\n  id: maple-street-salon\n  name: [unclosed\n")
    with pytest.raises(AgentConfigError, match=r"line \d+.*YAML syntax error") as info:
        load_agent("maple-street-salon", tenants)
    assert str(overlay) in str(info.value)


def test_tenant_id_must_match_file_name(tenants: Path) -> None:
    shutil.copy(tenants / "maple-street-salon.yaml", tenants / "other-salon.yaml")
    with pytest.raises(AgentConfigError, match="does not match the file name"):
        load_agent("other-salon", tenants)


def test_a_filler_after_the_tool_deadline_is_an_error(tenants: Path) -> None:
    _edit(tenants / "maple-street-salon.yaml", {"turn_taking": {"tool_deadline_ms": 300}})
    with pytest.raises(AgentConfigError, match=r"tool_filler_ms \(400\) must be shorter than tool_deadline_ms \(300\)"):
        load_agent("maple-street-salon", tenants)
