"""Observability: structured logs, metrics, traces."""
