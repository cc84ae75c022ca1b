"""Malformed SIP datagrams per source host: counted, logged at most once a second, a persistent sender ignored."""
from __future__ import annotations

import logging
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass
from typing import Callable

from prometheus_client import Counter as MetricCounter

__all__ = ["JunkGuard", "SIP_JUNK"]

log = logging.getLogger(__name__)

#: every malformed datagram, and every datagram dropped because its source was being ignored
SIP_JUNK = MetricCounter("spotfunnel_sip_junk_datagrams_total",
                         "SIP datagrams that could not be read, or came from a source ignored for sending junk",
                         ["kind"])


@dataclass
class _Source:
    window_start: float
    in_window: int = 0
    logged_at: float = float("-inf")
    suppressed: int = 0
    ignored_until: float = float("-inf")


class JunkGuard:
    """Tracks junk per source host (not host:port: an attacker varies ports at no cost).

    `ignore_after` malformed datagrams within `window_s` make the host ignored for `ignore_for_s`:
    everything it sends is dropped unread and counted. Log lines are one per host per
    `log_every_s`, saying how many were suppressed. At most `max_sources` hosts are tracked (the
    least recently seen go first), so a flood from many addresses cannot grow memory either.
    """

    def __init__(self, *, ignore_after: int = 50, window_s: float = 10.0, ignore_for_s: float = 30.0,
                 log_every_s: float = 1.0, max_sources: int = 1024,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ignore_after, self.window_s, self.ignore_for_s = ignore_after, window_s, ignore_for_s
        self.log_every_s, self.max_sources, self._clock = log_every_s, max_sources, clock
        self._sources: OrderedDict[str, _Source] = OrderedDict()
        self.stats: Counter[str] = Counter()

    def __len__(self) -> int:
        return len(self._sources)

    def ignoring(self, host: str) -> bool:
        """Whether datagrams from `host` are dropped unread right now (each one counted)."""
        source = self._sources.get(host)
        if source is None or self._clock() >= source.ignored_until:
            return False
        self.stats["ignored"] += 1
        SIP_JUNK.labels("ignored").inc()
        return True

    @property
    def ignored_hosts(self) -> int:
        now = self._clock()
        return sum(1 for s in self._sources.values() if now < s.ignored_until)

    def junk(self, host: str, port: int, problem: str) -> None:
        """A malformed datagram from `host`: count it, maybe log it, maybe start ignoring the host."""
        now = self._clock()
        self.stats["malformed"] += 1
        SIP_JUNK.labels("malformed").inc()
        source = self._source(host, now)
        if now - source.window_start >= self.window_s:
            source.window_start, source.in_window = now, 0
        source.in_window += 1
        if source.in_window >= self.ignore_after:
            source.ignored_until, source.in_window = now + self.ignore_for_s, 0
            self.stats["sources_ignored"] += 1
            log.warning("SIP: %s sent %d malformed datagrams within %.0f s; ignoring it for %.0f s", host,
                        self.ignore_after, self.window_s, self.ignore_for_s)
            return
        if now - source.logged_at < self.log_every_s:
            source.suppressed += 1
            return
        more = f" ({source.suppressed} more from it not logged)" if source.suppressed else ""
        log.info("SIP: malformed datagram from %s:%d: %s%s", host, port, problem[:160], more)
        source.logged_at, source.suppressed = now, 0

    def _source(self, host: str, now: float) -> _Source:
        source = self._sources.pop(host, None) or _Source(window_start=now)
        self._sources[host] = source  # most recent last
        while len(self._sources) > self.max_sources:
            self._sources.popitem(last=False)
        return source
