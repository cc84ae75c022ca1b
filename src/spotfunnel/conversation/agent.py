"""Agents as data: the base agent plus a tenant overlay, loaded from YAML and validated."""
from __future__ import annotations

import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from spotfunnel.business import TenantProfile, e164

log = structlog.get_logger(__name__)

AGENTS_DIR = Path(__file__).parent / "agents"
TENANTS_DIR = AGENTS_DIR / "tenants"
DEFAULT_BASE = "receptionist"

# Every phrase the receptionist says, with the named fields its template may use.
PHRASE_FIELDS: dict[str, frozenset[str]] = {
    name: frozenset(fields.split()) if fields else frozenset()
    for name, fields in {
        "greeting": "business", "ask_how_to_help": "", "ask_service": "services",
        "ask_day_time": "service", "ask_day": "", "ask_time": "day", "ask_name": "",
        "ask_last_name": "first_name", "ack_name": "first_name", "ack_spelled_name": "name spelling", "take_your_time": "",
        "offer_caller_id": "", "ask_phone": "",
        "phone_not_understood": "", "read_back": "service when name", "ask_correction": "",
        "booked": "service when name phone_last4", "slot_taken": "when",
        "slot_closed_day": "weekday", "slot_closed_time": "time weekday open close",
        "slot_past": "when", "slot_after_closing": "service time close", "slot_off_grid": "",
        "offer_alternatives": "first second", "offer_alternative": "first",
        "ask_other_time": "", "ask_which_alternative": "first second", "anything_else": "",
        "goodbye": "business", "outbound_opening": "business", "not_understood": "question", "no_input": "question",
        "handoff": "", "handoff_after_trouble": "", "transfer_failed": "phone", "tool_failed": "", "filler_check": "",
        "filler_book": "", "filler_lookup": "", "filler_update": "",
        "hours_day_open": "weekday open close", "hours_day_closed": "weekday",
        "hours_summary": "hours", "hours_day_range": "first last", "hours_days": "days open close",
        "list_join": "items last", "address": "address", "services_offered": "services",
        "service_price": "service price", "price": "amount", "prices": "items",
        "service_detail": "service price minutes", "offer_booking": "", "ask_lookup_phone": "",
        "no_bookings_found": "", "found_booking_cancel": "service when",
        "found_booking_move": "service when", "found_bookings": "count items",
        "booking_item": "service when", "cancelled": "service when", "keep_booking": "",
        "ask_proof_name": "", "proof_full_name": "", "ask_proof_day": "", "proof_refused": "",
        "proof_refused_again": "",
        "ask_new_day_time": "", "read_back_move": "service old_when when",
        "rescheduled": "service when", "date": "weekday month day", "when": "date time",
    }.items()
}


class AgentConfigError(Exception):
    """An agent file is missing, unreadable or invalid; the message names file, field and problem."""


class UnknownTenant(AgentConfigError, LookupError):
    """No overlay exists for the tenant id; the message lists the known tenants."""

    def __init__(self, tenant_id: str, known: list[str]) -> None:
        super().__init__(f"unknown tenant {tenant_id!r}; known tenants: {', '.join(known) or '(none)'}")
        self.tenant_id = tenant_id
        self.known = known


def _template_fields(template: str) -> set[str]:
    return {field.split(".")[0].split("[")[0] for _, field, _, _ in string.Formatter().parse(template) if field}


class Phrases(BaseModel):
    """Every sentence the agent says, as templates with named fields; all are required."""

    model_config = ConfigDict(extra="forbid")
    templates: dict[str, str]

    @model_validator(mode="before")
    @classmethod
    def _wrap(cls, data: Any) -> Any:
        if isinstance(data, dict) and set(data) != {"templates"}:
            return {"templates": data}
        return data

    @model_validator(mode="after")
    def _complete_and_well_formed(self) -> "Phrases":
        missing = sorted(set(PHRASE_FIELDS) - set(self.templates))
        unknown = sorted(set(self.templates) - set(PHRASE_FIELDS))
        problems = []
        if missing:
            problems.append(f"missing phrase(s): {', '.join(missing)}")
        if unknown:
            problems.append(f"unknown phrase(s): {', '.join(unknown)}")
        for name, template in self.templates.items():
            if name not in PHRASE_FIELDS:
                continue
            try:
                used = _template_fields(template)
            except ValueError as exc:
                problems.append(f"{name}: malformed template ({exc})")
                continue
            extra = sorted(used - PHRASE_FIELDS[name])
            if extra:
                allowed = ", ".join(sorted(PHRASE_FIELDS[name])) or "none"
                problems.append(f"{name}: unknown field(s) {extra}; allowed: {allowed}")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def say(self, phrase: str, /, **fields: object) -> str:
        """The phrase named `phrase` with its fields filled in."""
        return self.templates[phrase].format(**fields)


class Vocabulary(BaseModel):
    """Extra words that bias speech recognition toward this business."""

    model_config = ConfigDict(extra="forbid")
    extra: list[str] = Field(default_factory=list)


class TurnTaking(BaseModel):
    """Timing of turns, in milliseconds of audio time."""

    model_config = ConfigDict(extra="forbid")
    silence_ms: int = Field(default=600, ge=100, le=5000)
    early_pause_ms: int = Field(default=240, ge=50, le=2000)
    no_input_ms: int = Field(default=7000, ge=1000, le=60000)
    max_misunderstandings: int = Field(default=3, ge=1, le=10)
    tool_filler_ms: int = Field(default=400, ge=0, le=10000)
    # Wall time, not audio time: a tool is a database or an outside system. Past it the caller is
    # handed to a person instead of waiting on a line that only says "one moment".
    tool_deadline_ms: int = Field(default=10000, ge=100, le=60000)

    @model_validator(mode="after")
    def _early_before_full(self) -> "TurnTaking":
        if self.early_pause_ms >= self.silence_ms:
            raise ValueError(f"early_pause_ms ({self.early_pause_ms}) must be shorter than silence_ms ({self.silence_ms})")
        if self.tool_filler_ms >= self.tool_deadline_ms:
            raise ValueError(
                f"tool_filler_ms ({self.tool_filler_ms}) must be shorter than tool_deadline_ms ({self.tool_deadline_ms})"
            )
        return self


class AgentConfig(BaseModel):
    """One tenant's agent: the base agent's phrases and timing with the tenant's business profile."""

    model_config = ConfigDict(extra="forbid")

    name: str = DEFAULT_BASE
    base: str = DEFAULT_BASE
    profile: TenantProfile
    phrases: Phrases
    vocabulary: Vocabulary = Field(default_factory=Vocabulary)
    turn_taking: TurnTaking = Field(default_factory=TurnTaking)
    voicemail_message: str

    @model_validator(mode="after")
    def _voicemail_fields(self) -> "AgentConfig":
        extra = _template_fields(self.voicemail_message) - {"business", "phone"}
        if extra:
            raise ValueError(f"voicemail_message: unknown field(s) {sorted(extra)}; allowed: business, phone")
        return self

    @property
    def stt_vocabulary(self) -> list[str]:
        """Business name, service names and synonyms and extra terms, without duplicates."""
        terms = [self.profile.name]
        for service in self.profile.services:
            terms.append(service.name)
            terms.extend(service.synonyms)
        terms.extend(self.vocabulary.extra)
        seen: set[str] = set()
        unique = []
        for term in terms:
            if term.lower() not in seen:
                seen.add(term.lower())
                unique.append(term)
        return unique

    def say(self, phrase: str, /, **fields: object) -> str:
        return self.phrases.say(phrase, **fields)

    def voicemail(self, phone: str | None = None) -> str:
        """The message left on an answering machine; `phone` is the callback number as it is spoken."""
        return self.voicemail_message.format(business=self.profile.name, phone=phone or self.profile.phone)


def list_tenants(tenants_dir: Path | None = None) -> list[str]:
    """Ids of the tenants that have an overlay file, sorted."""
    folder = tenants_dir or TENANTS_DIR
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


@dataclass(frozen=True)
class TenantCatalog:
    """Every tenant overlay in a folder, loaded once: the good ones by id and by E.164 number, and
    each bad one with its problem (file, field, what is wrong), so one broken file affects only itself."""

    folder: Path
    agents: dict[str, AgentConfig] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)
    by_number: dict[str, str] = field(default_factory=dict)  # E.164 number -> tenant id

    @property
    def tenant_ids(self) -> list[str]:
        """Ids of every overlay file that was read, good or bad, sorted."""
        return sorted({*self.agents, *self.problems})

    def tenant_for_number(self, dialled: str) -> str | None:
        """The tenant whose number is exactly `dialled` (both sides normalised to E.164), else None."""
        number = e164(dialled)
        return self.by_number.get(number) if number else None


def load_tenants(tenants_dir: Path | None = None, *, report: bool = True) -> TenantCatalog:
    """Loads every tenant in the folder; a bad one is kept out and (`report`) logged at ERROR with its
    file, field and problem.

    A tenant whose number another tenant (earlier in sort order) already has is a problem too: the
    dialled number must name one business.
    """
    folder = tenants_dir or TENANTS_DIR
    catalog = TenantCatalog(folder)
    for tenant_id in list_tenants(folder):
        try:
            agent = load_agent(tenant_id, folder)
        except AgentConfigError as exc:
            catalog.problems[tenant_id] = str(exc)
            continue
        number = e164(agent.profile.phone)
        if number is not None and number in catalog.by_number:
            catalog.problems[tenant_id] = (f"{folder / f'{tenant_id}.yaml'}: profile.phone: {number} is already "
                                           f"tenant {catalog.by_number[number]!r}'s number; give each tenant its own")
            continue
        catalog.agents[tenant_id] = agent
        if number is not None:
            catalog.by_number[number] = tenant_id
        elif report:  # it still takes calls by tenant id (browser, dial); doctor names the bad number
            log.warning("tenant.number_unroutable", tenant=tenant_id, file=str(folder / f"{tenant_id}.yaml"),
                        detail="profile.phone is not an E.164 number, so no call by number reaches this tenant")
    for tenant_id, problem in catalog.problems.items() if report else ():
        log.error("tenant.invalid", tenant=tenant_id, problem=problem,
                  detail="calls to this tenant are refused until the file is fixed; other tenants are unaffected")
    return catalog


def load_agent(tenant_id: str, tenants_dir: Path | None = None) -> AgentConfig:
    """The tenant's agent: its overlay deep-merged onto its base agent, validated."""
    folder = tenants_dir or TENANTS_DIR
    overlay_path = folder / f"{tenant_id}.yaml"
    # Only the folder's own files: an id from a request ("../x") never names a path elsewhere.
    if tenant_id not in list_tenants(folder) or not overlay_path.is_file():
        raise UnknownTenant(tenant_id, list_tenants(folder))
    overlay = _read_yaml(overlay_path)
    base_name = overlay.get("base", DEFAULT_BASE)
    base_path = _find_base(str(base_name), folder, overlay_path)
    base = _read_yaml(base_path)
    merged = deep_merge(base, overlay)
    try:
        config = AgentConfig.model_validate(merged)
    except ValidationError as exc:
        raise AgentConfigError(_describe(exc, overlay, overlay_path, base_path)) from None
    if config.profile.id != tenant_id:
        raise AgentConfigError(
            f"{overlay_path}: profile.id: {config.profile.id!r} does not match the file name {tenant_id!r}"
        )
    return config


def deep_merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """`overlay` on top of `base`: mappings merge key by key, anything else is replaced."""
    merged = dict(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _find_base(base_name: str, tenants_dir: Path, overlay_path: Path) -> Path:
    for folder in (tenants_dir.parent, AGENTS_DIR):
        candidate = folder / f"{base_name}.yaml"
        if candidate.is_file():
            return candidate
    raise AgentConfigError(f"{overlay_path}: base: no base agent named {base_name!r}")


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise AgentConfigError(f"{path}: {where}YAML syntax error: {exc.problem or exc}") from None
    except (OSError, yaml.YAMLError) as exc:
        raise AgentConfigError(f"{path}: cannot read: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise AgentConfigError(f"{path}: the top level must be a mapping, not {type(data).__name__}")
    return data


def _describe(exc: ValidationError, overlay: dict[str, Any], overlay_path: Path, base_path: Path) -> str:
    lines = []
    for error in exc.errors():
        loc = [str(part) for part in error["loc"] if part != "templates"]
        field = ".".join(loc) or "(top level)"
        source = overlay_path if _defined_in(overlay, loc) else base_path
        message = str(error["msg"]).removeprefix("Value error, ")
        lines.append(f"{source}: {field}: {message}")
    return "\n".join(lines)


def _defined_in(data: dict[str, Any], loc: list[str]) -> bool:
    """Whether the overlay holds the value at `loc` (or its closest existing parent is the overlay's)."""
    node: Any = data
    for depth, key in enumerate(loc):
        if isinstance(node, dict) and key in node:
            node = node[key]
        elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
            node = node[int(key)]
        else:
            return depth > 0
    return True
