"""The job manager: a trio supervisor that is the only writer of the job store.

One task, the *loop*, drains the inbox (API calls, attempt results from actor threads, timer
ticks), applies the whole batch in ONE LMDB write transaction — creates, finished attempts,
cancels, progress, and the next jobs to start — commits it (fsynced when durable), and only
then answers callers and tells actors to run the jobs it started. One *timer* task sleeps until
the earliest of: the first due retry (read from the store's due index), the earliest attempt
deadline, the next poll for work submitted by other processes. Executor actors live under a
:class:`supervisors.Supervisor` that restarts them when they crash.
"""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import heapq
import itertools
import math
import os
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import pykka
import trio
from loguru import logger

from supervisors import (
    ONE_FOR_ONE,
    PERMANENT,
    ChildSpec,
    EscalationError,
    EventKind,
    Intensity,
    Supervisor,
    SupervisorEvent,
    actor_child,
)

from ._runtime_lock import RuntimeLock
from .actors import Attempt, AttemptResult, Attempts, AttemptStarted, ExecutorActor, StartGate
from .context import CancelFlag, JobContext
from .errors import (
    CancelNotAllowed,
    IdempotentConflict,
    InvalidParams,
    JobNotFound,
    KalamError,
    RuntimeFailed,
    RuntimeStopped,
    StoreError,
    StoreLocked,
    UnknownJobType,
)
from .executor import JobExecutor
from .ids import JobId, JobType
from .model import (
    Job,
    JobDecision,
    JobFilter,
    JobRow,
    JobStatus,
    Outcome,
    Progress,
    RetryPolicy,
)
from .schedules import Schedule, ScheduledJob
from .store import JobStore, NewJob, StoreTxn, prepare_checked, prepare_job, validates_params, verbs

__all__ = ["Histogram", "JobManager", "ManagerStatistics", "default_executors", "open_job_manager"]

MAX_BATCH: Final = 4096
RECOVERY_BATCH: Final = 10_000
ADMIT_BATCH: Final = 10_000


@dataclasses.dataclass(frozen=True, slots=True)
class Histogram:
    """A distribution of observed values, as Prometheus keeps one.

    Attributes:
        bounds: the buckets' upper bounds, ascending (the last is +inf).
        counts: how many observations were at or below each bound (cumulative).
        total: the sum of every observation.
        count: how many observations there were.
    """

    bounds: tuple[float, ...]
    counts: tuple[int, ...]
    total: float
    count: int


class _Histogram:
    """The runtime's own histogram: observed in the trio thread, read as a snapshot."""

    __slots__ = ("_bounds", "_counts", "_total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._bounds = (*bounds, math.inf)
        self._counts = [0] * len(self._bounds)
        self._total = 0.0

    def observe(self, value: float) -> None:
        self._counts[bisect.bisect_left(self._bounds, value)] += 1
        self._total += value

    def snapshot(self) -> Histogram:
        return Histogram(self._bounds, tuple(itertools.accumulate(self._counts)), self._total,
                         sum(self._counts))


# Seconds: from a millisecond (one fsync pair) to a maintenance job's minutes.
_SECONDS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                   5.0, 10.0, 30.0, 60.0, 300.0, 1800.0)
_BATCH_WRITES: Final = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000)


@dataclasses.dataclass(frozen=True, slots=True)
class ManagerStatistics:
    """A snapshot of a running job manager.

    Attributes:
        by_status: how many stored jobs are in each status.
        by_type: how many stored jobs there are of each type.
        in_flight: attempts handed to actors and not yet finished.
        max_concurrent: the most attempts allowed in flight.
        commits: write transactions committed since start.
        state_changes: job records written since start.
        actor_restarts: executor actors restarted after a crash or a timeout.
        attempts: attempts recorded since start, by job type and how they ended
            (``"completed"``, ``"failed"``, ``"retry"``, ``"skipped"``, ``"cancelled"``).
        attempt_seconds: how long attempts ran, start to result.
        start_latency_seconds: from a job's creation to its first attempt's start.
        commit_seconds: how long each group commit took (fsync included).
        commit_writes: job records written by each group commit.
    """

    by_status: Mapping[JobStatus, int]
    by_type: Mapping[JobType, int]
    in_flight: int
    max_concurrent: int
    commits: int
    state_changes: int
    actor_restarts: int
    attempts: Mapping[tuple[JobType, str], int] = dataclasses.field(default_factory=dict)
    attempt_seconds: Histogram | None = None
    start_latency_seconds: Histogram | None = None
    commit_seconds: Histogram | None = None
    commit_writes: Histogram | None = None


class _Call:
    """A request from a trio task that waits for the loop's answer.

    The waiting task parks itself with ``wait_task_rescheduled`` and the loop reschedules it:
    a trio.Event (and its parking lot) per call cost more than the call's own work in the
    loop. A caller cancelled while waiting leaves; its answer is then dropped.
    """

    __slots__ = ("done", "error", "result", "task")

    def __init__(self) -> None:
        self.done = False
        self.task: trio.lowlevel.Task | None = None
        self.result: Any = None
        self.error: BaseException | None = None

    def answer(self, result: Any = None, error: BaseException | None = None) -> None:
        if self.done:
            return
        self.result, self.error, self.done = result, error, True
        task, self.task = self.task, None
        if task is not None:
            trio.lowlevel.reschedule(task)

    async def wait(self) -> Any:
        if not self.done:
            self.task = trio.lowlevel.current_task()
            await trio.lowlevel.wait_task_rescheduled(self._abort)
        else:
            await trio.lowlevel.checkpoint()
        if self.error is not None:
            raise self.error
        return self.result

    def _abort(self, _: Any) -> trio.lowlevel.Abort:
        self.task = None  # the answer, when it comes, wakes nobody
        return trio.lowlevel.Abort.SUCCEEDED


# ---------------------------------------------------------------------- inbox messages
# Small frozen types, dispatched by type in _collect (pykka's messages.py does the same).


@dataclasses.dataclass(frozen=True, slots=True)
class _Create:
    """Create checked jobs, all or none, and answer ``call`` with their ids."""

    call: _Call
    jobs: list[NewJob]


@dataclasses.dataclass(frozen=True, slots=True)
class _Cancel:
    """Cancel a job and answer ``call`` with it."""

    call: _Call
    job_id: JobId


@dataclasses.dataclass(frozen=True, slots=True)
class _Results:
    """Attempt results posted by actor threads."""

    results: list[AttemptResult | AttemptStarted]


@dataclasses.dataclass(frozen=True, slots=True)
class _ProgressReport:
    """A running job's progress, checked in its actor thread."""

    job_id: str
    progress: Progress


@dataclasses.dataclass(frozen=True, slots=True)
class _CancelVerdict:
    """An executor's answer to a cancel: ``error`` None means accepted."""

    job_id: str
    error: KalamError | None
    call: _Call | None


@dataclasses.dataclass(frozen=True, slots=True)
class _Crash:
    """An executor actor crashed."""

    child_id: str
    reason: object


@dataclasses.dataclass(frozen=True, slots=True)
class _Wake:
    """Look for work: admit New jobs, start due and queued ones, answer cancel requests."""


@dataclasses.dataclass(frozen=True, slots=True)
class _Timeouts:
    """An attempt deadline has passed."""


@dataclasses.dataclass(frozen=True, slots=True)
class _ScheduleDue:
    """A schedule has a slot due."""


_WAKE: Final = _Wake()
_TIMEOUTS: Final = _Timeouts()
_SCHEDULE_DUE: Final = _ScheduleDue()
_Message = (_Create | _Cancel | _Results | _ProgressReport | _CancelVerdict | _Crash | _Wake
            | _Timeouts | _ScheduleDue)


@dataclasses.dataclass(slots=True, eq=False)
class _Slot:
    """One executor actor under the supervisor, and the attempts it holds."""

    child_id: str
    executor: JobExecutor
    capacity: int
    handle: Any = None
    held: set[str] = dataclasses.field(default_factory=set)
    # Attempts committed Running while the actor was down (crashed, restarting): they are
    # told to the new actor once the supervisor has restarted it.
    pending: list[Attempt] = dataclasses.field(default_factory=list)
    replacing: bool = False

    @property
    def free(self) -> int:
        if self.replacing or self.handle is None or self.handle.actor_ref is None:
            return 0
        return self.capacity - len(self.held)


@dataclasses.dataclass(slots=True, eq=False)
class _InFlight:
    job_id: str
    token: int
    slot: _Slot
    ctx: JobContext
    cancel_event: CancelFlag
    timeout_s: float | None
    gate: StartGate | None
    deadline: float | None = None
    sent: bool = False
    # The actor said it starts the attempt (until then the job is only claimed: Queued).
    started: bool = False
    started_us: int = 0
    created_us: int = 0
    cancel_accepted: bool = False
    cancel_persisted: bool = False


@dataclasses.dataclass(slots=True)
class _Batch:
    """What one write transaction is asked to do; built by the loop from inbox messages."""

    now: int
    creates: list[_Create] = dataclasses.field(default_factory=list)
    cancels: list[tuple[_Call, JobId]] = dataclasses.field(default_factory=list)
    starts: list[_InFlight] = dataclasses.field(default_factory=list)
    results: list[tuple[_InFlight, JobDecision, bool]] = dataclasses.field(default_factory=list)
    progress: dict[str, Progress] = dataclasses.field(default_factory=dict)
    cancel_marks: list[str] = dataclasses.field(default_factory=list)
    cancel_refusals: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    admit: bool = False
    scheduled: list[tuple[ScheduledJob, NewJob]] = dataclasses.field(default_factory=list)
    capacity: dict[str, int] = dataclasses.field(default_factory=dict)
    free: int = 0
    claimed: frozenset[str] = frozenset()


@dataclasses.dataclass(slots=True)
class _Applied:
    """What a committed batch did, for the loop to act on after the commit."""

    answers: list[tuple[_Call, Any, BaseException | None]] = dataclasses.field(
        default_factory=list
    )
    started: list[verbs.Started] = dataclasses.field(default_factory=list)
    # Attempts whose Running state this commit wrote (True) or refused (False).
    starts: list[tuple[_InFlight, bool]] = dataclasses.field(default_factory=list)
    cancelled: list[str] = dataclasses.field(default_factory=list)
    changed: list[str] = dataclasses.field(default_factory=list)
    cancel_requests: list[str] = dataclasses.field(default_factory=list)
    again: bool = False  # more admitting or dispatching to do: tick once more
    next_due: int | None = None
    writes: int = 0


class JobManager:
    """The runtime's API: create, get, list, cancel and wait for jobs.

    Made by :func:`open_job_manager` (or :func:`start_job_manager` for blocking code); it has
    no public constructor.
    """

    def __init__(
        self,
        store: JobStore,
        executors: Sequence[JobExecutor],
        *,
        storage: Any,
        max_concurrent: int,
        retry_policy: RetryPolicy,
        durable: bool,
        poll_interval_s: float,
        shutdown_timeout_s: float,
        actor_intensity: Intensity,
        schedules: Sequence[Schedule],
        token: object,
    ) -> None:
        if token is not _TOKEN:
            raise TypeError("use open_job_manager() or start_job_manager() to make a JobManager")
        self.store = store
        self.storage = storage
        self.max_concurrent = max_concurrent
        self.retry_policy = retry_policy
        self.durable = durable
        self.poll_interval_s = poll_interval_s
        self.shutdown_timeout_s = shutdown_timeout_s
        self._actor_intensity = actor_intensity
        self._schedules = list(schedules)
        self._executors: dict[JobType, JobExecutor] = {}
        for ex in executors:
            if ex.job_type in self._executors:
                raise InvalidParams(f"two executors registered for job type {ex.job_type.value}")
            self._executors[ex.job_type] = ex
        send, receive = trio.open_memory_channel[_Message](math.inf)
        self._inbox_send = send
        self._inbox = receive
        self._slots: dict[JobType, list[_Slot]] = {}
        self._slots_by_prefix: dict[str, list[_Slot]] = {}  # the hot path hashes no enums
        self._slot_by_child: dict[str, _Slot] = {}
        self._inflight: dict[str, _InFlight] = {}
        self._deadlines: list[tuple[float, int, str]] = []
        self._waiters: dict[str, list[trio.Event]] = {}
        self._results: list[AttemptResult | AttemptStarted] = []
        self._results_lock = threading.Lock()
        self._results_wake_pending = False
        self._tokens = 0
        self._accepting = False
        self._dispatching = True
        self._loop_alive = True
        self._stopped = False
        self._timer_kick = trio.Event()
        self._idle = trio.Event()
        self._next_due_us: int | None = None
        self._trio_token: trio.lowlevel.TrioToken | None = None
        self._wall_base_us = 0
        self._trio_base = 0.0
        self._clock: trio.abc.Clock = trio.lowlevel.current_clock()
        self._writer = trio.CapacityLimiter(1)
        self._commits = 0
        self._state_changes = 0
        self._actor_restarts = 0
        self._attempts: dict[tuple[JobType, str], int] = {}
        self._attempt_seconds = _Histogram(_SECONDS)
        self._start_latency = _Histogram(_SECONDS)
        self._commit_seconds = _Histogram(_SECONDS)
        self._commit_writes = _Histogram(_BATCH_WRITES)
        self._supervisor: Supervisor | None = None
        self._nursery: trio.Nursery | None = None

    # ------------------------------------------------------------------ public API

    async def create_job(
        self,
        job_type: JobType | str,
        params: Any,
        *,
        idempotency_key: str | None = None,
        max_retries: int = 3,
        timeout_s: float | None = None,
    ) -> JobId:
        """Create a job and return its id once it is durably stored.

        Args:
            job_type: a JobType, or its name or prefix.
            params: a dict or JSON object text; checked by the executor's ``validate_params``.
            idempotency_key: at most one active job may hold it (case-sensitive, ≤ 256 chars).
            max_retries: retries allowed after the first attempt (default 3).
            timeout_s: fail an attempt that runs longer than this (overrides the executor's).

        Raises:
            UnknownJobType: unknown type, or no executor registered for it.
            InvalidParams: bad JSON, not an object, or rejected by the executor.
            IdempotentConflict: an active job holds the key; it names that job.
            RuntimeStopped: the manager is shutting down.
        """
        # The single-job path of create_jobs, without its lists: engines submit one at a time.
        self._check_open()
        jt = JobType.parse(job_type)
        one = prepare_job(jt, params, idempotency_key=idempotency_key, max_retries=max_retries,
                          timeout_s=timeout_s, executor=self._executors.get(jt),
                          require_executor=True)
        call = _Call()
        self._inbox_send.send_nowait(_Create(call, [one]))
        ids: list[JobId] = await call.wait()
        return ids[0]

    async def create_jobs(
        self,
        jobs: Iterable[tuple[JobType | str, Any]],
        *,
        idempotency_keys: Sequence[str | None] | None = None,
        max_retries: int = 3,
        timeout_s: float | None = None,
        atomic: bool = True,
    ) -> list[JobId]:
        """Create many jobs in one write transaction (bulk submission).

        Every job is validated first; with ``atomic`` (the default) one conflict or invalid job
        rejects the whole call and nothing is written.

        Raises:
            The same errors as :meth:`create_job`, for the first job that fails.
        """
        self._check_open()
        specs = list(jobs)
        keys = list(idempotency_keys) if idempotency_keys is not None else [None] * len(specs)
        if len(keys) != len(specs):
            raise InvalidParams("idempotency_keys must have one entry per job")
        # The per-call options are checked once, by checking them on a job with no params.
        template = prepare_job(JobType.FLUSH, {}, max_retries=max_retries, timeout_s=timeout_s)
        retries, timeout = template.max_retries, template.timeout_s
        prepared = []
        last_type: object = None
        jt = JobType.FLUSH
        executor: JobExecutor | None = None
        validates = False
        for (job_type, params), key in zip(specs, keys, strict=True):
            if job_type is not last_type:  # bulk submissions mostly repeat one type
                jt = JobType.parse(job_type)
                executor = self._executors.get(jt)
                validates = validates_params(executor)
                last_type = job_type
            prepared.append(prepare_checked(jt, executor, validates, params, key, retries,
                                            timeout))
        call = _Call()
        self._inbox_send.send_nowait(_Create(call, prepared))
        result: list[JobId] = await call.wait()
        return result

    async def get_job(self, job_id: str) -> Job | None:
        """The job with this id, or None (a direct read of the store).

        Raises:
            InvalidJobId: for a malformed id.
        """
        return self.store.get_job(job_id)

    async def list_jobs(self, job_filter: JobFilter | None = None) -> list[Job]:
        """Jobs matching ``job_filter``, oldest first unless it says newest first."""
        job_filter = job_filter or JobFilter()
        if job_filter.limit is not None and job_filter.limit <= 1000:
            return self.store.list_jobs(job_filter)
        return await trio.to_thread.run_sync(self.store.list_jobs, job_filter)

    def system_jobs(self, job_filter: JobFilter | None = None) -> list[JobRow]:
        """The ``system.jobs`` view: rows with the columns of ``SYSTEM_JOBS_COLUMNS``."""
        return list(self.store.system_jobs(job_filter))

    async def cancel_job(self, job_id: str) -> Job:
        """Cancel a job and return it as it stands after the cancel.

        New, Queued and Retrying jobs end Cancelled at once. A Running job's executor is asked
        (``cancel``, off the actor thread); if it agrees, ``ctx.cancelled`` turns true and the
        job ends Cancelled when ``execute`` returns.

        Raises:
            JobNotFound: no such job.
            InvalidTransition: the job is already terminal.
            CancelNotAllowed: the executor refused, or its type cannot be cancelled.
        """
        self._check_open(allow_stopping=True)
        call = _Call()
        self._inbox_send.send_nowait(_Cancel(call, JobId.parse(job_id)))
        result: Job = await call.wait()
        return result

    async def wait_job(self, job_id: str, *, timeout_s: float | None = None) -> Job:
        """Wait until the job is terminal and return it.

        Raises:
            JobNotFound: no such job.
            TimeoutError: ``timeout_s`` passed first.
        """
        with trio.fail_after(math.inf if timeout_s is None else timeout_s):
            async with contextlib.aclosing(self.watch_job(job_id)) as changes:
                async for job in changes:
                    if job.status.is_terminal:
                        return job
        raise AssertionError("watch_job ends only after a terminal status")  # pragma: no cover

    async def watch_job(self, job_id: str) -> AsyncGenerator[Job, None]:
        """Yield the job now and after every committed change (status, retry, progress),
        ending after it reaches a terminal status. Close it with ``contextlib.aclosing`` if you
        stop early.

        Raises:
            JobNotFound: no such job.
        """
        job_id = JobId.parse(job_id)
        last = None
        while True:
            job = self.store.get_job(job_id)
            if job is None:
                raise JobNotFound(job_id)
            seen = (job.status, job.retry_count, job.updated_at, job.progress)
            if seen != last:
                last = seen
                yield job
            if job.status.is_terminal:
                return
            event = trio.Event()
            self._waiters.setdefault(job_id, []).append(event)
            # Another process may change a job the loop never touches: look again each poll.
            with trio.move_on_after(max(self.poll_interval_s, 0.01)):
                await event.wait()

    def statistics(self) -> ManagerStatistics:
        """Counts by status and type (kept by the store), and the runtime's own figures."""
        counts = self.store.counts()
        by_status: dict[JobStatus, int] = {}
        by_type: dict[JobType, int] = {}
        for (status, job_type), n in counts.items():
            by_status[status] = by_status.get(status, 0) + n
            by_type[job_type] = by_type.get(job_type, 0) + n
        return ManagerStatistics(
            by_status=by_status,
            by_type=by_type,
            in_flight=len(self._inflight),
            max_concurrent=self.max_concurrent,
            commits=self._commits,
            state_changes=self._state_changes,
            actor_restarts=self._actor_restarts,
            attempts=dict(self._attempts),
            attempt_seconds=self._attempt_seconds.snapshot(),
            start_latency_seconds=self._start_latency.snapshot(),
            commit_seconds=self._commit_seconds.snapshot(),
            commit_writes=self._commit_writes.snapshot(),
        )

    @property
    def executors(self) -> Mapping[JobType, JobExecutor]:
        """The registered executors by type."""
        return dict(self._executors)

    # ------------------------------------------------------------------ clock

    def _now_us(self) -> int:
        """Wall time that follows trio's clock, so virtual time in tests moves it too."""
        return self._wall_base_us + round((trio.current_time() - self._trio_base) * 1_000_000)

    def _now_us_any_thread(self) -> int:
        """:meth:`_now_us` for actor threads (trio's clocks are safe to read from any thread):
        an attempt's start time, on the clock every other time of the job is on."""
        return self._wall_base_us + round(
            (self._clock.current_time() - self._trio_base) * 1_000_000)

    def _trio_time_of(self, wall_us: int) -> float:
        return self._trio_base + (wall_us - self._wall_base_us) / 1_000_000

    # ------------------------------------------------------------------ lifecycle

    def _check_open(self, *, allow_stopping: bool = False) -> None:
        if self._stopped or not (self._accepting or allow_stopping):
            raise RuntimeStopped("the job manager is not accepting work (stopping or stopped)")

    async def _run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self._trio_token = trio.lowlevel.current_trio_token()
        self._wall_base_us = int(_wall_now_us())
        self._trio_base = trio.current_time()
        await trio.to_thread.run_sync(self._recover)
        async with Supervisor.open(
            strategy=ONE_FOR_ONE,
            intensity=self._actor_intensity,
            on_event=self._on_supervisor_event,
            name="executor-actors",
        ) as sup:
            self._supervisor = sup
            await self._start_actors(sup)
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._loop)
                nursery.start_soon(self._timer)
                self._accepting = True
                self._inbox_send.send_nowait(_WAKE)
                task_status.started()
                await trio.sleep_forever()

    async def _start_actors(self, sup: Supervisor) -> None:
        post = self._post_from_thread
        for job_type, executor in self._executors.items():
            slots = []
            for n in range(max(1, int(getattr(executor, "actors", 1)))):
                child_id = f"{job_type.prefix}#{n}"
                slot = _Slot(child_id, executor, max(1, int(executor.prefetch)))
                slot.handle = await sup.start_child(
                    ChildSpec(
                        id=child_id,
                        start=actor_child(ExecutorActor, executor, post, self._now_us_any_thread),
                        restart=PERMANENT,
                        shutdown_s=1.0,
                    )
                )
                slots.append(slot)
                self._slot_by_child[child_id] = slot
            self._slots[job_type] = slots
            self._slots_by_prefix[job_type.prefix] = slots

    def _post_from_thread(self, result: AttemptResult | AttemptStarted) -> None:
        """Called in actor threads: hand the result to trio without waiting for it.

        Results wait in a list; only the first one since the trio thread last took them asks
        for a wake-up (run_sync_soon writes to trio's wake-up socket: a syscall and a thread
        switch per job otherwise). Nothing is held back: the pending wake-up takes them all.
        """
        token = self._trio_token
        if token is None:
            return
        with self._results_lock:
            self._results.append(result)
            if self._results_wake_pending:
                return
            self._results_wake_pending = True
        with contextlib.suppress(trio.RunFinishedError):
            token.run_sync_soon(self._take_posted_results)

    def _take_posted_results(self) -> None:
        """In the trio thread: move every posted result into the inbox as one message."""
        with self._results_lock:
            results, self._results = self._results, []
            self._results_wake_pending = False
        self._inbox_send.send_nowait(_Results(results))

    def _on_supervisor_event(self, event: SupervisorEvent) -> None:
        if event.kind is EventKind.CRASHED and event.child_id in self._slot_by_child:
            self._inbox_send.send_nowait(_Crash(event.child_id, event.reason))
        elif event.kind is EventKind.RESTARTED and event.child_id in self._slot_by_child:
            self._actor_restarts += 1
            self._send_pending(self._slot_by_child[event.child_id])
            self._inbox_send.send_nowait(_WAKE)

    async def _shutdown(self) -> None:
        """Stop taking work; let running jobs finish up to the shutdown timeout; cancel the
        cancellable rest; leave what remains for recovery at the next start."""
        self._accepting = False
        self._dispatching = False
        # Attempts handed ahead but not started go back: they stay Queued for the next start.
        for flight in self._inflight.values():
            if not flight.started:
                self._give_back(flight)
        with trio.move_on_after(self.shutdown_timeout_s):
            while self._inflight and self._loop_alive:
                self._idle = trio.Event()
                await self._idle.wait()
        if self._inflight:
            for flight in list(self._inflight.values()):
                if flight.slot.executor.cancellable:
                    flight.cancel_accepted = True
                    flight.cancel_event.set()
            with trio.move_on_after(min(1.0, self.shutdown_timeout_s)):
                while self._inflight and self._loop_alive:
                    self._idle = trio.Event()
                    await self._idle.wait()
        for flight in self._inflight.values():
            if flight.started:
                logger.warning(f"[{flight.job_id}] still running at shutdown; it will be "
                               "recovered at next start")
            else:
                self._give_back(flight)
        self._stopped = True

    # ------------------------------------------------------------------ recovery

    def _recover(self) -> None:
        """Before serving: no job stays Running; New jobs are admitted. In bounded batches."""
        now = _wall_now_us()
        # Looked up once per type, not once per job: recovery may walk many thousands.
        rerun = {t.prefix: ex.rerun_on_recovery for t, ex in self._executors.items()}
        done = verbs.Recovered()
        write = self.store.write
        while write(lambda txn: verbs.recover_running(txn, rerun, now, RECOVERY_BATCH, done),
                    sync=self.durable) == RECOVERY_BATCH:
            pass
        while write(lambda txn: verbs.admit_new(txn, now, ADMIT_BATCH), sync=self.durable):
            pass
        # Requests for jobs that are no longer running are stale (recovery ended the rest).
        write(verbs.clear_cancel_requests, sync=self.durable)
        if done.failed or done.retried or done.cancelled:
            logger.info(
                f"recovery: {done.failed} running jobs failed, {done.retried} retried, "
                f"{done.cancelled} cancelled"
            )

    # ------------------------------------------------------------------ the loop

    async def _loop(self) -> None:
        try:
            await self._serve()
        finally:
            self._loop_alive = False
            # No commit will open a gate now: nothing waiting at one may start.
            for flight in self._inflight.values():
                if not flight.started:
                    self._give_back(flight)
            self._idle.set()

    async def _serve(self) -> None:
        inbox = self._inbox
        while True:
            first = await inbox.receive()
            messages = [first]
            with contextlib.suppress(trio.WouldBlock):
                while len(messages) < MAX_BATCH:
                    messages.append(inbox.receive_nowait())
            batch = self._collect(messages)
            if batch is None:
                continue
            try:
                began = time.perf_counter()
                if self.durable:
                    applied = await trio.to_thread.run_sync(
                        self._commit, batch, limiter=self._writer
                    )
                else:
                    applied = self._commit(batch)
                self._commit_seconds.observe(time.perf_counter() - began)
            except StoreError as exc:
                self._fail_batch(batch, exc)
                raise
            self._after_commit(batch, applied)

    def _collect(self, messages: list[_Message]) -> _Batch | None:
        """Sort inbox messages into one batch; runs in the trio thread."""
        batch = _Batch(now=self._now_us())
        for message in messages:
            match message:
                case _Results():
                    for result in message.results:
                        if type(result) is AttemptStarted:
                            self._take_start(batch, result)
                        else:
                            self._take_result(batch, result)  # type: ignore[arg-type]
                case _Create():
                    if self._accepting:
                        batch.creates.append(message)
                    else:
                        message.call.answer(error=RuntimeStopped("the job manager is stopping"))
                case _ProgressReport():
                    if message.job_id in self._inflight:
                        batch.progress[message.job_id] = message.progress
                case _Cancel():
                    self._take_cancel(batch, message.call, message.job_id)
                case _CancelVerdict():
                    self._take_cancel_verdict(batch, message)
                case _Crash():
                    self._take_crash(batch, message.child_id, message.reason)
                case _Timeouts():
                    self._take_timeouts(batch)
                case _Wake():
                    batch.admit = True
                case _ScheduleDue():
                    self._take_schedules(batch)
        if self._dispatching:
            self._plan_dispatch(batch)
        if not (
            batch.creates or batch.cancels or batch.starts or batch.results or batch.progress
            or batch.admit or batch.cancel_marks or batch.cancel_refusals or batch.free
            or batch.scheduled
        ):
            return None
        return batch

    def _take_schedules(self, batch: _Batch) -> None:
        if not self._accepting:
            return
        for schedule in self._schedules:
            try:
                planned = schedule.plan(batch.now, self.store.last_slot)
            except Exception:
                logger.exception(f"schedule {schedule!r} failed to plan; it is skipped this time")
                continue
            for job in planned:
                try:
                    prepared = prepare_job(
                        job.job_type,
                        job.params,
                        idempotency_key=job.idempotency_key,
                        executor=self._executors.get(job.job_type),
                        require_executor=True,
                    )
                except KalamError as exc:
                    logger.error(f"schedule {job.name}: job not created: {exc}")
                    continue
                batch.scheduled.append((job, prepared))

    def _take_start(self, batch: _Batch, started: AttemptStarted) -> None:
        flight = self._inflight.get(started.job_id)
        if flight is None or flight.token != started.token:
            return  # given back (a stuck or crashed actor): the job stays Queued
        if flight.gate is not None and flight.gate.is_open:
            return  # given back or cancelled before its gate opened: it will not run
        flight.started = True
        flight.started_us = started.started_us
        if flight.ctx.attempt == 1:
            self._start_latency.observe(
                max(0, started.started_us - flight.created_us) / 1_000_000)
        batch.starts.append(flight)
        timeout = flight.timeout_s
        if timeout is not None:
            flight.deadline = trio.current_time() + timeout
            heapq.heappush(self._deadlines, (flight.deadline, flight.token, flight.job_id))
            self._timer_kick.set()

    def _take_result(self, batch: _Batch, result: AttemptResult) -> None:
        flight = self._inflight.get(result.job_id)
        if flight is None or flight.token != result.token:
            return  # a late answer from an actor that was replaced after a timeout
        self._release(flight)
        # Keep a progress report that came in with the result: _apply writes it first, so
        # the finished job shows how far it got (e.g. 800/800, not the report before last).
        batch.results.append((flight, result.decision, result.raised))

    @staticmethod
    def _give_back(flight: _InFlight) -> None:
        """An attempt that never started goes back to the queue: the actor must not start it
        later (its job is still Queued or Retrying in the store, ready for another claim)."""
        flight.cancel_event.set()
        if flight.gate is not None and not flight.gate.is_open:
            flight.gate.open(refused=True)

    def _release(self, flight: _InFlight) -> None:
        del self._inflight[flight.job_id]
        flight.slot.held.discard(flight.job_id)
        if not self._inflight:
            self._idle.set()

    def _take_crash(self, batch: _Batch, child_id: str, reason: object) -> None:
        slot = self._slot_by_child[child_id]
        for job_id in list(slot.held):
            flight = self._inflight[job_id]
            if not flight.sent:
                continue  # never reached the dead actor: it goes to the new one
            self._release(flight)
            if flight.started:
                text = f"executor actor {child_id} crashed: {reason!r}"
                batch.results.append(
                    (flight, JobDecision.retry(text, exception_trace=text), True))
            else:
                self._give_back(flight)  # it never started: it stays Queued

    def _take_timeouts(self, batch: _Batch) -> None:
        now = trio.current_time()
        while self._deadlines and self._deadlines[0][0] <= now:
            _, token, job_id = heapq.heappop(self._deadlines)
            flight = self._inflight.get(job_id)
            if flight is None or flight.token != token:
                continue
            text = f"timed out: the attempt ran past its {flight.timeout_s:g} s limit"
            logger.warning(f"[{job_id}] {text}; replacing actor {flight.slot.child_id}")
            self._abandon_slot(batch, flight.slot, text)

    def _abandon_slot(self, batch: _Batch, slot: _Slot, text: str) -> None:
        """Fail over every attempt an actor holds (the stuck one and any waiting behind it in
        its mailbox) and replace the actor without waiting for it."""
        slot.pending.clear()
        for job_id in list(slot.held):
            flight = self._inflight[job_id]
            # If the old thread ever wakes, it must not start what was queued behind.
            flight.cancel_event.set()
            self._release(flight)
            if flight.started:
                batch.results.append(
                    (flight, JobDecision.retry(text, exception_trace=text), True))
            else:
                self._give_back(flight)  # it never started: it stays Queued
        slot.replacing = True
        assert self._nursery is not None
        self._nursery.start_soon(self._replace_actor, slot)

    async def _replace_actor(self, slot: _Slot) -> None:
        assert self._supervisor is not None
        try:
            await self._supervisor.restart_child(
                slot.child_id, reason=TimeoutError("attempt timed out"), abandon_old=True
            )
        finally:
            slot.replacing = False
            self._inbox_send.send_nowait(_WAKE)

    def _take_cancel(self, batch: _Batch, call: _Call, job_id: JobId) -> None:
        flight = self._inflight.get(job_id)
        if flight is None or not flight.started:
            # Not started (at most claimed): cancelled as a Queued job; an actor holding it
            # is told not to start it once the cancel is committed.
            batch.cancels.append((call, job_id))
            return
        if flight.cancel_accepted:
            call.answer(self.store.get_job(job_id))
            return
        assert self._nursery is not None
        self._nursery.start_soon(self._ask_executor_to_cancel, flight, call)

    async def _ask_executor_to_cancel(self, flight: _InFlight, call: _Call | None) -> None:
        executor = flight.slot.executor
        job = self.store.get_job(flight.job_id)
        error: KalamError | None = None
        if job is None:
            error = JobNotFound(flight.job_id)
        elif not executor.cancellable:
            error = CancelNotAllowed(flight.job_id, f"{executor.name} jobs cannot be cancelled")
        else:
            try:
                # Off the actor thread (which is busy running the job) and off the trio thread.
                await trio.to_thread.run_sync(executor.cancel, flight.ctx, job)
            except CancelNotAllowed as exc:
                # Name the job being cancelled, whatever id the executor put in its refusal.
                error = CancelNotAllowed(flight.job_id, exc.reason)
            except (KeyboardInterrupt, trio.Cancelled):
                raise
            except BaseException as exc:
                # cancel() runs on a worker thread of ours, not in the actor: whatever escapes
                # it, SystemExit included, is a refusal, never a reason to stop the runtime.
                error = CancelNotAllowed(
                    flight.job_id, f"{executor.name}.cancel raised {type(exc).__name__}: {exc}"
                )
        if error is None:
            flight.cancel_accepted = True
            flight.cancel_event.set()
            logger.info(f"[{flight.job_id}] cancel accepted; stopping at its next safe point")
        self._inbox_send.send_nowait(_CancelVerdict(flight.job_id, error, call))

    def _take_cancel_verdict(self, batch: _Batch, verdict: _CancelVerdict) -> None:
        job_id, error, call = verdict.job_id, verdict.error, verdict.call
        if error is None:
            batch.cancel_marks.append(job_id)
        else:
            batch.cancel_refusals.append((job_id, str(getattr(error, "reason", error))))
        if call is not None:
            if error is not None:
                call.answer(error=error)
            else:
                call.answer(self.store.get_job(job_id))

    def _plan_dispatch(self, batch: _Batch) -> None:
        free = self.max_concurrent - len(self._inflight)
        if free <= 0:
            return
        capacity = {}
        for job_type, slots in self._slots.items():
            room = sum(s.free for s in slots)
            if room > 0:
                capacity[job_type.prefix] = room
        if capacity:
            batch.capacity = capacity
            batch.free = free
            batch.claimed = frozenset(
                job_id for job_id, flight in self._inflight.items() if not flight.started)

    # ------------------------------------------------------------------ the transaction

    def _commit(self, batch: _Batch) -> _Applied:
        """Apply the batch in one write transaction and commit it (runs in the writer)."""
        # Durable: the store's environment syncs every commit (data pages, then the meta
        # page) before the commit returns, so nothing is acknowledged before it is on disk.
        # (Should this process have opened the path non-durably first, sync= still flushes.)
        return self.store.write(lambda txn: self._apply(txn, batch), sync=self.durable)

    def _apply(self, txn: StoreTxn, batch: _Batch) -> _Applied:
        out = _Applied()
        now = batch.now
        for create in batch.creates:
            out.answers.append((create.call, *self._apply_create(txn, create.jobs, now, out)))
        for flight in batch.starts:
            ok = verbs.start(txn, flight.job_id, flight.started_us)
            out.starts.append((flight, ok))
            if ok:
                out.changed.append(flight.job_id)
                out.writes += 1
        for job_id, progress in batch.progress.items():
            if verbs.set_progress(txn, job_id, progress):
                out.changed.append(job_id)
                out.writes += 1
        for flight, decision, _ in batch.results:
            if verbs.finish(txn, flight.job_id, decision, now, cancelled=flight.cancel_accepted,
                            retry_policy=self.retry_policy):
                out.changed.append(flight.job_id)
                out.writes += 1
        for job_id in batch.cancel_marks:
            verbs.accept_cancel(txn, job_id)
        for job_id, reason in batch.cancel_refusals:
            verbs.refuse_cancel(txn, job_id, reason)
        for call, job_id in batch.cancels:
            out.answers.append((call, *self._apply_cancel(txn, job_id, now, out)))
        for job, one in batch.scheduled:
            self._apply_scheduled(txn, job, one, now, out)
        if batch.admit:
            out.again = verbs.admit_new(txn, now, ADMIT_BATCH)
            out.cancel_requests = verbs.take_cancel_requests(txn, 1000)
        if batch.free:
            dispatched = verbs.claim(txn, batch.capacity, batch.free, now, batch.claimed)
            out.started = dispatched.started
            out.again = out.again or dispatched.again
        # Due jobs left waiting for a free actor are picked by the next batch that has room;
        # the timer only needs the first one that is not yet due.
        out.next_due = txn.next_due_after(now)
        return out

    @staticmethod
    def _apply_create(
        txn: StoreTxn, jobs: list[NewJob], now: int, out: _Applied
    ) -> tuple[Any, BaseException | None]:
        try:
            ids = verbs.create_jobs(txn, jobs, now)
        except KalamError as exc:  # refused before anything was written
            return None, exc
        out.writes += len(ids)
        return ids, None

    def _apply_scheduled(
        self, txn: StoreTxn, job: ScheduledJob, prepared: NewJob, now: int, out: _Applied
    ) -> None:
        try:
            job_id = verbs.create_scheduled(txn, job.name, job.slot, prepared, now)
        except IdempotentConflict as exc:
            logger.debug(f"schedule {job.name}: {exc}; slot {job.slot} skipped")
            return
        if job_id is not None:
            out.writes += 1
            logger.info(f"[{job_id}] created by schedule {job.name} (slot {job.slot})")

    def _apply_cancel(
        self, txn: StoreTxn, job_id: JobId, now: int, out: _Applied
    ) -> tuple[Any, BaseException | None]:
        executor = self._executors.get(job_id.job_type)
        try:
            job = verbs.cancel(txn, job_id, now,
                               cancellable=executor is None or executor.cancellable)
        except KalamError as exc:
            return None, exc
        if job is None:
            # Running but not held here: it was started in this very batch. Ask again.
            return None, CancelNotAllowed(job_id, "the job was starting; try again")
        out.cancelled.append(job_id)
        out.changed.append(job_id)
        out.writes += 1
        return job, None

    # ------------------------------------------------------------------ after the commit

    def _fail_batch(self, batch: _Batch, exc: StoreError) -> None:
        logger.error(f"job store write failed; the runtime stops taking work: {exc}")
        self._accepting = False
        self._dispatching = False
        for create in batch.creates:
            create.call.answer(error=exc)
        for call, _ in batch.cancels:
            call.answer(error=exc)

    def _after_commit(self, batch: _Batch, applied: _Applied) -> None:
        self._commits += 1
        self._state_changes += applied.writes
        self._commit_writes.observe(applied.writes)
        for flight, ok in applied.starts:
            if flight.gate is not None:
                # Running is on disk (or the job was cancelled meanwhile): let it go.
                flight.gate.open(refused=not ok)
        for job_id in applied.cancelled:
            claimed = self._inflight.get(job_id)
            if claimed is not None and not claimed.started:
                self._give_back(claimed)
        for call, result, error in applied.answers:
            call.answer(result, error)
        if self._waiters:
            for job_id in applied.changed:
                for event in self._waiters.pop(job_id, ()):
                    event.set()
        for flight, decision, _ in batch.results:
            self._log_result(flight.job_id, decision, flight.cancel_accepted)
            self._count_attempt(flight, decision, batch.now)
        touched: dict[int, _Slot] = {}
        for started in applied.started:
            slot = self._start_attempt(started)
            touched[id(slot)] = slot
        for slot in touched.values():
            # One message per actor per commit: pykka's mailbox is paid once, not per job.
            self._send_pending(slot)
        for job_id in applied.cancel_requests:
            self._cancel_requested_elsewhere(job_id)
        if applied.again:
            self._inbox_send.send_nowait(_WAKE)
        if applied.next_due != self._next_due_us or self._deadlines:
            self._next_due_us = applied.next_due
            self._timer_kick.set()

    def _count_attempt(self, flight: _InFlight, decision: JobDecision, now: int) -> None:
        if not flight.started:
            return  # given back or cancelled before it started: no attempt ran
        outcome = "cancelled" if flight.cancel_accepted else decision.outcome.value
        key = (flight.ctx.job_type, outcome)
        self._attempts[key] = self._attempts.get(key, 0) + 1
        self._attempt_seconds.observe(max(0, now - flight.started_us) / 1_000_000)

    def _log_result(self, job_id: str, decision: JobDecision, cancelled: bool) -> None:
        if cancelled:
            logger.info(f"[{job_id}] Cancelled by user")
        elif decision.outcome is Outcome.RETRY:
            logger.warning(f"[{job_id}] attempt failed: {decision.message}")
        elif decision.outcome is Outcome.FAILED:
            logger.error(f"[{job_id}] Failed: {decision.message}")
        else:
            logger.debug(f"[{job_id}] {decision.outcome.value}: {decision.message or ''}")

    def _start_attempt(self, started: verbs.Started) -> _Slot:
        job_id = started.job_id
        prefix = job_id[:2]
        slots = self._slots_by_prefix[prefix]
        slot = slots[0] if len(slots) == 1 else max(slots, key=_free)
        self._tokens += 1
        token = self._tokens
        cancel_event = CancelFlag()
        # The actor builds the Job from the record (and logs "Running"): that work runs beside
        # the next commit's fsync instead of in this loop.
        ctx = JobContext._for_attempt(
            job_id, started.job_type, started.params_text, started.attempt, self.storage,
            self._progress_from_thread, cancel_event,
        )
        timeout = started.timeout_s or slot.executor.timeout_s
        # An executor that is not safe to re-run starts only once Running is on disk.
        gate = None if slot.executor.rerun_on_recovery else StartGate()
        self._inflight[job_id] = _InFlight(
            job_id, token, slot, ctx, cancel_event, timeout, gate, created_us=started.created_us
        )
        slot.held.add(job_id)
        slot.pending.append(Attempt(ctx, started.record, token, gate))
        return slot

    def _send_pending(self, slot: _Slot) -> None:
        ref = slot.handle.actor_ref if slot.handle is not None else None
        if ref is None or slot.replacing:
            return  # the actor is down; its restart sends these
        live = []
        for attempt in slot.pending:
            flight = self._inflight.get(attempt.ctx.job_id)
            if flight is not None and flight.token == attempt.token:
                live.append((flight, attempt))
        if live:
            try:
                ref.tell(Attempts(tuple(attempt for _, attempt in live)))
            except pykka.ActorDeadError:
                # The actor's thread died and the supervisor has not restarted it yet: keep
                # them pending; the RESTARTED event sends them to the new actor.
                return
            for flight, _ in live:
                flight.sent = True
        slot.pending.clear()

    def _progress_from_thread(self, job_id: JobId, progress: Progress) -> None:
        token = self._trio_token
        if token is None:
            return
        with contextlib.suppress(trio.RunFinishedError):
            token.run_sync_soon(self._inbox_send.send_nowait, _ProgressReport(job_id, progress))

    def _cancel_requested_elsewhere(self, job_id: str) -> None:
        flight = self._inflight.get(job_id)
        if flight is not None and not flight.cancel_accepted and self._nursery is not None:
            self._nursery.start_soon(self._ask_executor_to_cancel, flight, None)

    # ------------------------------------------------------------------ the timer

    async def _timer(self) -> None:
        """The one timer: due retries, attempt deadlines, and polling for outside work."""
        next_poll = trio.current_time() + self.poll_interval_s
        while True:
            wake = next_poll
            schedule_wake = self._next_schedule_wake()
            if schedule_wake is not None:
                wake = min(wake, schedule_wake)
            if self._next_due_us is not None:
                wake = min(wake, self._trio_time_of(self._next_due_us))
            if self._deadlines:
                wake = min(wake, self._deadlines[0][0])
            self._timer_kick = trio.Event()
            with trio.move_on_at(wake):
                await self._timer_kick.wait()
                continue
            now = trio.current_time()
            if self._deadlines and self._deadlines[0][0] <= now:
                self._inbox_send.send_nowait(_TIMEOUTS)
            if self._next_due_us is not None and self._trio_time_of(self._next_due_us) <= now:
                self._next_due_us = None  # the loop's commit reports the next one
                self._inbox_send.send_nowait(_WAKE)
            if schedule_wake is not None and schedule_wake <= now:
                self._inbox_send.send_nowait(_SCHEDULE_DUE)
            if now >= next_poll:
                next_poll = now + self.poll_interval_s
                if self._outside_work():
                    self._inbox_send.send_nowait(_WAKE)

    def _next_schedule_wake(self) -> float | None:
        now = self._now_us()
        wakes = []
        for schedule in self._schedules:
            try:
                wake = schedule.next_wake_us(now)
            except Exception:
                logger.exception(f"schedule {schedule!r} failed to say when to wake")
                continue
            if wake is not None:
                wakes.append(wake)
        # Never spin: a schedule due now is asked again at the earliest after a millisecond.
        return self._trio_time_of(max(min(wakes), now + 1000)) if wakes else None

    def _outside_work(self) -> bool:
        """Did another process submit jobs or ask to cancel one? (two index peeks)"""
        return self.store.has_status(JobStatus.NEW) or self.store.has_cancel_requests()


_TOKEN: Final = object()


def _free(slot: _Slot) -> int:
    return slot.free


def _wall_now_us() -> int:
    return time.time_ns() // 1000


@contextlib.asynccontextmanager
async def open_job_manager(
    path: str | os.PathLike[str],
    *,
    executors: Iterable[JobExecutor] | None = None,
    storage: Any = None,
    max_concurrent: int = 10,
    retry_policy: RetryPolicy | None = None,
    durable: bool = True,
    poll_interval_s: float = 0.25,
    shutdown_timeout_s: float = 5.0,
    actor_intensity: Intensity | None = None,
    log_file: str | os.PathLike[str] | None = None,
    log_level: str | int = "INFO",
    map_size: int | None = None,
    schedules: Iterable[Schedule] = (),
) -> AsyncIterator[JobManager]:
    """Run a job manager on the store at ``path`` for the duration of the ``async with``.

    Args:
        path: the store's folder (created if missing).
        executors: the executors to run; by default :func:`default_executors` (the eight
            built-in executors and JobCleanup).
        storage: handed to every job as ``ctx.storage`` (the storage engine).
        max_concurrent: the most attempts running at once.
        retry_policy: backoff for retries an executor does not time itself.
        durable: fsync every group commit before acknowledging it.
        poll_interval_s: how often to look for work submitted by other processes.
        shutdown_timeout_s: on exit, how long running jobs may take to finish before the
            cancellable ones are cancelled.
        actor_intensity: restarts of executor actors allowed (default 5 in 10 s) before the
            runtime stops with RuntimeFailed.
        log_file: write every job's log lines (each starting ``[<job_id>]``) to this file.
            The library logs nothing until asked; giving a file enables its logger, as
            ``logger.enable("kalam_actors")`` does, so the application's own loguru sinks
            see job lines too.
        log_level: the file's level: ``"INFO"`` (the default) has creations, failures,
            retries and cancels; ``"DEBUG"`` adds every job's Running and Completed lines.
        schedules: schedules whose jobs the runtime creates on its own (see ``schedules``).

    Raises:
        StoreLocked: another runtime owns the store.
        RuntimeError: entered outside trio (asyncio has ``kalam_actors.aio``).
        RuntimeFailed: the runtime had to stop (actors crashing past the intensity, the store
            refusing writes); the cause is chained.
    """
    if not isinstance(max_concurrent, int) or max_concurrent < 1:
        raise InvalidParams(f"max_concurrent must be a whole number >= 1, not {max_concurrent!r}")
    _require_trio("open_job_manager")
    root = Path(path).resolve()
    if executors is None:
        executors = default_executors(root, storage)
    executors = list(executors)
    if not executors:
        raise UnknownJobType("no executors to run")
    lock = RuntimeLock(root)
    sink_id = None
    try:
        store = JobStore(root, executors=executors, map_size=map_size, durable=durable,
                         writer=True)
        try:
            if log_file is not None:
                # The library is quiet until asked: a log file is asking.
                logger.enable("kalam_actors")
                sink_id = logger.add(
                    str(log_file), level=log_level, filter=lambda r: "job_id" in r["extra"] or
                    r["message"].startswith("["), enqueue=False
                )
            manager = JobManager(
                store,
                executors,
                storage=storage,
                max_concurrent=max_concurrent,
                retry_policy=retry_policy or RetryPolicy(),
                durable=durable,
                poll_interval_s=poll_interval_s,
                shutdown_timeout_s=shutdown_timeout_s,
                actor_intensity=actor_intensity or Intensity(max_restarts=5, period_s=10.0),
                schedules=list(schedules),
                token=_TOKEN,
            )
            async with _unwrap_runtime_errors(), trio.open_nursery() as nursery:
                await nursery.start(manager._run)
                try:
                    yield manager
                finally:
                    with trio.CancelScope(shield=True):
                        await manager._shutdown()
                    nursery.cancel_scope.cancel()
        finally:
            store.close()
    finally:
        if sink_id is not None:
            logger.remove(sink_id)
        lock.release()


def default_executors(path: str | os.PathLike[str], storage: Any = None) -> list[JobExecutor]:
    """The executors a runtime runs when given none: the eight built-in executors working on
    ``storage``, and JobCleanup pruning the job store at ``path``."""
    from .executors import builtin_executors
    from .executors.job_cleanup import JobCleanupExecutor

    return [*builtin_executors(storage), JobCleanupExecutor(Path(path).resolve())]


def _require_trio(what: str) -> None:
    try:
        trio.lowlevel.current_task()
    except RuntimeError:
        raise RuntimeError(
            f"{what} runs inside trio (trio.run). From asyncio use "
            "kalam_actors.aio.open_job_manager; from other code, start_job_manager"
        ) from None


@contextlib.asynccontextmanager
async def _unwrap_runtime_errors() -> AsyncIterator[None]:
    """Turn the runtime's internal failures into RuntimeFailed; let the caller's errors
    through as themselves, not wrapped in exception groups."""
    try:
        yield
    except BaseExceptionGroup as group:
        leaves = _leaves(group)
        real = [e for e in leaves if not isinstance(e, trio.Cancelled)]
        if len(real) == 1:
            _raise_single(real[0])
        raise
    except EscalationError as exc:
        raise RuntimeFailed(f"executor actors crashed too often: {exc}") from exc
    except StoreError as exc:
        if isinstance(exc, StoreLocked):
            raise
        raise RuntimeFailed(f"the job store failed: {exc}") from exc


def _raise_single(exc: BaseException) -> None:
    if isinstance(exc, EscalationError):
        raise RuntimeFailed(f"executor actors crashed too often: {exc}") from exc
    if isinstance(exc, StoreError) and not isinstance(exc, StoreLocked):
        raise RuntimeFailed(f"the job store failed: {exc}") from exc
    raise exc


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            out.extend(_leaves(exc))
        else:
            out.append(exc)
    return out
