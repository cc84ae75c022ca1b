"""Answers to questions about hours, address, services and prices, from the tenant's profile only."""
from __future__ import annotations

from spotfunnel.conversation.context import CallContext
from spotfunnel.conversation.extract.intents import Intent
from spotfunnel.conversation.extract.services import match_service
from spotfunnel.conversation.speech import speak_time, weekday_name

_ORDER = (Intent.HOURS, Intent.ADDRESS, Intent.SERVICES, Intent.PRICES)


def answer_questions(ctx: CallContext, questions: set[Intent], text: str) -> str:
    """The answers to every question in the turn, in a fixed order, as one text."""
    parts = []
    for intent in _ORDER:
        if intent not in questions:
            continue
        if intent is Intent.HOURS:
            parts.append(_hours(ctx, text))
        elif intent is Intent.ADDRESS:
            parts.append(ctx.say("address", address=ctx.agent.profile.address))
        elif intent is Intent.SERVICES:
            names = [service.name for service in ctx.services]
            parts.append(ctx.say("services_offered", services=ctx.speaker.join(names)))
        else:
            parts.append(_prices(ctx, text))
    return " ".join(parts)


def _hours(ctx: CallContext, text: str) -> str:
    day = ctx.when(text).day
    if day is None:
        return ctx.speaker.hours_summary()
    hours = ctx.opening(day)
    weekday = weekday_name(day)
    if hours is None:
        return " ".join([ctx.say("hours_day_closed", weekday=weekday), ctx.speaker.hours_summary()])
    return ctx.say("hours_day_open", weekday=weekday, open=speak_time(hours.open), close=speak_time(hours.close))


def _prices(ctx: CallContext, text: str) -> str:
    service = match_service(text, ctx.services)
    if service is not None:
        return ctx.say("service_detail", service=service.name, price=ctx.speaker.price(service), minutes=service.minutes)
    items = [ctx.say("service_price", service=s.name, price=ctx.speaker.price(s)) for s in ctx.services]
    return ctx.say("prices", items=ctx.speaker.join(items))
