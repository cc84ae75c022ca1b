"""Resilience: circuit breaker, fallback chain, retry with backoff and jitter, deadlines."""
from spotfunnel.resilience.breaker import BreakerState, CircuitBreaker, CircuitOpen
from spotfunnel.resilience.deadline import DeadlineExceeded, with_deadline
from spotfunnel.resilience.fallback import AllProvidersFailed, FallbackChain, ProviderStats
from spotfunnel.resilience.retry import backoff_delay, retry_async

__all__ = [
    "AllProvidersFailed",
    "BreakerState",
    "CircuitBreaker",
    "CircuitOpen",
    "DeadlineExceeded",
    "FallbackChain",
    "ProviderStats",
    "backoff_delay",
    "retry_async",
    "with_deadline",
]
