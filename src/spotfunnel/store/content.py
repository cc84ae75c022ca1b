"""Call content at rest: the one column type every name, phone number, message and transcript is stored through.

Every read and write of call content (a booking's name and phone, an SMS's recipient and body, a
call's caller ID and heard transcript, job payloads that carry them) passes through these types'
`process_bind_param` / `process_result_value`, whichever module issues the query (ledger, calls,
queries, the SMS sink, the report job). Field encryption at rest (a later issue) goes here and
nowhere else: encrypt on bind, decrypt on result. Columns that are looked up by equality (a
booking's phone) will then need a deterministic scheme or a keyed blind index beside them, and
widths will grow with the ciphertext: both are the migration that comes with it.
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Dialect, String, Text
from sqlalchemy.types import TypeDecorator

__all__ = ["CallContent", "CallContentJSON", "CallContentText"]


class _ContentSeam:
    """The one place call content passes on its way into and out of the database."""

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        return value  # field encryption goes here: encrypt (see the module docstring)

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        return value  # ... and decrypt here


class CallContent(_ContentSeam, TypeDecorator[str]):
    """A short piece of call content (a name, a phone number), stored as a VARCHAR of `length`."""

    impl = String
    cache_ok = True


class CallContentText(_ContentSeam, TypeDecorator[str]):
    """A long piece of call content (an SMS body), stored as TEXT."""

    impl = Text
    cache_ok = True


class CallContentJSON(_ContentSeam, TypeDecorator[Any]):
    """Structured call content (a transcript, a job payload naming a caller), stored as JSON."""

    impl = JSON
    cache_ok = True
