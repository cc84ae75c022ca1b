"""One call's lifecycle: wires a transport, a voice session, the agent's policy and the outbox."""
from __future__ import annotations

import asyncio
import uuid
from typing import Any, Callable

import structlog

from spotfunnel.calls.bounds import CONTROL_DEADLINE_S, START_DEADLINE_S, VAD_LOAD_DEADLINE_S, within
from spotfunnel.calls.conversation import Conversation
from spotfunnel.calls.identity import call_direction, caller_number, new_call_id, provider_call_id
from spotfunnel.calls.journal import CallJournal
from spotfunnel.calls.latency import TurnLatency, split_latency
from spotfunnel.calls.record import FAILED, CallRecord, CallSetup, CallSetupError, stt_prompt_terms
from spotfunnel.calls.services import CallServices
from spotfunnel.transports.base import CallStarted, Hangup, Transport
from spotfunnel.voice.events import CallEvent, EventLog

__all__ = ["CallRecord", "CallSetup", "CallSetupError", "Conversation", "TurnLatency", "run_call",
           "split_latency", "stt_prompt_terms"]

log = structlog.get_logger(__name__)


async def _await_start(transport: Transport, events: EventLog, deadline_s: float = START_DEADLINE_S,
                       ) -> CallStarted | None:
    """The call's start, or None when the line hangs up or stays silent about it past `deadline_s`."""
    try:
        async with asyncio.timeout(deadline_s):
            while True:
                item = await transport.receive()
                if isinstance(item, CallStarted):
                    return item
                if isinstance(item, Hangup):
                    return None
                events.emit("pre_start_item", item=type(item).__name__)
    except TimeoutError:
        log.warning("call.no_start", waited_s=deadline_s)
        await within("hangup", transport.hangup(), CONTROL_DEADLINE_S, None)
        return None


async def run_call(
    transport: Transport,
    services: CallServices,
    resolve: Callable[[CallStarted], CallSetup],
    record_for: Callable[[CallStarted], CallRecord | None] = lambda _s: None,
) -> CallRecord:
    """Run one call to its end and enqueue its report. Never raises for caller-side trouble."""
    started = await _await_start(transport, EventLog())
    if started is None:
        return CallRecord(call_id="", error="hung up before the call started")
    record = record_for(started) or CallRecord(call_id="")
    try:
        await _run_started(transport, services, resolve, record, started)
    finally:
        record.finished.set()
    return record


async def _run_started(transport: Transport, services: CallServices, resolve: Callable[[CallStarted], CallSetup],
                       record: CallRecord, started: CallStarted) -> None:
    record.call_id = record.call_id or new_call_id()
    record.provider_call_id = provider_call_id(started.call_id)
    record.caller_id = caller_number(started.caller_id)
    record.direction = call_direction(started.params.get("direction"))
    try:
        setup = resolve(started)
    except CallSetupError as exc:
        log.warning("call.rejected", call_id=record.call_id, provider_call_id=record.provider_call_id, reason=str(exc))
        record.error = str(exc)
        await within("hangup", transport.hangup(), CONTROL_DEADLINE_S, None)
        return
    record.tenant_id = setup.agent.profile.id
    record.started_at = setup.clock.now()
    trace_id = uuid.uuid4().hex
    journal = CallJournal(setup.db, record.opened(trace_id))
    bound = log.bind(call_id=record.call_id, provider_call_id=record.provider_call_id, tenant=record.tenant_id)
    record.events.subscribe(lambda ev: _log_event(bound, ev))
    vad = await within("vad", asyncio.to_thread(services.vad_factory), VAD_LOAD_DEADLINE_S, None)
    if vad is None:  # cannot listen: end cleanly, with a report saying so
        record.error, record.outcome = "the voice activity model did not load", FAILED
        await within("hangup", transport.hangup(), CONTROL_DEADLINE_S, None)
        await journal.finish(record.report(trace_id))
    else:
        conversation = Conversation(transport, services, setup, record, vad, outbound=record.direction == "outbound",
                                    trace_id=trace_id, journal=journal)
        await conversation.run()
    bound.info("call.ended", outcome=record.outcome, duration_s=record.duration_s, direction=record.direction,
               turn_latency_ms=[round(x.total) for x in record.latencies], error=record.error,
               events_dropped=record.events.dropped_total)


def _log_event(bound: Any, ev: CallEvent) -> None:
    """The live transcript, at DEBUG: what the caller said and the agent said is call content, not operations."""
    if ev.kind == "caller_turn" and ev.data.get("text"):
        bound.debug("call.caller", text=ev.data["text"], early=ev.data.get("early", False))
    elif ev.kind == "agent_speech_queued":
        bound.debug("call.agent", text=ev.data.get("text"))
    elif ev.kind == "agent_interrupted":
        bound.debug("call.agent_interrupted", heard=ev.data.get("heard"))
