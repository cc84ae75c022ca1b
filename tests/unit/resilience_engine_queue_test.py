"""A local engine's queue and the per-turn deadlines on a scripted timeline of fake engines.

The engines block on events the test releases, so each step happens when the script says, and the
production EngineQueue, Budget, FallbackChain and ResilientStt/Tts run unchanged around them."""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest

from spotfunnel.providers.resilient import ResilientStt, ResilientTts
from spotfunnel.resilience.breaker import BreakerState
from spotfunnel.resilience.deadline import DeadlineExceeded
from spotfunnel.resilience.engine_queue import EngineBusy, EngineQueue, Urgency
from spotfunnel.resilience.fallback import AllProvidersFailed

from resilience_fakes import GatedEngine, QueuedStt, until


@pytest.fixture
def engine() -> Iterator[GatedEngine]:
    gated = GatedEngine()
    yield gated
    gated.release_all()


def submit(queue: EngineQueue, engine: GatedEngine, label: str,
           urgency: Urgency = Urgency.FINAL) -> asyncio.Task[str]:
    return asyncio.create_task(queue.run(engine.work, label, urgency=urgency))


async def test_past_the_cap_a_request_is_refused_at_once_with_a_clear_error(engine: GatedEngine) -> None:
    queue = EngineQueue("fake-stt", threads=1, max_waiting=2)
    running = submit(queue, engine, "a")
    await until(lambda: engine.started == ["a"])
    waiting = [submit(queue, engine, "b"), submit(queue, engine, "c")]
    await until(lambda: queue.waiting == 2)
    with pytest.raises(EngineBusy, match=r"2 requests already waiting \(cap 2\)"):
        await queue.run(engine.work, "d")
    engine.release("a", "b", "c")
    assert await asyncio.gather(running, *waiting) == ["done:a", "done:b", "done:c"]
    assert engine.started == ["a", "b", "c"] and queue.stats.refused_full == 1


async def test_a_speculative_request_is_dropped_not_queued_while_the_engine_is_busy(engine: GatedEngine) -> None:
    queue = EngineQueue("fake-stt", threads=1, max_waiting=4)
    final = submit(queue, engine, "final")
    await until(lambda: engine.started == ["final"])
    with pytest.raises(EngineBusy, match="speculative request is dropped"):
        await queue.run(engine.work, "guess", urgency=Urgency.SPECULATIVE)
    assert queue.waiting == 0  # nothing was left behind the final
    engine.release("final")
    assert await final == "done:final"
    await until(lambda: queue.running == 0)
    engine.release("guess-2")
    assert await queue.run(engine.work, "guess-2", urgency=Urgency.SPECULATIVE) == "done:guess-2"  # idle: it runs
    assert engine.started == ["final", "guess-2"] and queue.stats.dropped_speculative == 1


async def test_a_speculation_never_waits_in_front_of_finals(engine: GatedEngine) -> None:
    queue = EngineQueue("fake-stt", threads=1, max_waiting=4)
    first = submit(queue, engine, "turn-1")
    await until(lambda: engine.started == ["turn-1"])
    second = submit(queue, engine, "turn-2")
    await until(lambda: queue.waiting == 1)
    with pytest.raises(EngineBusy):  # finals are waiting: a guess would only delay them
        await queue.run(engine.work, "guess", urgency=Urgency.SPECULATIVE)
    engine.release("turn-1", "turn-2")
    await asyncio.gather(first, second)
    assert engine.started == ["turn-1", "turn-2"]


async def test_a_request_cancelled_before_it_starts_never_runs(engine: GatedEngine) -> None:
    queue = EngineQueue("fake-stt", threads=1, max_waiting=4)
    running = submit(queue, engine, "a")
    await until(lambda: engine.started == ["a"])
    abandoned, kept = submit(queue, engine, "b"), submit(queue, engine, "c")
    await until(lambda: queue.waiting == 2)
    abandoned.cancel()
    await until(lambda: queue.waiting == 1)  # its place is freed at once
    engine.release("a", "c")
    assert await asyncio.gather(running, kept) == ["done:a", "done:c"]
    await until(lambda: queue.running == 0)
    assert engine.started == ["a", "c"] and queue.stats.cancelled_before_start == 1


async def test_a_deadline_missed_while_decoding_is_a_failure_but_one_missed_in_our_queue_is_overload(
        engine: GatedEngine) -> None:
    queue = EngineQueue("fake-stt", threads=1, max_waiting=4)
    stt = ResilientStt([QueuedStt(queue, engine)], turn_budget_s=0.05)  # decode-1 is never released in time
    breaker = stt.chain.entries[0].breaker
    with pytest.raises(AllProvidersFailed) as failed:
        await stt.transcribe(b"\0" * 3200, vocabulary=[])  # the engine itself ran past the deadline
    assert isinstance(failed.value.errors["queued-fake"], DeadlineExceeded)
    assert breaker.consecutive_failures == 1
    for _ in range(3):  # these wait behind the stuck decode: the machine is busy, the engine not broken
        with pytest.raises(AllProvidersFailed) as waited:
            await stt.transcribe(b"\0" * 3200, vocabulary=[])
        assert isinstance(waited.value.errors["queued-fake"], DeadlineExceeded)
    assert breaker.consecutive_failures == 1 and breaker.state is BreakerState.CLOSED
    assert stt.chain.stats["queued-fake"]["shed"] == 3
    assert engine.started == ["decode-1"]  # the ones that timed out waiting never ran
    assert queue.stats.cancelled_before_start == 3


async def test_an_engine_that_keeps_missing_its_deadline_opens_the_breaker(engine: GatedEngine) -> None:
    queue = EngineQueue("fake-stt", threads=3, max_waiting=4)  # every decode starts at once, and hangs
    stt = ResilientStt([QueuedStt(queue, engine)], turn_budget_s=0.05)
    breaker = stt.chain.entries[0].breaker
    for expected_failures in (1, 2, 3):
        with pytest.raises(AllProvidersFailed):
            await stt.transcribe(b"\0" * 3200, vocabulary=[])
        assert breaker.consecutive_failures == expected_failures
    assert breaker.state is BreakerState.OPEN


async def test_a_dropped_speculation_is_no_failure_of_the_engine(engine: GatedEngine) -> None:
    queue = EngineQueue("fake-stt", threads=1, max_waiting=4)
    provider = QueuedStt(queue, engine)
    stt = ResilientStt([provider])
    busy = asyncio.create_task(stt.transcribe(b"\0" * 3200, vocabulary=[]))
    await until(lambda: engine.started == ["decode-1"])
    with pytest.raises(AllProvidersFailed) as refused:
        await stt.transcribe(b"\0" * 3200, vocabulary=[], speculative=True)
    assert isinstance(refused.value.errors["queued-fake"], EngineBusy)
    engine.release("decode-1")
    assert (await busy).text == "done:decode-1"
    breaker = stt.chain.entries[0].breaker
    assert breaker.consecutive_failures == 0 and stt.chain.stats["queued-fake"]["shed"] == 1


class QueuedTts:
    """A TextToSpeech whose sentences render on an EngineQueue, as piper's do."""

    name = "queued-tts"

    def __init__(self, queue: EngineQueue, engine: GatedEngine) -> None:
        self.queue, self.engine = queue, engine

    async def synthesize(self, text: str) -> AsyncIterator[bytes]:
        yield (await self.queue.run(self.engine.work, text)).encode()


async def test_a_sentence_past_its_budget_falls_over_to_the_next_voice(engine: GatedEngine) -> None:
    busy_queue = EngineQueue("fake-tts", threads=1, max_waiting=4)
    stuck, backup = QueuedTts(busy_queue, engine), QueuedTts(EngineQueue("fake-tts-2"), engine)
    stuck.name = "stuck"
    tts = ResilientTts([stuck, backup], sentence_budget_s=0.2)
    blocker = submit(busy_queue, engine, "busy")  # the first voice's engine stays busy past the budget
    await until(lambda: engine.started == ["busy"])
    engine.release("Hello.")  # the sentence renders at once wherever it gets to run
    assert [c async for c in tts.synthesize("Hello.")] == [b"done:Hello."]
    # it waited behind other work and never started: overload on this machine, not a broken voice
    assert tts.chain.stats["stuck"]["shed"] == 1 and tts.chain.stats["stuck"]["failures"] == 0
    assert engine.started == ["busy", "Hello."] and busy_queue.stats.cancelled_before_start == 1
    engine.release("busy")
    await blocker
