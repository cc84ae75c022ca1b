"""Call scenarios (shared/scenarios/FORMAT.md): the models and a loader whose errors name file and line."""
from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import phonenumbers
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator


class ScenarioError(Exception):
    """A scenario file that does not parse or validate; the message names the file and the line."""


def _e164(value: str) -> str:
    try:
        parsed = phonenumbers.parse(str(value), "US")
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"{value!r} is not a phone number ({exc}); write it in E.164, e.g. +14155550166")
    if not phonenumbers.is_possible_number(parsed):
        raise ValueError(f"{value!r} is not a possible phone number; write it in E.164, e.g. +14155550166")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("needs a UTC offset, e.g. 2026-12-08T10:00:00-08:00")
    return value


class BookingSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    phone: str
    service: str
    start: datetime

    _phone = field_validator("phone")(classmethod(lambda cls, v: _e164(v)))
    _start = field_validator("start")(classmethod(lambda cls, v: _aware(v)))


class ScenarioTurn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    say: str = Field(min_length=1)
    audio: str | None = None
    pause_ms: int = Field(default=500, ge=0, le=60_000)
    barge_in_ms: int | None = Field(default=None, ge=0, le=60_000)


class Expectation(BaseModel):
    model_config = ConfigDict(extra="forbid")
    outcome: Literal["booked", "rescheduled", "cancelled", "answered", "transferred"]
    bookings: list[BookingSpec] | None = None
    sms_to: list[str] | None = None
    agent_said: list[str] | None = None

    @field_validator("sms_to")
    @classmethod
    def _phones(cls, v: list[str] | None) -> list[str] | None:
        return None if v is None else [_e164(x) for x in v]


class Scenario(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    tenant: str
    now: datetime
    caller_id: str
    existing_bookings: list[BookingSpec] = Field(default_factory=list)
    turns: list[ScenarioTurn] = Field(min_length=1)
    expect: Expectation
    path: Path | None = Field(default=None, exclude=True)

    _now = field_validator("now")(classmethod(lambda cls, v: _aware(v)))
    _caller = field_validator("caller_id")(classmethod(lambda cls, v: _e164(v)))

    def audio_path(self, turn: ScenarioTurn) -> Path | None:
        if turn.audio is None:
            return None
        base = self.path.parent if self.path else Path.cwd()
        return (base / turn.audio).resolve()


def _line_of(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """The 1-based line of the YAML node at a pydantic error location."""
    line = node.start_mark.line + 1 if node is not None else None
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            nxt = next((v for k, v in node.value if getattr(k, "value", None) == key), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            nxt = node.value[key]
        else:
            nxt = None
        if nxt is None:
            break
        node, line = nxt, nxt.start_mark.line + 1
    return line


def load_scenario(path: Path) -> Scenario:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"{path}: cannot read the scenario file: {exc}")
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ScenarioError(f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}")
    if not isinstance(data, dict):
        raise ScenarioError(f"{path}:1: a scenario must be a YAML mapping with name, tenant, now, turns, expect")
    try:
        scenario = Scenario.model_validate({**data, "path": path})
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            field_path = ".".join(str(p) for p in loc) or "(top level)"
            lines.append(f"{path}:{_line_of(node, loc) or 1}: {field_path}: {err['msg']}")
        raise ScenarioError("\n".join(lines))
    return scenario


def find_scenarios(paths: list[Path]) -> list[Path]:
    """Every *.yaml under the given files and folders, sorted; a missing path is an error."""
    found: list[Path] = []
    for p in paths:
        if p.is_dir():
            found.extend(sorted(p.rglob("*.yaml")) + sorted(p.rglob("*.yml")))
        elif p.is_file():
            found.append(p)
        else:
            raise ScenarioError(f"{p}: no such file or folder")
    return found
