"""One call's row in the store, written off the audio loop: opened at the start, heard turns as they land, closed at the end.

Writes go one at a time, in order, from a task of their own: the call never waits on the
database except at its very end, and then under a deadline. Heard-transcript updates coalesce
(only the newest snapshot is written), so a chatty call costs at most one write in flight.
"""
from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import structlog

from spotfunnel.store.calls import OpenCall, close_left_open, finish_call, open_call, save_heard, server_owner

if TYPE_CHECKING:
    from spotfunnel.store.db import Database

__all__ = ["CallJournal", "FINISH_DEADLINE_S", "close_calls_left_open"]

log = structlog.get_logger(__name__)

FINISH_DEADLINE_S = 15.0  # the call's last write (close the row, enqueue the report) may take this long
_unfinished: set[asyncio.Task[None]] = set()  # journals whose end outlived the deadline: kept until they land


class CallJournal:
    """Keeps a call's row current. `heard` is fire-and-forget; `finish` is awaited (bounded) once."""

    def __init__(self, db: "Database", call: OpenCall, owner: str | None = None) -> None:
        self.db, self.call = db, call
        self.owner = owner if owner is not None else server_owner()
        self._heard: list[dict[str, Any]] | None = None
        self._report: dict[str, Any] | None = None
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"journal-{call.call_id}")

    def heard(self, transcript: list[dict[str, Any]]) -> None:
        """The heard transcript changed: write this snapshot when the writer is free (older ones are skipped)."""
        if self._report is None:
            self._heard = transcript
            self._wake.set()

    async def finish(self, report: dict[str, Any], deadline_s: float = FINISH_DEADLINE_S) -> bool:
        """Close the row and enqueue the report after any write in flight; False when the deadline passed first.

        Past the deadline the write still lands (the task is kept), but the call does not wait for it.
        """
        self._report = report
        self._wake.set()
        done, _ = await asyncio.wait({self._task}, timeout=deadline_s)
        if not done:
            log.warning("call.journal_slow", call_id=self.call.call_id, waited_s=deadline_s)
            _unfinished.add(self._task)
            self._task.add_done_callback(_unfinished.discard)
            return False
        failure = self._task.exception()
        if failure is not None:
            log.error("call.report_enqueue_failed", call_id=self.call.call_id, error=repr(failure))
        return failure is None

    async def _run(self) -> None:
        try:
            await open_call(self.db, self.call, self.owner)
        except Exception:  # the call goes on; its report is still enqueued at the end
            log.exception("call.row_open_failed", call_id=self.call.call_id)
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._report is not None:
                await finish_call(self.db, self.call, self._report)
                return
            snapshot, self._heard = self._heard, None
            if snapshot is not None:
                try:
                    await save_heard(self.db, self.call.call_id, snapshot)
                except Exception:
                    log.exception("call.row_heard_failed", call_id=self.call.call_id)


async def close_calls_left_open(db: "Database") -> list[str]:
    """At server start: the calls this server left open when it was killed are closed as abandoned, with reports."""
    closed = await close_left_open(db, server_owner())
    if closed:
        log.warning("calls.closed_as_abandoned", count=len(closed), call_ids=closed[:20],
                    detail="these calls were cut off when the server stopped; their reports say what was heard")
    return closed
