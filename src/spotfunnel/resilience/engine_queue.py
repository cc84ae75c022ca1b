"""A local engine's work queue: its own threads, a capped wait list, finals first, speculation only when idle."""
from __future__ import annotations

import asyncio
import contextvars
import enum
import heapq
import itertools
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Generic, TypeVar

__all__ = ["EngineBusy", "EngineQueue", "Urgency", "gave_up_while_queued"]

R = TypeVar("R")


class Urgency(enum.IntEnum):
    """How a request may wait for the engine; lower values are served first."""

    FINAL = 0  # a caller is waiting on it (the end of a turn, a sentence to speak)
    SPECULATIVE = 1  # an early guess (a partial decode): worth it only if the engine is idle now


class EngineBusy(RuntimeError):
    """The engine refused the request without running it (full, or busy for a speculative one).

    Overload, not a fault of the engine: a fallback chain passes over it without counting a failure."""

    def __init__(self, engine: str, reason: str) -> None:
        self.engine = engine
        self.reason = reason
        super().__init__(f"engine '{engine}' refused the request: {reason}")


# Set in the waiting task when it stopped waiting (a deadline, a hang-up) before the engine started
# its request: the time went on our own queue, so a fallback chain counts overload, not a failure.
_withdrawn_unstarted: contextvars.ContextVar[bool] = contextvars.ContextVar("withdrawn_unstarted", default=False)


def gave_up_while_queued(reset: bool = False) -> bool:
    """Whether the last request of this task was withdrawn before it started (optionally clearing it)."""
    value = _withdrawn_unstarted.get()
    if reset and value:
        _withdrawn_unstarted.set(False)
    return value


class _State(enum.Enum):
    WAITING = "waiting"
    RUNNING = "running"
    DONE = "done"
    CANCELLED = "cancelled"


@dataclass
class _Job(Generic[R]):
    fn: Callable[..., R]
    args: tuple[Any, ...]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[R]
    state: _State = _State.WAITING
    order: tuple[int, int] = (0, 0)  # (urgency, arrival), for the wait list's heap

    def __lt__(self, other: _Job[Any]) -> bool:
        return self.order < other.order


@dataclass
class EngineStats:
    """Counters a metrics exporter or a benchmark reads."""

    ran: int = 0
    refused_full: int = 0
    dropped_speculative: int = 0
    cancelled_before_start: int = 0
    waiting_high_water: int = 0


class EngineQueue:
    """Runs blocking engine calls (a model decode, a synthesis) on `threads` threads of its own.

    At most `max_waiting` requests wait; past that a request is refused with EngineBusy at once,
    so a crowd of calls gets a clear error instead of an ever-growing backlog. Finals are served
    before anything else; a speculative request runs only on an idle engine and is dropped, never
    queued, otherwise. A request whose caller stops waiting (cancelled, deadline missed) before it
    starts never runs. Usable from any event loop: results go back to the loop that asked."""

    def __init__(self, name: str, threads: int = 1, max_waiting: int = 8) -> None:
        if threads < 1 or max_waiting < 0:
            raise ValueError(f"engine '{name}': threads must be >= 1 and max_waiting >= 0, "
                             f"got threads={threads}, max_waiting={max_waiting}")
        self.name = name
        self.threads = threads
        self.max_waiting = max_waiting
        self.stats = EngineStats()
        self._lock = threading.Lock()
        self._waiting: list[_Job[Any]] = []
        self._running = 0
        self._arrivals = itertools.count()
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix=name)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @property
    def running(self) -> int:
        return self._running

    async def run(self, fn: Callable[..., R], *args: Any, urgency: Urgency = Urgency.FINAL) -> R:
        """`fn(*args)` on an engine thread; raises EngineBusy when it was refused (it never ran)."""
        loop = asyncio.get_running_loop()
        job: _Job[R] = _Job(fn, args, loop, loop.create_future(), order=(int(urgency), next(self._arrivals)))
        if self._admit(job, urgency):
            self._pool.submit(self._work, job)
        try:
            return await job.future
        except asyncio.CancelledError:
            if self._withdraw(job):
                _withdrawn_unstarted.set(True)
            raise

    def _admit(self, job: _Job[Any], urgency: Urgency) -> bool:
        """True when the job starts now; False when it waits; EngineBusy when it is refused."""
        with self._lock:
            idle = self._running < self.threads and not self._waiting
            if idle:
                self._running += 1
                job.state = _State.RUNNING
                return True
            if urgency is Urgency.SPECULATIVE:
                self.stats.dropped_speculative += 1
                raise EngineBusy(self.name, "busy, and a speculative request is dropped rather than queued")
            if len(self._waiting) >= self.max_waiting:
                self.stats.refused_full += 1
                raise EngineBusy(self.name, f"{len(self._waiting)} requests already waiting "
                                            f"(cap {self.max_waiting}); the machine is at capacity")
            heapq.heappush(self._waiting, job)
            self.stats.waiting_high_water = max(self.stats.waiting_high_water, len(self._waiting))
            return False

    def _withdraw(self, job: _Job[Any]) -> bool:
        """The caller stopped waiting: a job that has not started is taken off the list (True)."""
        with self._lock:
            if job.state is not _State.WAITING:
                return False
            job.state = _State.CANCELLED
            self._waiting.remove(job)
            heapq.heapify(self._waiting)
            self.stats.cancelled_before_start += 1
            return True

    def _work(self, job: _Job[Any]) -> None:
        """An engine thread: run the job, then whatever waits next, until the list is empty."""
        next_job: _Job[Any] | None = job
        while next_job is not None:
            self._run_one(next_job)
            with self._lock:
                next_job = heapq.heappop(self._waiting) if self._waiting else None
                if next_job is None:
                    self._running -= 1
                else:
                    next_job.state = _State.RUNNING

    def _run_one(self, job: _Job[Any]) -> None:
        try:
            result = job.fn(*job.args)
        except BaseException as exc:  # handed to the waiting coroutine, which re-raises it
            self._deliver(job, None, exc)
        else:
            self._deliver(job, result, None)
        finally:
            job.state = _State.DONE
            self.stats.ran += 1

    @staticmethod
    def _deliver(job: _Job[Any], result: Any, error: BaseException | None) -> None:
        def settle() -> None:
            if job.future.done():  # its caller gave up (deadline) while it ran
                return
            if error is not None:
                job.future.set_exception(error)
            else:
                job.future.set_result(result)

        try:
            job.loop.call_soon_threadsafe(settle)
        except RuntimeError:  # that loop has closed: nobody is waiting any more
            pass
