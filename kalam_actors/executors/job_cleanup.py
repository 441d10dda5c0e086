"""JobCleanup: prunes job history, the terminal job records older than a cutoff.

Terminal records (Completed, Failed, Cancelled, Skipped) never change again and the runtime
never touches them, so this executor deletes them beside a running runtime through the store's
own verb (:meth:`JobStore.prune_history`), in bounded write transactions that LMDB serialises
with the runtime's group commits.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from ..errors import InvalidParams
from ..executor import JobExecutor
from ..ids import JobType
from ..model import JobDecision
from ..store import JobStore

if TYPE_CHECKING:
    from ..context import JobContext
    from ..model import Job

__all__ = ["DEFAULT_BATCH_SIZE", "DEFAULT_RETENTION_DAYS", "JobCleanupExecutor"]

DEFAULT_RETENTION_DAYS: Final = 7.0
DEFAULT_BATCH_SIZE: Final = 1000
MAX_BATCH_SIZE: Final = 100_000
_DAY_US: Final = 86_400 * 1_000_000


def _wall_us() -> int:
    return time.time_ns() // 1000


class JobCleanupExecutor(JobExecutor):
    """Prunes job history: deletes terminal jobs that finished more than ``older_than_days``
    ago, in bounded batches.

    Params: ``{"older_than_days": 7, "batch_size": 1000}``; optionally ``"before_us"`` (an
    explicit cutoff in µs since the epoch, which wins over ``older_than_days``; schedules set
    it from the runtime's clock).

    Args:
        store: the job store to prune, or its folder (opened on first use). In the runtime's
            process this shares the runtime's LMDB environment.
        clock: wall time in µs since the epoch (tests inject a virtual one).
    """

    job_type = JobType.JOB_CLEANUP
    name = "JobCleanup"
    cancellable = True
    rerun_on_recovery = True

    def __init__(self, store: JobStore | Any, *, clock: Callable[[], int] = _wall_us) -> None:
        self._store = store
        self._clock = clock

    def _job_store(self) -> JobStore:
        if not isinstance(self._store, JobStore):
            self._store = JobStore(self._store)
        return self._store

    def validate_params(self, params: dict[str, Any]) -> None:
        days = params.get("older_than_days", DEFAULT_RETENTION_DAYS)
        if isinstance(days, bool) or not isinstance(days, (int, float)) or not 0 <= days < 1e6:
            raise InvalidParams(
                f"older_than_days must be a number from 0 to 1e6, not {days!r}",
                field="older_than_days",
            )
        size = params.get("batch_size", DEFAULT_BATCH_SIZE)
        if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_BATCH_SIZE:
            raise InvalidParams(
                f"batch_size must be a whole number from 1 to {MAX_BATCH_SIZE}, not {size!r}",
                field="batch_size",
            )
        before = params.get("before_us")
        if before is not None and (isinstance(before, bool) or not isinstance(before, int)):
            raise InvalidParams(f"before_us must be a whole number, not {before!r}",
                                field="before_us")
        unknown = set(params) - {"older_than_days", "batch_size", "before_us"}
        if unknown:
            raise InvalidParams(f"unknown parameters: {', '.join(sorted(unknown))}",
                                field=sorted(unknown)[0])

    def execute(self, ctx: JobContext, job: Job) -> JobDecision:
        params = ctx.params
        days = float(params.get("older_than_days", DEFAULT_RETENTION_DAYS))
        before = params.get("before_us")
        if before is None:
            before = self._clock() - int(days * _DAY_US)
        size = int(params.get("batch_size", DEFAULT_BATCH_SIZE))
        store = self._job_store()
        # An upper bound (every terminal job); the last report says what it came to.
        total = sum(n for (s, _), n in store.counts().items() if s.is_terminal)
        ctx.report_progress(0, total, "pruning job history")
        deleted = store.prune_history(
            before,
            batch_size=size,
            on_batch=lambda n: ctx.report_progress(n, total, f"{n} deleted"),
            cancelled=lambda: ctx.cancelled,
        )
        ctx.report_progress(deleted, deleted, f"{deleted} deleted")
        if ctx.cancelled:
            return JobDecision.completed(f"cancelled after deleting {deleted} job records")
        if deleted == 0:
            return JobDecision.skipped(f"no terminal jobs finished more than {days:g} days ago")
        ctx.log_info(f"deleted {deleted} job records older than {days:g} days")
        return JobDecision.completed(
            f"deleted {deleted} terminal job records older than {days:g} days"
        )
