"""Renders times, dates, prices and lists as natural words for speech ("Thursday, December 10 at 11 AM")."""
from __future__ import annotations

import datetime as dt
from datetime import date, datetime, time
from zoneinfo import ZoneInfo

from spotfunnel.business import WEEKDAYS, OpeningHours, Service
from spotfunnel.conversation.agent import AgentConfig

MONTHS = (
    "January", "February", "March", "April", "May", "June", "July",
    "August", "September", "October", "November", "December",
)


def speak_time(at: time) -> str:
    """11:00 -> "11 AM", 14:30 -> "2:30 PM", 12:00 -> "12 PM"."""
    hour = at.hour % 12 or 12
    suffix = "AM" if at.hour < 12 else "PM"
    return f"{hour} {suffix}" if at.minute == 0 else f"{hour}:{at.minute:02d} {suffix}"


def weekday_name(day: date) -> str:
    return WEEKDAYS[day.weekday()].capitalize()


class Speaker:
    """Fills the agent's templates for dates, times, services, prices and lists."""

    def __init__(self, agent: AgentConfig) -> None:
        self.agent = agent
        self.tz: ZoneInfo = agent.profile.tz

    def date(self, day: dt.date) -> str:
        return self.agent.say("date", weekday=weekday_name(day), month=MONTHS[day.month - 1], day=day.day)

    def when(self, start: datetime) -> str:
        local = start.astimezone(self.tz)
        return self.agent.say("when", date=self.date(local.date()), time=speak_time(local.time()))

    def slot(self, start: datetime, same_day_as: dt.date | None) -> str:
        """A free start: just the time when it is on `same_day_as`, else day, date and time."""
        local = start.astimezone(self.tz)
        if same_day_as is not None and local.date() == same_day_as:
            return speak_time(local.time())
        return self.when(local)

    def join(self, items: list[str]) -> str:
        if len(items) <= 1:
            return "".join(items)
        return self.agent.say("list_join", items=", ".join(items[:-1]), last=items[-1])

    def price(self, service: Service) -> str:
        return self.agent.say("price", amount=service.price)

    def hours_summary(self) -> str:
        """Opening hours grouped by runs of days with the same hours."""
        runs: list[tuple[list[str], OpeningHours | None]] = []
        for name in WEEKDAYS:
            hours = self.agent.profile.hours.get(name)
            if runs and hours is not None and runs[-1][1] == hours:
                runs[-1][0].append(name)
            else:
                runs.append(([name], hours))
        parts = []
        for days, hours in runs:
            if hours is None:
                continue
            label = days[0].capitalize()
            if len(days) > 1:
                label = self.agent.say("hours_day_range", first=days[0].capitalize(), last=days[-1].capitalize())
            parts.append(
                self.agent.say("hours_days", days=label, open=speak_time(hours.open), close=speak_time(hours.close))
            )
        return self.agent.say("hours_summary", hours=self.join(parts))
