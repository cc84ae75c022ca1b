"""The typed result of understanding one caller turn: the slots and intents it carries."""
from __future__ import annotations

from datetime import date
from datetime import time as TimeOfDay

from pydantic import BaseModel, ConfigDict

from spotfunnel.conversation.extract.intents import Intent


class DialogueUpdate(BaseModel):
    """What one caller turn says, as slots and intents (the policy decides what to do with it)."""

    model_config = ConfigDict(frozen=True)

    intents: frozenset[Intent] = frozenset()
    service_id: str | None = None
    day: date | None = None
    at: TimeOfDay | None = None
    meridiem_given: bool = False
    name: str | None = None
    name_explicit: bool = False  # introduced ("my name is ...") or the answer to a name question
    spelling: str | None = None  # the letters the caller spelled, when they did ("R E I D")
    phone: str | None = None
    polar: bool | None = None
    offered_index: int | None = None  # "the earlier one" -> 0, "the later one" -> 1
    correction: bool = False

    @property
    def has_slot(self) -> bool:
        return any(v is not None for v in (self.service_id, self.day, self.at, self.name, self.phone))
