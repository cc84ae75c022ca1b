"""Keys pressed mean something: 1 is yes and 2 is no at a yes/no question; typed digits fill the phone slot."""
from __future__ import annotations

from datetime import date

from conversation_support import Call, local

from spotfunnel.conversation.state import Ask

NOW = "2026-12-08T10:00:00-08:00"  # Tuesday


async def keys(call: Call, pressed: str) -> str:
    return await call.keys(pressed)


async def to_caller_id_question(call: Call) -> None:
    await call.text("I'd like a haircut tomorrow at 3 pm")
    assert "calling from" in await call.text("Maria Lopez")


async def test_pressing_1_takes_the_caller_id_and_1_again_confirms_the_booking() -> None:
    call = Call(NOW, "+14155550166")
    await to_caller_id_question(call)
    assert "Just to confirm" in await keys(call, "1")
    assert "You're all set" in await keys(call, "1")
    [booking] = await call.active()
    assert (booking.phone, booking.start) == ("+14155550166", local(date(2026, 12, 9), 15))


async def test_pressing_2_at_the_read_back_asks_what_to_change() -> None:
    call = Call(NOW, "+14155550166")
    await to_caller_id_question(call)
    await keys(call, "1")
    assert "What should I change" in await keys(call, "2")
    assert call.policy.outcome is None and not await call.active()


async def test_a_number_typed_on_the_keypad_fills_the_phone_slot() -> None:
    call = Call(NOW, "+14155550166")
    await to_caller_id_question(call)
    assert "best number" in await keys(call, "2")
    assert call.policy.ask is Ask.PHONE
    assert not call.policy.completes_keys("415555017")  # a number waits for "#" or a pause
    assert "Just to confirm" in await keys(call, "4155550177#")
    assert call.policy.ctx.state.draft.phone == "+14155550177"


async def test_keys_that_answer_nothing_are_not_understood() -> None:
    call = Call(NOW)
    await call.text("I'd like a haircut tomorrow at 3 pm")
    assert call.policy.completes_keys("7")
    assert "didn't quite catch" in await keys(call, "7")


async def test_cancellation_confirmed_with_1() -> None:
    call = Call(NOW, "+14155550188")
    await call.seed("Omar Hassan", "+14155550188", "haircut", local(date(2026, 12, 9), 11))
    assert "Shall I cancel it?" in await call.text("I need to cancel my appointment")
    assert call.policy.ask is Ask.CONFIRM_CANCEL
    assert "is cancelled" in await keys(call, "1")
    assert call.policy.outcome == "cancelled"
