"""Fallback chain: try providers in order (primary, secondary, ...), each behind its own circuit breaker."""
from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Generic, TypedDict, TypeVar

from spotfunnel.resilience.breaker import CircuitBreaker, CircuitOpen
from spotfunnel.resilience.deadline import Budget, DeadlineExceeded
from spotfunnel.resilience.engine_queue import EngineBusy, gave_up_while_queued

__all__ = ["AllProvidersFailed", "FallbackChain", "ProviderEntry", "ProviderStats"]

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


class ProviderStats(TypedDict):
    """Counters per provider (a metrics exporter reads these)."""

    calls: int  # calls actually made to the provider
    failures: int
    skipped: int  # times its breaker was open and it was passed over
    shed: int  # times it refused a request as overloaded (EngineBusy): passed over, not a failure
    last_error: str | None


class AllProvidersFailed(RuntimeError):
    """Every provider of a chain failed or was skipped; `errors` maps provider name -> its error."""

    def __init__(self, chain: str, errors: dict[str, BaseException]) -> None:
        self.chain = chain
        self.errors = errors
        detail = "; ".join(f"{name}: {type(err).__name__}: {err}" for name, err in errors.items())
        super().__init__(f"all providers of '{chain}' failed ({detail or 'no providers configured'})")


@dataclass(frozen=True)
class ProviderEntry(Generic[T]):
    name: str
    provider: T
    breaker: CircuitBreaker


class FallbackChain(Generic[T]):
    """Ordered providers of one capability (STT, TTS, LLM, calendar...), first healthy one wins."""

    def __init__(self, entries: Iterable[tuple[str, T, CircuitBreaker | None]] = (),
                 name: str = "fallback") -> None:
        self.name = name
        self.entries: list[ProviderEntry[T]] = []
        self.stats: dict[str, ProviderStats] = {}
        for entry_name, provider, breaker in entries:
            self.add(entry_name, provider, breaker)

    def add(self, name: str, provider: T, breaker: CircuitBreaker | None = None) -> None:
        """Append a provider (lowest priority so far); a default breaker is made when none is given."""
        if name in self.stats:
            raise ValueError(f"provider '{name}' is already in fallback chain '{self.name}'")
        self.entries.append(ProviderEntry(name, provider, breaker or CircuitBreaker(f"{self.name}:{name}")))
        self.stats[name] = ProviderStats(calls=0, failures=0, skipped=0, shed=0, last_error=None)

    def _admit(self, entry: ProviderEntry[T], errors: dict[str, BaseException]) -> bool:
        if entry.breaker.allow():
            self.stats[entry.name]["calls"] += 1
            return True
        self.stats[entry.name]["skipped"] += 1
        errors[entry.name] = CircuitOpen(entry.breaker.name, entry.breaker.retry_in_s())
        return False

    def _failed(self, entry: ProviderEntry[T], exc: Exception, errors: dict[str, BaseException]) -> None:
        entry.breaker.record_failure()
        stats = self.stats[entry.name]
        stats["failures"] += 1
        stats["last_error"] = f"{type(exc).__name__}: {exc}"
        errors[entry.name] = exc
        log.warning("provider %s of %s failed: %r", entry.name, self.name, exc)

    def _failed_or_shed(self, entry: ProviderEntry[T], exc: Exception, errors: dict[str, BaseException]) -> None:
        """A deadline missed while the request still waited in our own engine queue is overload
        (the machine is busy), not a broken engine: opening the breaker would hand off every call."""
        if isinstance(exc, DeadlineExceeded) and gave_up_while_queued(reset=True):
            self._shed(entry, exc, errors)
        else:
            self._failed(entry, exc, errors)

    def _shed(self, entry: ProviderEntry[T], exc: Exception, errors: dict[str, BaseException]) -> None:
        entry.breaker.release()  # refused before it ran: says nothing about the provider's health
        self.stats[entry.name]["shed"] += 1
        errors[entry.name] = exc

    def _out_of_time(self, budget: Budget | None, errors: dict[str, BaseException]) -> bool:
        if budget is None or not budget.spent:
            return False
        errors.setdefault("budget", DeadlineExceeded(budget.seconds, budget.what))
        return True

    async def call(self, op: Callable[[T], Awaitable[R]], budget: Budget | None = None) -> R:
        """`await op(provider)` with each admitted provider in turn until one succeeds.

        With a `budget`, each attempt gets what is left of it; an attempt that runs out counts as
        that provider's failure (its breaker sees it), and no provider is tried once it is spent."""
        errors: dict[str, BaseException] = {}
        for index, entry in enumerate(self.entries):
            if self._out_of_time(budget, errors) or not self._admit(entry, errors):
                continue
            gave_up_while_queued(reset=True)
            try:
                attempt = op(entry.provider)
                share = len(self.entries) - index  # keep time for the providers after this one
                result = await (budget.run(attempt, f"{self.name}:{entry.name}", share) if budget else attempt)
            except asyncio.CancelledError:
                entry.breaker.release()
                raise
            except EngineBusy as exc:
                self._shed(entry, exc, errors)
                continue
            except Exception as exc:
                self._failed_or_shed(entry, exc, errors)
                continue
            entry.breaker.record_success()
            return result
        raise AllProvidersFailed(self.name, errors)

    async def stream(self, op: Callable[[T], AsyncIterator[R]],
                     budget: Budget | None = None) -> AsyncGenerator[R, None]:
        """Stream `op(provider)`'s items from the first provider that yields one.

        A provider failing before its first item is skipped for the next one; once an item has
        been yielded the chain is committed, and a later failure is recorded and re-raised. With a
        `budget`, every item must arrive within what is left of it (a miss is a failure)."""
        errors: dict[str, BaseException] = {}
        for index, entry in enumerate(self.entries):
            if self._out_of_time(budget, errors) or not self._admit(entry, errors):
                continue
            gave_up_while_queued(reset=True)
            items = op(entry.provider)
            what = f"{self.name}:{entry.name}"
            try:  # the first item gets its share of the budget; once committed, all that is left
                first = await _next_item(items, budget, what, len(self.entries) - index)
            except StopAsyncIteration:
                entry.breaker.record_success()  # an empty answer is still an answer
                return
            except asyncio.CancelledError:
                entry.breaker.release()
                await _aclose(items)
                raise
            except EngineBusy as exc:
                self._shed(entry, exc, errors)
                await _aclose(items)
                continue
            except Exception as exc:
                self._failed_or_shed(entry, exc, errors)
                await _aclose(items)
                continue
            entry.breaker.record_success()
            try:  # committed: a failure from here on counts against the provider and propagates
                yield first
                while True:
                    try:
                        item = await _next_item(items, budget, what)
                    except StopAsyncIteration:
                        break
                    yield item
            except Exception as exc:
                self._failed(entry, exc, {})
                raise
            finally:
                await _aclose(items)
            return
        raise AllProvidersFailed(self.name, errors)


async def _next_item(items: AsyncIterator[R], budget: Budget | None, what: str, share: int = 1) -> R:
    if budget is None:
        return await items.__anext__()
    return await budget.run(items.__anext__(), what, share)


async def _aclose(items: AsyncIterator[object]) -> None:
    aclose: Callable[[], Awaitable[object]] | None = getattr(items, "aclose", None)
    if aclose is not None:
        try:
            await aclose()
        except Exception as exc:  # closing a broken stream must not mask the real error
            log.debug("closing provider stream: %r", exc)
