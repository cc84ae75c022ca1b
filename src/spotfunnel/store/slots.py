"""Slot rules of one tenant: opening hours, the start-time grid, capacity, and the nearest free starts."""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Literal

from spotfunnel.business import TenantProfile

Reason = Literal["closed", "taken", "past", "ends-after-closing", "off-grid"]
SEARCH_HORIZON_DAYS = 14


@dataclass(frozen=True)
class Busy:
    """An interval an existing booking occupies (aware datetimes)."""

    start: datetime
    end: datetime


def require_aware(at: datetime, what: str = "start") -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, got naive {at.isoformat()}")
    return at


class SlotRules:
    """The booking rules of a TenantProfile, computed in its local time zone; pure, no database."""

    def __init__(self, profile: TenantProfile) -> None:
        self.profile = profile
        self.tz = profile.tz
        self.slot = timedelta(minutes=profile.slot_minutes)

    def duration(self, service_id: str) -> timedelta:
        return timedelta(minutes=self.profile.service(service_id).minutes)

    def day_bounds(self, day: date) -> tuple[datetime, datetime] | None:
        """Opening and closing instants on a local date, or None when closed that day."""
        hours = self.profile.hours_on(day.weekday())
        if hours is None:
            return None
        return (
            datetime.combine(day, hours.open, tzinfo=self.tz),
            datetime.combine(day, hours.close, tzinfo=self.tz),
        )

    def violation(self, service_id: str, start: datetime, now: datetime) -> Reason | None:
        """Why `start` can never work for the service (regardless of other bookings), or None."""
        require_aware(start)
        duration = self.duration(service_id)
        if start < now:
            return "past"
        local = start.astimezone(self.tz)
        bounds = self.day_bounds(local.date())
        if bounds is None or not bounds[0] <= start < bounds[1]:
            return "closed"
        open_local = bounds[0]
        offset = local.replace(tzinfo=None) - open_local.replace(tzinfo=None)  # wall-clock distance
        if offset % self.slot != timedelta(0):
            return "off-grid"
        if start + duration > bounds[1]:
            return "ends-after-closing"
        return None

    def is_taken(self, start: datetime, end: datetime, busy: Iterable[Busy]) -> bool:
        """True when adding [start, end) would put more than `capacity` bookings at one instant."""
        overlapping = [b for b in busy if b.start < end and b.end > start]
        capacity = self.profile.capacity
        if len(overlapping) < capacity:
            return False
        # The most simultaneous bookings within [start, end) occur at `start` or at one of their starts.
        points = [start] + [b.start for b in overlapping if b.start > start]
        return any(sum(1 for b in overlapping if b.start <= p < b.end) >= capacity for p in points)

    def day_starts(self, day: date, service_id: str) -> list[datetime]:
        """Every grid start on a local date at which the service fits before closing."""
        bounds = self.day_bounds(day)
        if bounds is None:
            return []
        opening, closing = bounds
        duration = self.duration(service_id)
        wall = opening.replace(tzinfo=None)
        starts: list[datetime] = []
        while True:
            start = wall.replace(tzinfo=self.tz)
            if start + duration > closing:
                return starts
            starts.append(start)
            wall += self.slot

    def free_starts(self, day: date, service_id: str, now: datetime, busy: Sequence[Busy]) -> list[datetime]:
        """Free, future grid starts for the service on a local date."""
        bounds = self.day_bounds(day)
        if bounds is None:
            return []
        day_busy = [b for b in busy if b.start < bounds[1] and b.end > bounds[0]]
        duration = self.duration(service_id)
        return [
            s
            for s in self.day_starts(day, service_id)
            if s >= now and not self.is_taken(s, s + duration, day_busy)
        ]

    def alternatives(
        self,
        service_id: str,
        requested: datetime,
        now: datetime,
        busy: Sequence[Busy],
        count: int = 2,
        horizon_days: int = SEARCH_HORIZON_DAYS,
        *,
        each_side: bool = False,
    ) -> list[datetime]:
        """The `count` free starts nearest to `requested` (absolute distance), chronologically.

        `each_side=True` (count 2) offers the nearest free start before and the nearest after instead,
        falling back to the nearest overall when one side has none."""
        center = requested.astimezone(self.tz).date()
        today = now.astimezone(self.tz).date()
        found: list[datetime] = []
        for k in range(horizon_days + 1):
            days = [center] if k == 0 else [center - timedelta(days=k), center + timedelta(days=k)]
            for day in days:
                if day >= today:
                    found.extend(self.free_starts(day, service_id, now, busy))
            found.sort(key=lambda s: (abs(s - requested), s))
            # Starts on days farther than k are at least k days minus a DST hour away.
            bound = timedelta(days=k, hours=-1)
            if each_side and _sides_settled(found, requested, bound):
                break
            if not each_side and len(found) >= count and abs(found[count - 1] - requested) <= bound:
                break
        chosen = _one_each_side(found, requested) if each_side else found[:count]
        return sorted(s.astimezone(self.tz) for s in chosen)

    def window(self, requested: datetime, now: datetime, horizon_days: int = SEARCH_HORIZON_DAYS) -> tuple[datetime, datetime]:
        """The span of existing bookings that `check` and `alternatives` may need to see."""
        margin = timedelta(days=horizon_days + 2)
        return max(now, requested - margin) - timedelta(days=1), requested + margin


def _sides_settled(found: Sequence[datetime], requested: datetime, bound: timedelta) -> bool:
    before = [s for s in found if s < requested]
    after = [s for s in found if s > requested]
    return bool(before and after) and max(requested - before[0], after[0] - requested) <= bound


def _one_each_side(by_distance: Sequence[datetime], requested: datetime) -> list[datetime]:
    """Nearest before and nearest after `requested`; the nearest others fill a missing side."""
    before = next((s for s in by_distance if s < requested), None)
    after = next((s for s in by_distance if s > requested), None)
    chosen = [s for s in (before, after) if s is not None]
    for s in by_distance:
        if len(chosen) >= 2:
            break
        if s not in chosen:
            chosen.append(s)
    return chosen
