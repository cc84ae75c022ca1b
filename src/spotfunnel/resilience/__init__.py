"""Resilience: circuit breaker, fallback chain, retry with backoff and jitter."""
