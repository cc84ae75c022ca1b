"""The outbox worker: claims due jobs, runs their handlers, retries with backoff, dead-letters the rest.

Ordering rule: jobs of one tenant with the same ordering key (store/outbox.py: a booking's id) run
strictly in the order they were enqueued, across batches and workers. A job is not claimed while
an earlier job with its key is pending (due or waiting to retry) or running; a dead-lettered job
no longer holds the ones after it (it has given up, and its key's later news must still go out;
replaying it sends it after them, which is the operator's explicit choice).
"""
from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import and_, exists, or_, select, update
from sqlalchemy.orm import Session, aliased

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
    #: jobs of one tenant with the same key run strictly one after another, in creation order; None: unordered
    ordering_key: str | None = None

    @classmethod
    def of(cls, j: OutboxJob) -> "JobView":
        return cls(
            j.id, j.tenant_id, j.kind, dict(j.payload), j.idempotency_key, j.trace_id, j.status, j.attempts,
            j.max_attempts, j.next_attempt_at, j.last_error, j.created_at, j.finished_at, j.ordering_key,
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


# An earlier job in these states holds back the later jobs with its key ("pending" includes a retry
# waiting for its backoff); "done" and "dead" do not.
HOLDING_STATUSES = ("pending", "running")


class OutboxWorker:
    """Runs outbox jobs. Safe with several workers: a claim marks jobs running in one write transaction
    (SQLite's write lock; FOR UPDATE SKIP LOCKED on PostgreSQL), and results are fenced by attempt number.

    A job's lease (`lease_s`: how long a claim is held before another worker may take the job as
    lost) must outlive its timeout (`job_timeout_s`), or a slow job would be run twice at once.
    """

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
        if lease_s <= job_timeout_s:
            raise ValueError(
                f"lease_s ({lease_s} s) must be longer than job_timeout_s ({job_timeout_s} s): a job still "
                "running when its lease ends is taken as lost and run again by another worker; raise lease_s "
                "or lower job_timeout_s")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
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
        # At most one job per ordering key is claimed at a time (see _claim), so a batch runs concurrently.
        outcomes = list(await asyncio.gather(*(self._execute(job) for job in claimed)))
        await self.db.run(lambda s: self._record(s, outcomes))
        return len(claimed)

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
        """Due pending jobs, oldest first, none of which has an earlier job with its key still to finish."""
        now = self.clock.now()
        earlier = aliased(OutboxJob)
        held_back = exists().where(
            earlier.tenant_id == OutboxJob.tenant_id,
            earlier.ordering_key == OutboxJob.ordering_key,
            earlier.status.in_(HOLDING_STATUSES),
            or_(earlier.created_at < OutboxJob.created_at,
                and_(earlier.created_at == OutboxJob.created_at, earlier.id < OutboxJob.id)),
        )
        query = (
            select(OutboxJob)
            .where(
                OutboxJob.status == "pending",
                or_(OutboxJob.next_attempt_at.is_(None), OutboxJob.next_attempt_at <= now),
                or_(OutboxJob.ordering_key.is_(None), ~held_back),
            )
            .order_by(OutboxJob.created_at, OutboxJob.id)
            .limit(self.batch_size)
        )
        if self.db.is_postgres:
            # Locked rows (another worker's claim in flight) are skipped; the earlier job such a claim
            # holds is still pending in this snapshot, so the jobs after it stay held back.
            query = query.with_for_update(skip_locked=True, of=OutboxJob)
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
