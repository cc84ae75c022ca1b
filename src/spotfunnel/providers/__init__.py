"""Providers: one module per vendor or engine, each implementing a small protocol."""
