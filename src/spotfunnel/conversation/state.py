"""What one call knows so far: the open question (objective), the booking being built, the task."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time
from enum import Enum
from typing import Literal
from zoneinfo import ZoneInfo

from spotfunnel.conversation.extract.dates import OpeningLookup, local_instant, plausible_time, settle_meridiem
from spotfunnel.conversation.policy import Outcome
from spotfunnel.conversation.update import DialogueUpdate
from spotfunnel.store.ledger import BookingRecord

Task = Literal["book", "reschedule", "cancel"]


class Ask(str, Enum):
    """The question the agent asked last: what the caller's next turn should answer."""

    HELP = "help"
    SERVICE = "service"
    WHEN = "when"
    PICK_SLOT = "pick-slot"
    NAME = "name"
    LAST_NAME = "last-name"
    CALLER_ID = "caller-id"
    PHONE = "phone"
    READ_BACK = "read-back"
    CORRECTION = "correction"
    ANYTHING_ELSE = "anything-else"
    OFFER_BOOKING = "offer-booking"
    LOOKUP_PHONE = "lookup-phone"
    WHICH_BOOKING = "which-booking"
    CONFIRM_CANCEL = "confirm-cancel"
    CONFIRM_MOVE = "confirm-move"
    PROOF_NAME = "proof-name"  # a booking under another number: the name on it
    PROOF_DAY = "proof-day"  # ... and its day
    OFFER_HANDOFF = "offer-handoff"  # the proof did not match: a person can help
    ENDED = "ended"


OPEN_ASKS = frozenset({Ask.HELP, Ask.ANYTHING_ELSE, Ask.OFFER_BOOKING})
YES_NO_ASKS = frozenset(
    {
        Ask.CALLER_ID, Ask.READ_BACK, Ask.ANYTHING_ELSE, Ask.OFFER_BOOKING, Ask.CONFIRM_CANCEL, Ask.CONFIRM_MOVE,
        Ask.OFFER_HANDOFF,
    }
)
MANAGE_ASKS = frozenset(
    {
        Ask.LOOKUP_PHONE, Ask.WHICH_BOOKING, Ask.CONFIRM_CANCEL, Ask.CONFIRM_MOVE, Ask.PROOF_NAME, Ask.PROOF_DAY,
        Ask.OFFER_HANDOFF,
    }
)


@dataclass
class Draft:
    """The appointment being booked or the new slot of one being moved."""

    service_id: str | None = None
    day: date | None = None
    time: time | None = None
    meridiem_given: bool = False
    slot_ok: bool = False
    alternatives: list[datetime] = field(default_factory=list)
    first_name: str | None = None
    name: str | None = None
    phone: str | None = None

    def start(self, tz: ZoneInfo) -> datetime | None:
        if self.day is None or self.time is None:
            return None
        return local_instant(self.day, self.time, tz)

    def merge(self, update: DialogueUpdate, opening: OpeningLookup, any_name: bool = False) -> set[str]:
        """Keep what the turn said: service, day, time and a name (introduced, or any name when
        `any_name`); returns the slots that changed. The am/pm is settled against the day's hours."""
        changed: set[str] = set()
        if update.service_id is not None and update.service_id != self.service_id:
            self.service_id, self.slot_ok = update.service_id, False
            changed.add("service")
        if update.day is not None and update.day != self.day:
            self.day, self.slot_ok = update.day, False
            changed.add("day")
            if self.time is not None and not self.meridiem_given:
                self.time = settle_meridiem(self.time, self.day, opening)
        if update.at is not None and update.at != self.time:
            self.time, self.meridiem_given, self.slot_ok = update.at, update.meridiem_given, False
            changed.add("time")
        if self.time is not None and self.meridiem_given:
            self.time = plausible_time(self.time, self.day, opening)
        if update.name is not None and (update.name_explicit or any_name) and update.name != self.name:
            if len(update.name.split()) >= 2 or update.spelling:
                self.name, self.first_name = update.name, None
            elif self.name is None:
                self.first_name = update.name
            changed.add("name")
        if update.phone is not None and update.phone != self.phone:
            self.phone = update.phone
            changed.add("phone")
        if changed & {"service", "day", "time"}:
            self.alternatives = []
        return changed

    def take_slot(self, start: datetime, tz: ZoneInfo) -> None:
        """Adopt a start the ledger offered as free."""
        local = start.astimezone(tz)
        self.day, self.time = local.date(), local.time().replace(tzinfo=None)
        self.meridiem_given, self.slot_ok, self.alternatives = True, True, []


@dataclass
class CallState:
    """The conversation's memory for one call."""

    ask: Ask = Ask.HELP
    question: str = ""
    task: Task | None = None
    draft: Draft = field(default_factory=Draft)
    misunderstandings: int = 0
    trailing_off: int = 0  # turns in a row that stopped mid-sentence
    outcome: Outcome | None = None
    booking: BookingRecord | None = None
    candidates: list[BookingRecord] = field(default_factory=list)
    target: BookingRecord | None = None
    hint_day: date | None = None
    booked_day_said: date | None = None  # the day the caller said their booking is on ("cancel Saturday's")
    lookup_phone: str | None = None
    proof_name: str | None = None  # the proof a caller on another number gave for `lookup_phone`'s booking
    proof_day: date | None = None
    proof_failed: bool = False  # one attempt per call: wrong proof is never retried on the same call
    question_unheard: bool = False  # the caller talked over the open question before hearing it

    def settle(self, outcome: Outcome) -> None:
        """Record a task's outcome; "answered" and "transferred" never override a finished task."""
        weak = ("answered", "transferred")
        if outcome not in weak or self.outcome is None or self.outcome in weak:
            self.outcome = outcome

    def new_task(self, task: Task) -> None:
        previous = self.draft
        if task == "book" and self.task is None:
            # What the caller said before asking to book ("are you open Saturday at ten?") is kept.
            self.draft = Draft(service_id=previous.service_id, day=previous.day, time=previous.time,
                               meridiem_given=previous.meridiem_given, name=previous.name, phone=previous.phone,
                               first_name=previous.first_name)
        else:
            self.draft = Draft(name=previous.name, phone=previous.phone) if task == "book" else Draft()
        self.task = task
        self.candidates, self.target, self.hint_day, self.lookup_phone = [], None, None, None
        self.booked_day_said, self.proof_name, self.proof_day = None, None, None
