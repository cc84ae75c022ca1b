"""The outbox worker: claims due jobs, runs their handlers, retries with backoff, dead-letters the rest."""
from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from spotfunnel.clock import Clock, SystemClock
from spotfunnel.store.models import OutboxJob

if TYPE_CHECKING:
    from spotfunnel.store.db import Database

log = logging.getLogger(__name__)
MAX_ERROR_CHARS = 2000


@dataclass(frozen=True)
class JobView:
    """A job as its handler sees it (a snapshot, detached from the database)."""

    id: str
    tenant_id: str
    kind: str
    payload: dict[str, Any]
    idempotency_key: str
    trace_id: str
    status: str
    attempts: int
    max_attempts: int
    next_attempt_at: datetime | None
    last_error: str | None
    created_at: datetime
    finished_at: datetime | None

    @property
    def ordering_key(self) -> str:
        """Jobs sharing this key run in creation order within a batch (payload `ordering_key` or `booking_id`)."""
        return str(self.payload.get("ordering_key") or self.payload.get("booking_id") or self.id)

    @classmethod
    def of(cls, j: OutboxJob) -> "JobView":
        return cls(
            j.id, j.tenant_id, j.kind, dict(j.payload), j.idempotency_key, j.trace_id, j.status, j.attempts,
            j.max_attempts, j.next_attempt_at, j.last_error, j.created_at, j.finished_at,
        )


class JobHandler(Protocol):
    async def __call__(self, job: JobView) -> None:
        """Performs the job's effect; raises on failure (the worker retries, then dead-letters)."""
        ...


class PermanentJobError(Exception):
    """Raised by a handler when retrying cannot help (bad payload): the job goes straight to dead letters."""


@dataclass(frozen=True)
class _Outcome:
    job: JobView
    error: str | None = None
    permanent: bool = False


class OutboxWorker:
    """Runs outbox jobs. Safe with several workers: a claim marks jobs running in one write transaction
    (SQLite's write lock; FOR UPDATE SKIP LOCKED on PostgreSQL), and results are fenced by attempt number."""

    def __init__(
        self,
        db: "Database",
        handlers: Mapping[str, JobHandler],
        clock: Clock | None = None,
        base_delay_s: float = 1.0,
        max_delay_s: float = 300,
        *,
        batch_size: int = 10,
        lease_s: float = 60.0,
        job_timeout_s: float = 30.0,
        rng: random.Random | None = None,
    ) -> None:
        self.db = db
        self.handlers = dict(handlers)
        self.clock: Clock = clock or SystemClock()
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s
        self.batch_size = batch_size
        self.lease = timedelta(seconds=lease_s)
        self.job_timeout_s = job_timeout_s
        self.rng = rng or random.Random()
        self._recovered = False

    def backoff(self, attempts: int) -> float:
        """Seconds before retry number `attempts` (exponential, capped, full jitter)."""
        ceiling = min(self.max_delay_s, self.base_delay_s * 2 ** max(0, attempts - 1))
        return self.rng.uniform(0, ceiling)

    async def recover_stale(self) -> int:
        """Returns jobs stuck in `running` beyond the lease (their worker died) to pending, or dead."""
        now = self.clock.now()

        def _tx(session: Session) -> int:
            stale = session.scalars(
                select(OutboxJob).where(OutboxJob.status == "running", OutboxJob.claimed_at < now - self.lease)
            ).all()
            for job in stale:
                job.last_error = f"lease expired after {self.lease.total_seconds():.0f} s (worker lost)"
                if job.attempts >= job.max_attempts:
                    job.status, job.finished_at = "dead", now
                else:
                    job.status, job.next_attempt_at = "pending", None
            return len(stale)

        recovered = await self.db.run(_tx)
        if recovered:
            log.warning("outbox: recovered %d stale running job(s)", recovered)
        return recovered

    async def run_once(self) -> int:
        """Claims the due jobs (up to batch_size), runs them concurrently, records results; returns how many."""
        if not self._recovered:
            await self.recover_stale()
            self._recovered = True
        claimed = await self.db.run(self._claim)
        if not claimed:
            return 0
        groups: dict[str, list[JobView]] = {}
        for job in claimed:  # claimed oldest first
            groups.setdefault(job.ordering_key, []).append(job)
        results = await asyncio.gather(*(self._execute_in_order(group) for group in groups.values()))
        outcomes = [outcome for group in results for outcome in group]
        await self.db.run(lambda s: self._record(s, outcomes))
        return len(claimed)

    async def _execute_in_order(self, group: list[JobView]) -> list[_Outcome]:
        """Jobs about one thing (e.g. one booking's booked, then cancelled SMS) run one after another."""
        return [await self._execute(job) for job in group]

    async def run_until_idle(self, timeout_s: float = 30.0) -> int:
        """Runs batches until no job is due (or the timeout passes); returns how many jobs ran."""
        deadline = time.monotonic() + timeout_s
        total = 0
        while time.monotonic() < deadline:
            ran = await self.run_once()
            total += ran
            if ran == 0:
                return total
        log.warning("outbox: run_until_idle stopped after %.1f s with jobs still due", timeout_s)
        return total

    async def run_forever(self, stop: asyncio.Event, poll_s: float = 0.5) -> None:
        """Runs jobs until `stop` is set; sleeps `poll_s` when idle; survives database hiccups."""
        last_recovery = time.monotonic()
        while not stop.is_set():
            try:
                if time.monotonic() - last_recovery > self.lease.total_seconds():
                    await self.recover_stale()
                    last_recovery = time.monotonic()
                ran = await self.run_once()
            except Exception:
                log.exception("outbox: worker iteration failed")
                ran = 0
            if ran == 0:
                try:
                    await asyncio.wait_for(stop.wait(), timeout=poll_s)
                except asyncio.TimeoutError:
                    pass

    def _claim(self, session: Session) -> list[JobView]:
        now = self.clock.now()
        query = (
            select(OutboxJob)
            .where(
                OutboxJob.status == "pending",
                or_(OutboxJob.next_attempt_at.is_(None), OutboxJob.next_attempt_at <= now),
            )
            .order_by(OutboxJob.created_at, OutboxJob.id)
            .limit(self.batch_size)
        )
        if self.db.is_postgres:
            query = query.with_for_update(skip_locked=True)
        jobs = session.scalars(query).all()
        for job in jobs:
            job.status, job.claimed_at, job.attempts = "running", now, job.attempts + 1
        session.flush()
        return [JobView.of(job) for job in jobs]

    async def _execute(self, job: JobView) -> _Outcome:
        handler = self.handlers.get(job.kind)
        if handler is None:
            known = ", ".join(sorted(self.handlers)) or "none"
            return _Outcome(job, f"no handler for job kind {job.kind!r} (known: {known})", permanent=True)
        try:
            await asyncio.wait_for(handler(job), timeout=self.job_timeout_s)
        except PermanentJobError as exc:
            return _Outcome(job, _describe(exc), permanent=True)
        except asyncio.TimeoutError:
            return _Outcome(job, f"TimeoutError: handler took longer than {self.job_timeout_s} s")
        except Exception as exc:
            return _Outcome(job, _describe(exc))
        return _Outcome(job)

    def _record(self, session: Session, outcomes: list[_Outcome]) -> None:
        now = self.clock.now()
        for outcome in outcomes:
            job = outcome.job
            values: dict[str, Any]
            if outcome.error is None:
                values = {"status": "done", "finished_at": now, "last_error": None}
            elif outcome.permanent or job.attempts >= job.max_attempts:
                values = {"status": "dead", "finished_at": now, "last_error": outcome.error}
                log.error("outbox: job %s (%s) dead after %d attempt(s): %s", job.id, job.kind, job.attempts, outcome.error)
            else:
                retry_at = now + timedelta(seconds=self.backoff(job.attempts))
                values = {"status": "pending", "next_attempt_at": retry_at, "last_error": outcome.error}
                log.warning("outbox: job %s (%s) attempt %d failed: %s", job.id, job.kind, job.attempts, outcome.error)
            # Fenced: only the claim that ran this attempt may record it (a lease may have expired meanwhile).
            session.execute(
                update(OutboxJob)
                .where(OutboxJob.id == job.id, OutboxJob.status == "running", OutboxJob.attempts == job.attempts)
                .values(**values)
            )


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS]


async def list_dead(db: "Database", tenant_id: str | None = None) -> list[JobView]:
    """Dead letters (optionally of one tenant), most recent first."""

    def _q(session: Session) -> list[JobView]:
        query = select(OutboxJob).where(OutboxJob.status == "dead").order_by(OutboxJob.finished_at.desc())
        if tenant_id is not None:
            query = query.where(OutboxJob.tenant_id == tenant_id)
        return [JobView.of(j) for j in session.scalars(query)]

    return await db.run(_q, write=False)


async def replay(db: "Database", job_id: str) -> JobView:
    """Re-queues a dead letter: pending, due now, attempts reset (its last error is kept for the record)."""

    def _tx(session: Session) -> JobView:
        job = session.get(OutboxJob, job_id)
        if job is None:
            raise LookupError(f"no outbox job {job_id!r}")
        if job.status != "dead":
            raise ValueError(f"job {job_id} is {job.status}, only dead jobs can be replayed")
        job.status, job.attempts, job.next_attempt_at, job.finished_at, job.claimed_at = "pending", 0, None, None, None
        session.flush()
        return JobView.of(job)

    return await db.run(_tx)
