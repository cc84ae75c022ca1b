"""Fallback chain: ordered providers behind breakers, one-shot and streaming."""
from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from spotfunnel.resilience import AllProvidersFailed, CircuitBreaker, CircuitOpen, FallbackChain


class Provider:
    def __init__(self, name: str, fail: bool = False, items: int = 3, fail_after: int | None = None) -> None:
        self.name = name
        self.fail = fail
        self.items = items
        self.fail_after = fail_after
        self.calls = 0

    async def speak(self) -> str:
        self.calls += 1
        if self.fail:
            raise ConnectionError(f"{self.name} down")
        return f"{self.name}:ok"

    async def stream(self) -> AsyncIterator[str]:
        self.calls += 1
        for i in range(self.items):
            if self.fail or (self.fail_after is not None and i == self.fail_after):
                raise ConnectionError(f"{self.name} broke at item {i}")
            yield f"{self.name}:{i}"


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def chain(*providers: Provider, clock: Clock | None = None) -> FallbackChain[Provider]:
    c = clock or Clock()
    return FallbackChain([(p.name, p, CircuitBreaker(p.name, clock=c)) for p in providers], name="tts")


async def test_falls_over_to_the_next_provider_and_counts() -> None:
    primary, secondary = Provider("primary", fail=True), Provider("secondary")
    fc = chain(primary, secondary)
    assert await fc.call(lambda p: p.speak()) == "secondary:ok"
    assert fc.stats["primary"] == {"calls": 1, "failures": 1, "skipped": 0, "shed": 0,
                                   "last_error": "ConnectionError: primary down"}
    assert fc.stats["secondary"] == {"calls": 1, "failures": 0, "skipped": 0, "shed": 0, "last_error": None}


async def test_open_breaker_skips_provider_until_it_half_opens() -> None:
    clock = Clock()
    primary, secondary = Provider("primary", fail=True), Provider("secondary")
    fc = chain(primary, secondary, clock=clock)
    for _ in range(5):
        assert await fc.call(lambda p: p.speak()) == "secondary:ok"
    assert primary.calls == 3 and fc.stats["primary"]["skipped"] == 2
    primary.fail = False
    clock.now += 30
    assert await fc.call(lambda p: p.speak()) == "primary:ok"  # half-open probe succeeds
    assert fc.entries[0].breaker.state.value == "closed"


async def test_all_providers_failed_carries_each_error() -> None:
    clock = Clock()
    a, b, c = Provider("a", fail=True), Provider("b", fail=True), Provider("c", fail=True)
    fc = chain(a, b, c, clock=clock)
    with pytest.raises(AllProvidersFailed) as err:
        await fc.call(lambda p: p.speak())
    assert set(err.value.errors) == {"a", "b", "c"}
    assert all(isinstance(e, ConnectionError) for e in err.value.errors.values())
    assert "all providers of 'tts' failed" in str(err.value) and "b: ConnectionError: b down" in str(err.value)
    for _ in range(2):
        with pytest.raises(AllProvidersFailed):
            await fc.call(lambda p: p.speak())
    with pytest.raises(AllProvidersFailed) as err:
        await fc.call(lambda p: p.speak())
    assert all(isinstance(e, CircuitOpen) for e in err.value.errors.values())
    assert (a.calls, b.calls, c.calls) == (3, 3, 3)


async def test_empty_chain_and_duplicate_names() -> None:
    with pytest.raises(AllProvidersFailed, match="no providers configured"):
        await FallbackChain[Provider]().call(lambda p: p.speak())
    fc = chain(Provider("a"))
    with pytest.raises(ValueError, match="already"):
        fc.add("a", Provider("a"))


async def collect(it: AsyncIterator[str]) -> list[str]:
    return [x async for x in it]


async def test_stream_falls_over_when_failure_is_before_first_item() -> None:
    primary, secondary = Provider("primary", fail_after=0), Provider("secondary")
    fc = chain(primary, secondary)
    assert await collect(fc.stream(lambda p: p.stream())) == ["secondary:0", "secondary:1", "secondary:2"]
    assert fc.stats["primary"]["failures"] == 1


async def test_stream_reraises_when_failure_is_after_first_item() -> None:
    primary, secondary = Provider("primary", fail_after=2), Provider("secondary")
    fc = chain(primary, secondary)
    got: list[str] = []
    with pytest.raises(ConnectionError, match="primary broke at item 2"):
        async for item in fc.stream(lambda p: p.stream()):
            got.append(item)
    assert got == ["primary:0", "primary:1"]
    assert secondary.calls == 0
    assert fc.stats["primary"]["failures"] == 1


async def test_stream_all_failed_and_empty_stream() -> None:
    fc = chain(Provider("a", fail=True), Provider("b", fail=True))
    with pytest.raises(AllProvidersFailed) as err:
        await collect(fc.stream(lambda p: p.stream()))
    assert set(err.value.errors) == {"a", "b"}
    empty = chain(Provider("a", items=0), Provider("b"))
    assert await collect(empty.stream(lambda p: p.stream())) == []


async def test_abandoned_stream_closes_provider_stream() -> None:
    closed: list[bool] = []

    async def endless(p: Provider) -> AsyncIterator[str]:
        try:
            while True:
                yield p.name
        finally:
            closed.append(True)

    fc = chain(Provider("a"))
    stream = fc.stream(endless)
    assert await stream.__anext__() == "a"
    await stream.aclose()
    assert closed == [True]
