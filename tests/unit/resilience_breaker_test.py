"""Circuit breaker states with a fake clock; retry with backoff; deadlines."""
from __future__ import annotations

import asyncio
import random

import pytest

from spotfunnel.resilience import (
    BreakerState,
    CircuitBreaker,
    CircuitOpen,
    DeadlineExceeded,
    backoff_delay,
    retry_async,
    with_deadline,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Flaky:
    """Fails `failures` times, then succeeds; counts calls."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    async def __call__(self, value: str = "ok") -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError(f"boom {self.calls}")
        return value


async def test_breaker_opens_after_three_consecutive_failures() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("stt", clock=clock)
    fn = Flaky(10)
    for _ in range(3):
        with pytest.raises(ConnectionError):
            await breaker.call(fn)
    assert breaker.state is BreakerState.OPEN
    with pytest.raises(CircuitOpen, match="circuit 'stt' is open.*next probe in 30.0 s"):
        await breaker.call(fn)
    assert fn.calls == 3  # the open breaker did not call


async def test_success_resets_the_consecutive_count() -> None:
    breaker = CircuitBreaker("tts", clock=FakeClock())
    fn = Flaky(2)
    for _ in range(2):
        with pytest.raises(ConnectionError):
            await breaker.call(fn)
    assert await breaker.call(fn, "fine") == "fine"
    assert breaker.consecutive_failures == 0 and breaker.state is BreakerState.CLOSED


async def test_half_open_after_timeout_one_probe_success_closes() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("llm", failure_threshold=3, reset_timeout_s=30, clock=clock)
    for _ in range(3):
        breaker.record_failure()
    clock.now += 29.9
    assert breaker.state is BreakerState.OPEN
    clock.now += 0.2
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.allow()  # the probe
    assert not breaker.allow()  # only one probe at a time
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED and breaker.allow()


async def test_half_open_probe_failure_reopens_for_another_timeout() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("sms", clock=clock)
    fn = Flaky(10)
    for _ in range(3):
        with pytest.raises(ConnectionError):
            await breaker.call(fn)
    clock.now += 30
    with pytest.raises(ConnectionError):
        await breaker.call(fn)  # the probe fails
    assert breaker.state is BreakerState.OPEN
    clock.now += 15
    with pytest.raises(CircuitOpen):
        await breaker.call(fn)
    clock.now += 15
    assert await breaker.call(Flaky(0)) == "ok"
    assert breaker.state is BreakerState.CLOSED


async def test_cancelled_probe_frees_the_slot() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("cal", failure_threshold=1, clock=clock)
    breaker.record_failure()
    clock.now += 30
    task = asyncio.create_task(breaker.call(asyncio.sleep, 10))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert breaker.state is BreakerState.HALF_OPEN and breaker.allow()


def test_invalid_configuration() -> None:
    with pytest.raises(ValueError):
        CircuitBreaker("x", failure_threshold=0)


def test_backoff_delay_full_jitter_within_capped_exponential() -> None:
    rng = random.Random(7)
    for attempt in range(1, 12):
        ceiling = min(2.0, 0.1 * 2 ** (attempt - 1))
        for _ in range(50):
            assert 0 <= backoff_delay(attempt, 0.1, 2.0, rng) <= ceiling
    assert backoff_delay(3, 0.1, 2.0, rng, jitter="none") == pytest.approx(0.4)
    assert 0.2 <= backoff_delay(3, 0.1, 2.0, rng, jitter="equal") <= 0.4
    assert backoff_delay(1000, 0.1, 2.0, rng, jitter="none") == 2.0
    with pytest.raises(ValueError):
        backoff_delay(0, 0.1, 2.0)


async def test_retry_async_retries_then_succeeds_with_injected_sleep() -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    fn = Flaky(2)
    assert await retry_async(fn, attempts=3, base_delay_s=0.1, max_delay_s=1, jitter="none", sleep=sleep) == "ok"
    assert fn.calls == 3 and slept == [pytest.approx(0.1), pytest.approx(0.2)]


async def test_retry_async_gives_up_with_last_error_and_skips_non_retryable() -> None:
    async def sleep(seconds: float) -> None:
        pass

    fn = Flaky(10)
    with pytest.raises(ConnectionError, match="boom 4") as err:
        await retry_async(fn, attempts=4, sleep=sleep)
    assert "gave up after 4 attempt(s)" in (err.value.__notes__ or [])
    fn2 = Flaky(10)
    with pytest.raises(ConnectionError):
        await retry_async(fn2, attempts=4, retry_on=(TimeoutError,), sleep=sleep)
    assert fn2.calls == 1


async def test_with_deadline() -> None:
    assert await with_deadline(asyncio.sleep(0, "done"), 1) == "done"
    with pytest.raises(DeadlineExceeded, match="calendar lookup did not finish within its 0.05 s deadline"):
        await with_deadline(asyncio.sleep(5), 0.05, what="calendar lookup")

    async def own_timeout() -> None:
        raise TimeoutError("inner")

    with pytest.raises(TimeoutError, match="inner") as err:
        await with_deadline(own_timeout(), 1)
    assert not isinstance(err.value, DeadlineExceeded)
