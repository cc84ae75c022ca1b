"""Deterministic extractors: dates and times, phone numbers, names, services and intents from transcripts."""
