"""The pykka actor that runs one executor's jobs in its own thread.

The actor never lets an executor's exception escape a message (pykka would stop it): every
attempt comes back as data, posted into the supervisor's inbox with
``TrioToken.run_sync_soon`` so the actor never waits for trio. Only a BaseException from an
executor (SystemExit and the like: the thread is beyond saving) crashes the actor, after the
attempt has been reported; the supervisor then restarts it.
"""

from __future__ import annotations

import dataclasses
import threading
import traceback
from collections.abc import Callable
from typing import Any

import pykka
from loguru import logger

from .context import JobContext
from .errors import InvalidParams
from .executor import JobExecutor
from .model import JobDecision
from .store import check_decision, parse_params, validates_params
from .store.records import running_job

__all__ = [
    "Attempt",
    "AttemptResult",
    "AttemptStarted",
    "Attempts",
    "ExecutorActor",
    "ExecutorThreadDied",
    "StartGate",
]


class StartGate:
    """Holds an attempt of an executor that is not safe to re-run until its Running state is
    durable: the runtime opens it after the commit (``refused`` if the job was cancelled or
    given back meanwhile, and at shutdown)."""

    __slots__ = ("_event", "refused")

    def __init__(self) -> None:
        self._event = threading.Event()
        self.refused = False

    def open(self, *, refused: bool = False) -> None:
        self.refused = refused
        self._event.set()

    @property
    def is_open(self) -> bool:
        return self._event.is_set()

    def wait(self) -> bool:
        """Block until the runtime answers; True if the attempt may run."""
        self._event.wait()
        return not self.refused


# Attempt and AttemptResult are messages, one of each per job: plain (not frozen) slotted
# dataclasses, because a frozen one costs three times as much to build. Nothing changes them.
@dataclasses.dataclass(slots=True)
class Attempt:
    """One attempt of one job, told to an actor. ``token`` tells attempts of one job apart.

    ``record`` is the job's stored record as claimed (Queued or Retrying): an attempt handed
    ahead to an actor has not started. The actor says when it starts (:class:`AttemptStarted`)
    and makes the :class:`Job` from the record, in its own thread, so the loop does not.
    ``gate`` is set for an executor that is not safe to re-run: the attempt waits at it until
    its Running state is on disk.
    """

    ctx: JobContext
    record: dict[str, Any]
    token: int
    gate: StartGate | None = None


@dataclasses.dataclass(slots=True)
class AttemptStarted:
    """Posted by the actor as it starts an attempt: the runtime records it Running."""

    job_id: str
    token: int
    started_us: int


@dataclasses.dataclass(frozen=True, slots=True)
class Attempts:
    """Several attempts told to one actor in one message (the jobs one commit started)."""

    attempts: tuple[Attempt, ...]


@dataclasses.dataclass(slots=True)
class AttemptResult:
    """What an attempt came to, posted back to the supervisor.

    ``raised`` is True when the decision was made from an exception (or a bad return value)
    rather than returned by the executor.
    """

    job_id: str
    token: int
    decision: JobDecision
    raised: bool = False


class ExecutorThreadDied(RuntimeError):
    """Raised inside an actor, to stop only that actor, when its executor raised a
    BaseException such as SystemExit."""


Post = Callable[[AttemptResult | AttemptStarted], None]


class ExecutorActor(pykka.ThreadingActor):
    """Runs ``executor.execute`` for each :class:`Attempt` it is told, one at a time."""

    # An actor stuck in a job must never keep the process alive after the runtime has gone.
    use_daemon_thread = True

    def __init__(self, executor: JobExecutor, post: Post, clock: Callable[[], int]) -> None:
        super().__init__()
        self.executor = executor
        self.post = post
        self.clock = clock
        # Jobs submitted by other processes may not have met this executor's check yet.
        self._validates = validates_params(executor)

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Attempts):
            self._run_all(message.attempts)
            return None
        if isinstance(message, Attempt):
            self._run_all((message,))
            return None
        return super().on_receive(message)

    def _run_all(self, attempts: tuple[Attempt, ...]) -> None:
        """Run the attempts in order, reporting each as soon as it is done."""
        for attempt in attempts:
            self.post(self._run(attempt))

    def _run(self, attempt: Attempt) -> AttemptResult:
        ctx = attempt.ctx
        if ctx.cancelled:
            # Cancelled or given back while waiting in the mailbox: never start it.
            return self._result(attempt, JobDecision.skipped("Cancelled before it started"), False)
        started_us = self.clock()
        self.post(AttemptStarted(ctx.job_id, attempt.token, started_us))
        gate = attempt.gate
        if gate is not None and not gate.wait():
            return self._result(attempt, JobDecision.skipped("Not started"), False)
        try:
            job = running_job(attempt.record, started_us)
            logger.debug(f"[{ctx.job_id}] Running (attempt {ctx.attempt})")
            if self._validates:
                refused = self._refused(job.parameters)
                if refused is not None:
                    return self._result(attempt, refused, True)
            decision = self.executor.execute(ctx, job)
        except Exception as exc:
            return self._result(attempt, _from_exception(exc), True)
        except BaseException as exc:
            self.post(self._result(attempt, _from_exception(exc), True))
            raise ExecutorThreadDied(
                f"[{ctx.job_id}] {self.executor.name} raised {type(exc).__name__}"
            ) from exc
        return self._result(attempt, decision, False)

    def _result(self, attempt: Attempt, decision: object, raised: bool) -> AttemptResult:
        try:
            # The door for what an executor returns: checked here, in its own thread, so a
            # value the store cannot hold fails this attempt, never the runtime's group commit.
            checked = check_decision(decision, self.executor.name)
        except InvalidParams as exc:
            checked, raised = JobDecision.retry(str(exc)), True
        return AttemptResult(attempt.ctx.job_id, attempt.token, checked, raised)

    def _refused(self, params_text: str) -> JobDecision | None:
        try:
            self.executor.validate_params(parse_params(params_text)[0])
        except InvalidParams as exc:
            return JobDecision.failed(f"invalid parameters: {exc}")
        return None


def _from_exception(exc: BaseException) -> JobDecision:
    trace = "".join(traceback.format_exception(exc))
    return JobDecision.retry(f"{type(exc).__name__}: {exc}", exception_trace=trace)
