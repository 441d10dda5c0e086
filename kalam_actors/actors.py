"""The pykka actor that runs one executor's jobs in its own thread.

The actor never lets an executor's exception escape a message (pykka would stop it): every
attempt comes back as data, posted into the supervisor's inbox with
``TrioToken.run_sync_soon`` so the actor never waits for trio. Only a BaseException from an
executor (SystemExit and the like: the thread is beyond saving) crashes the actor, after the
attempt has been reported; the supervisor then restarts it.
"""

from __future__ import annotations

import dataclasses
import traceback
from collections.abc import Callable
from typing import Any

import pykka

from .context import JobContext
from .executor import JobExecutor
from .model import Job, JobDecision

__all__ = ["Attempt", "AttemptResult", "ExecutorActor", "ExecutorThreadDied"]


@dataclasses.dataclass(frozen=True, slots=True)
class Attempt:
    """One attempt of one job, told to an actor. ``token`` tells attempts of one job apart."""

    ctx: JobContext
    job: Job
    token: int


@dataclasses.dataclass(frozen=True, slots=True)
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


Post = Callable[[AttemptResult], None]


class ExecutorActor(pykka.ThreadingActor):
    """Runs ``executor.execute`` for each :class:`Attempt` it is told, one at a time."""

    # An actor stuck in a job must never keep the process alive after the runtime has gone.
    use_daemon_thread = True

    def __init__(self, executor: JobExecutor, post: Post) -> None:
        super().__init__()
        self.executor = executor
        self.post = post

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Attempt):
            self._run(message)
            return None
        return super().on_receive(message)

    def _run(self, attempt: Attempt) -> None:
        ctx = attempt.ctx
        if ctx.cancelled:
            # Cancelled while waiting in the mailbox: never start it.
            self._report(attempt, JobDecision.skipped("Cancelled before it started"), False)
            return
        try:
            decision = self.executor.execute(ctx, attempt.job)
        except Exception as exc:
            self._report(attempt, _from_exception(exc), True)
            return
        except BaseException as exc:
            self._report(attempt, _from_exception(exc), True)
            raise ExecutorThreadDied(
                f"[{ctx.job_id}] {self.executor.name} raised {type(exc).__name__}"
            ) from exc
        if isinstance(decision, JobDecision):
            self._report(attempt, decision, False)
        else:
            self._report(
                attempt,
                JobDecision.retry(
                    f"{self.executor.name} returned {_short_repr(decision)}, not a JobDecision"
                ),
                True,
            )

    def _report(self, attempt: Attempt, decision: JobDecision, raised: bool) -> None:
        self.post(AttemptResult(attempt.ctx.job_id, attempt.token, decision, raised))


def _from_exception(exc: BaseException) -> JobDecision:
    trace = "".join(traceback.format_exception(exc))
    return JobDecision.retry(f"{type(exc).__name__}: {exc}", exception_trace=trace)


def _short_repr(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
