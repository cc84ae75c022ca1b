"""The server's cache of sent responses, so a retransmitted request gets the same answer (RFC 3261 17.2)."""
from __future__ import annotations

import time
from collections import OrderedDict
from typing import Callable

from spotfunnel.transports.sip.message import SipMessage

__all__ = ["ResponseCache", "transaction_key"]

Address = tuple[str, int]
TransactionKey = tuple[str, str, str]


def transaction_key(request: SipMessage) -> TransactionKey:
    """(Call-ID, CSeq, Via branch): two transactions that share a branch stay apart.

    Some callers reuse branches (RFC 2543 ones send none at all), so the branch alone is not enough.
    The CSeq is taken as written (whitespace folded): a 400 answers requests whose CSeq is unreadable.
    """
    return request.call_id, " ".join((request.get("CSeq") or "").split()), request.branch


class ResponseCache:
    """The last response per server transaction, kept `max_age_s` (64*T1) and at most `max_entries`.

    Entries older than `max_age_s` are never served (the transaction is over) and are pruned on each
    insert; past `max_entries` the oldest go first, so a flood of requests cannot grow memory.
    """

    def __init__(self, max_entries: int = 4096, max_age_s: float = 32.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_entries, self.max_age_s, self._clock = max_entries, max_age_s, clock
        self._entries: OrderedDict[TransactionKey, tuple[bytes, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, request: SipMessage) -> bytes | None:
        entry = self._entries.get(transaction_key(request))
        if entry is None or self._clock() - entry[1] >= self.max_age_s:
            return None
        return entry[0]

    def put(self, request: SipMessage, data: bytes) -> None:
        now = self._clock()
        key = transaction_key(request)
        self._entries.pop(key, None)  # re-inserted at the end: a later response (180 -> 200) is newest
        self._entries[key] = (data, now)
        while self._entries:
            oldest_key, (_, at) = next(iter(self._entries.items()))
            if now - at < self.max_age_s and len(self._entries) <= self.max_entries:
                break
            del self._entries[oldest_key]

    def clear(self) -> None:
        self._entries.clear()
