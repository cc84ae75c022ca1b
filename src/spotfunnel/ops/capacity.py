"""How many calls this process serves at once (SPOTFUNNEL_MAX_CALLS): past it, new calls are refused politely."""
from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = ["DEFAULT_MAX_CALLS", "MAX_CALLS_ENV", "CallCapacity", "CapacityError"]

MAX_CALLS_ENV = "SPOTFUNNEL_MAX_CALLS"
#: measured on the reference machine (2 cores, local models, shared load ~4) with
#: benchmarks/call_capacity.py: 4 calls ran real time (loop lag median 0.8 ms, P95 3.4 ms, RTF <= 1.045,
#: all passed); at 6, STT missed its 8 s deadline and 2 of 6 calls failed
DEFAULT_MAX_CALLS = 4


class CapacityError(ValueError):
    """SPOTFUNNEL_MAX_CALLS is not a positive whole number."""


@dataclass(frozen=True)
class CallCapacity:
    """The process-wide call limit, counted over every edge (the server's active_calls)."""

    max_calls: int = DEFAULT_MAX_CALLS

    @classmethod
    def from_env(cls) -> "CallCapacity":
        raw = os.environ.get(MAX_CALLS_ENV, "").strip()
        if not raw:
            return cls()
        try:
            value = int(raw)
        except ValueError:
            value = 0
        if value < 1:
            raise CapacityError(f"{MAX_CALLS_ENV}={raw!r} is not a positive whole number of calls; set it to how "
                                f"many calls this machine serves in real time (default {DEFAULT_MAX_CALLS}, measure "
                                "with benchmarks/call_capacity.py) or unset it")
        return cls(value)

    def has_room(self, active: int, reserved: int = 0) -> bool:
        """Whether one more call fits beside `active` calls and `reserved` seats (answered, stream not yet open)."""
        return active + reserved < self.max_calls

    def describe(self, active: int, reserved: int = 0) -> str:
        held = f"{active} active" + (f" + {reserved} connecting" if reserved else "")
        return f"at capacity ({held} of {self.max_calls} calls, {MAX_CALLS_ENV})"
