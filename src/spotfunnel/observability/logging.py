"""Structured logs (structlog and stdlib alike), one line per event to stderr, call content redacted."""
from __future__ import annotations

import logging
import sys
from typing import IO

import structlog
from structlog.typing import Processor

from spotfunnel.observability.redact import redact_call_content

_HANDLER_NAME = "spotfunnel"


class _CurrentStderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stderr` is at the time of the event, not the one at configuration
    (a test runner or a daemon may replace it later; a closed old stream must not break logging)."""

    def __init__(self) -> None:
        super().__init__()
        self.set_name(_HANDLER_NAME)

    @property  # type: ignore[override]
    def stream(self) -> IO[str]:
        return sys.stderr

    @stream.setter
    def stream(self, _value: IO[str]) -> None:
        pass


def configure_logging(level: str = "info") -> None:
    """Routes structlog and stdlib logging through one chain: level, timestamp, redaction, one line.

    At INFO and above phone numbers are masked to their last 4 digits and transcript fields are
    dropped (observability/redact.py); call content is logged in full only at DEBUG.
    """
    lvl = getattr(logging, level.upper(), logging.INFO)
    shared: list[Processor] = [
        structlog.stdlib.add_log_level,
        structlog.processors.format_exc_info,  # a traceback is text before redaction: its messages are masked too
        redact_call_content,
        structlog.processors.TimeStamper(fmt="iso"),
    ]
    handler = _CurrentStderr()
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.dev.ConsoleRenderer(colors=False)],
        foreign_pre_chain=shared,  # stdlib records, e.g. log.info("%s", x)
    ))
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(lvl)
    logging.getLogger("faster_whisper").setLevel(max(lvl, logging.WARNING))  # one line per decode is noise
    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars, *shared,
                    structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=False,
    )
