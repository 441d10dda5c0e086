"""Executors written for the runtime's tests, and small helpers to wait on job states."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Any, ClassVar

import trio

from kalam_actors import (
    CancelNotAllowed,
    InvalidParams,
    Job,
    JobContext,
    JobDecision,
    JobExecutor,
    JobManager,
    JobStatus,
    JobType,
)

Step = JobDecision | BaseException | Callable[[JobContext, Job], Any]


class ScriptedExecutor(JobExecutor):
    """Plays a script: attempt n gets ``script[n-1]`` (the last entry repeats).

    An entry is a JobDecision to return, an exception to raise, or a callable run as the body.
    Records every attempt as ``(job_id, attempt)``.
    """

    name = "scripted"

    def __init__(self, job_type: JobType = JobType.FLUSH, script: list[Step] | None = None,
                 *, cancellable: bool = True, rerun_on_recovery: bool = False,
                 timeout_s: float | None = None, actors: int = 1, prefetch: int = 1) -> None:
        self.job_type = job_type  # type: ignore[misc]
        self.script = script or [JobDecision.completed("done")]
        self.cancellable = cancellable  # type: ignore[misc]
        self.rerun_on_recovery = rerun_on_recovery  # type: ignore[misc]
        self.timeout_s = timeout_s  # type: ignore[misc]
        self.actors = actors  # type: ignore[misc]
        self.prefetch = prefetch
        self.attempts: list[tuple[str, int]] = []
        self.lock = threading.Lock()

    def validate_params(self, params: dict[str, Any]) -> None:
        if "bad" in params:
            raise InvalidParams("field 'bad' is not allowed", field="bad")

    def execute(self, ctx: JobContext, job: Job) -> Any:
        with self.lock:
            self.attempts.append((job.job_id, ctx.attempt))
        step = self.script[min(ctx.attempt, len(self.script)) - 1]
        if isinstance(step, BaseException):
            raise step
        if isinstance(step, JobDecision):
            return step
        return step(ctx, job)


class Gate:
    """A body that blocks its attempt until the test opens the gate (or the job is cancelled).

    ``entered`` is set (thread-safe) when an attempt is inside.
    """

    def __init__(self, decision: JobDecision | None = None) -> None:
        self.entered = threading.Event()
        self.opened = threading.Event()
        self.decision = decision or JobDecision.completed("gate opened")
        self.saw_cancel = False

    def __call__(self, ctx: JobContext, job: Job) -> JobDecision:
        self.entered.set()
        while not self.opened.wait(0.005):
            if ctx.cancelled:
                self.saw_cancel = True
                return JobDecision.completed("stopped early")
        return self.decision

    async def wait_entered(self) -> None:
        with trio.fail_after(10):
            await trio.to_thread.run_sync(self.entered.wait)


class RefusingExecutor(ScriptedExecutor):
    """Refuses every cancel."""

    def cancel(self, ctx: JobContext, job: Job) -> None:
        raise CancelNotAllowed(ctx.job_id, "this executor never stops halfway")


class ExplodingCancelExecutor(ScriptedExecutor):
    """Raises a plain error inside cancel."""

    def cancel(self, ctx: JobContext, job: Job) -> None:
        raise RuntimeError("cancel blew up")


class Forever(JobExecutor):
    """Never returns until released; for timeouts and stuck actors."""

    job_type: ClassVar[JobType] = JobType.BACKUP
    name = "forever"

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()

    def execute(self, ctx: JobContext, job: Job) -> JobDecision:
        self.entered.set()
        self.release.wait(30)
        return JobDecision.completed("released")


async def wait_status(manager: JobManager, job_id: str, *statuses: JobStatus,
                      timeout: float = 30) -> Job:
    """Wait (in virtual time) until the job has one of ``statuses``; fails after ``timeout``."""
    with trio.fail_after(timeout):
        async with contextlib.aclosing(manager.watch_job(job_id)) as changes:
            async for job in changes:
                if job.status in statuses:
                    return job
    raise AssertionError(f"[{job_id}] ended {job.status.value}, never {statuses}")
