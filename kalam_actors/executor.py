"""The executor interface: what a storage engine implements to run one type of job."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from .errors import CancelNotAllowed
from .ids import JobType
from .model import JobDecision

if TYPE_CHECKING:
    from .context import JobContext
    from .model import Job

__all__ = ["JobExecutor"]


class JobExecutor:
    """Runs the jobs of one type. Subclass it and set the class attributes.

    ``execute`` runs in the executor's own pykka actor thread and may block. It reports
    failures as data (``JobDecision.failed`` / ``retry``); an exception escaping it counts as a
    failed attempt (retried per the runtime's policy, its traceback kept as the trace).

    Attributes:
        job_type: the type this executor runs.
        name: a human name for logs.
        cancellable: whether a running job of this type may be cancelled at all.
        rerun_on_recovery: whether a job may safely run again after a crash. If so, an
            attempt starts at once and its Running state rides the next group commit (a crash
            before that commit runs it again); a job found Running after a crash is retried.
            If not (the default), an attempt starts only once its Running state is on disk,
            and a job found Running after a crash ends Failed, "Server restarted".
        timeout_s: an attempt running longer than this is failed (and retried per policy) and
            the stuck actor replaced; None for no limit. A job's own ``timeout_s`` wins.
        actors: how many actors run jobs of this type at once.
        prefetch: how many jobs each actor may hold: one running and the rest handed ahead,
            waiting in its mailbox, so it starts the next the moment one ends instead of
            after a round trip through the runtime. Jobs handed ahead stay Queued (they can
            be cancelled as Queued jobs, and a shutdown gives them back). ``max_concurrent``
            of the runtime bounds the total.
    """

    job_type: ClassVar[JobType]
    name: ClassVar[str] = "executor"
    cancellable: ClassVar[bool] = True
    rerun_on_recovery: ClassVar[bool] = False
    timeout_s: ClassVar[float | None] = None
    actors: ClassVar[int] = 1
    prefetch: ClassVar[int] = 32

    def validate_params(self, params: dict[str, Any]) -> None:
        """Check a new job's parameters before anything is written.

        Raises:
            InvalidParams: naming the offending field.
        """

    def execute(self, ctx: JobContext, job: Job) -> JobDecision:
        """Do the work of one attempt and say how it went."""
        raise NotImplementedError

    def cancel(self, ctx: JobContext, job: Job) -> None:
        """Agree to cancel a running job (called off the actor thread, while ``execute`` runs).

        The default agrees when ``cancellable`` is true. ``execute`` should watch
        ``ctx.cancelled`` and stop at its next safe point.

        Raises:
            CancelNotAllowed: to refuse.
        """
        if not self.cancellable:
            raise CancelNotAllowed(ctx.job_id, f"{self.name} jobs cannot be cancelled")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.job_type.value}>"
