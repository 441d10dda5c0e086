"""Job history: the JobCleanup executor that prunes old terminal job records.

Terminal records (Completed, Failed, Cancelled, Skipped) never change again and the runtime
never touches them, so deleting them beside a running runtime is safe: every batch is one LMDB
write transaction, and LMDB serialises writers across threads and processes.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from .errors import InvalidParams
from .executor import JobExecutor
from .ids import JobType
from .model import JobDecision, JobStatus
from .store import CODE, JobStore, StoreTxn

if TYPE_CHECKING:
    from .context import JobContext
    from .model import Job

__all__ = ["DEFAULT_BATCH_SIZE", "DEFAULT_RETENTION_DAYS", "JobCleanupExecutor", "prune_history"]

DEFAULT_RETENTION_DAYS: Final = 7.0
DEFAULT_BATCH_SIZE: Final = 1000
MAX_BATCH_SIZE: Final = 100_000
_DAY_US: Final = 86_400 * 1_000_000
_TERMINAL: Final = (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.SKIPPED)


def _wall_us() -> int:
    return time.time_ns() // 1000


def prune_history(
    store: JobStore,
    before_us: int,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_batch: Callable[[int], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> int:
    """Delete terminal jobs that finished before ``before_us``; return how many.

    There is no index by finish time. Within one type, ids sort by creation time, so each
    terminal status range of each type is walked in id (creation) order and the walk stops at
    the first job created at or after the cutoff: a job finishes after it is created, so no
    later job of that type can qualify. The work is
    bounded by the jobs created before the cutoff. Jobs created before the cutoff but finished
    after it are stepped over (they go in a later run).

    Each batch of at most ``batch_size`` records (read or deleted) is one write transaction;
    ``on_batch(deleted_so_far)`` is called after each commit; ``cancelled()`` is checked
    between batches.
    """
    # One range per terminal status and type; a batch walks on from range to range, so
    # empty ranges cost no transaction of their own.
    ranges = [(CODE[status], job_type.prefix + "-")
              for status, job_type in itertools.product(_TERMINAL, JobType)]
    deleted = 0
    position: tuple[int, str | None] = (0, None)  # (range index, last id read in it)
    while position[0] < len(ranges):
        if cancelled is not None and cancelled():
            return deleted

        def batch(stxn: StoreTxn, start: tuple[int, str | None] = position
                  ) -> tuple[int, tuple[int, str | None]]:
            index, after = start
            n = touched = 0
            while index < len(ranges) and touched < batch_size:
                code, id_prefix = ranges[index]
                found = stxn.ids_after(code, after, batch_size - touched, id_prefix=id_prefix)
                if not found:
                    index, after = index + 1, None
                    continue
                for job_id in found:
                    touched += 1
                    after = job_id
                    rec = stxn.get(job_id)
                    if rec is None:
                        continue
                    if rec["c"] >= before_us:
                        index, after = index + 1, None  # no later job of this type qualifies
                        break
                    if rec["f"] is not None and rec["f"] < before_us:
                        stxn.delete(rec)
                        n += 1
            return n, (index, after)

        n, position = store.write(batch)
        deleted += n
        if n and on_batch is not None:
            on_batch(deleted)
    return deleted


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
        deleted = prune_history(
            store,
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
