"""Logs through the real logging config: phone numbers masked to the last 4 digits and transcripts
dropped at INFO and above, for structlog and stdlib loggers alike; DEBUG keeps call content."""
from __future__ import annotations

import logging

import pytest
import structlog

from spotfunnel.observability.logging import configure_logging
from spotfunnel.observability.redact import mask_phone_numbers

NUMBERS = ["+14155550166", "+1 (415) 555-0166", "415-555-0166", "(415) 555 0166", "4155550166", "14155550166",
           "four one five five five five zero one six six", "Four, one, five. Five five five, oh one six six"]


@pytest.fixture
def logged(capsys: pytest.CaptureFixture[str]):  # type: ignore[no-untyped-def]
    def configure_and_read(level: str, emit) -> str:  # type: ignore[no-untyped-def]
        configure_logging(level)
        capsys.readouterr()
        emit()
        return capsys.readouterr().err

    yield configure_and_read
    configure_logging("info")


@pytest.mark.parametrize("number", NUMBERS)
def test_every_form_of_a_number_is_masked_at_info(logged, number: str) -> None:  # type: ignore[no-untyped-def]
    log = structlog.get_logger("test.calls")

    def emit() -> None:
        log.info("call.started", caller=number, nested={"to": [number]}, note=f"callback on {number} please")
        logging.getLogger("test.stdlib").warning("transfer to %s refused", number)

    out = logged("info", emit)
    assert out.count("***0166") == 4, out
    assert "555" not in out and "five five" not in out.lower()


def test_transcripts_are_dropped_at_info_and_kept_at_debug(logged) -> None:  # type: ignore[no-untyped-def]
    log = structlog.get_logger("test.calls")
    said = "My name is Nina Patel and I want a haircut"

    def emit() -> None:
        log.info("call.turn", call_id="3f2a9c1e-1234-4b5c-8d7e-0123456789ab", text=said, heard=[said])
        log.debug("call.turn.debug", text=said, caller="+14155550166")

    info = logged("info", emit)
    assert "Nina" not in info and "haircut" not in info and f"[{len(said)} chars dropped]" in info
    assert "3f2a9c1e-1234-4b5c-8d7e-0123456789ab" in info  # our ids are not phone numbers
    assert "call.turn.debug" not in info
    debug = logged("debug", emit)
    assert "call.turn.debug" in debug and said in debug and "+14155550166" in debug


def test_exception_messages_are_masked_too(logged) -> None:  # type: ignore[no-untyped-def]
    def emit() -> None:
        try:
            raise LookupError("no tenant answers '+14155550123'")
        except LookupError:
            structlog.get_logger("t").exception("route.failed")
            logging.getLogger("t").exception("route failed (stdlib)")

    out = logged("info", emit)
    assert out.count("LookupError: no tenant answers '***0123'") == 2 and "555" not in out


def test_dates_times_and_addresses_are_left_alone() -> None:
    text = "booked 2026-12-11T10:15:00-08:00 at 10:15, sip 127.0.0.1:5060, took 12.5 ms, trace 9f86d081884c7d65"
    assert mask_phone_numbers(text) == text
