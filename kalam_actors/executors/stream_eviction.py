"""StreamEviction: delete stream rows older than their time to live, batch by batch."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Final

from ..ids import JobType
from ..model import JobDecision
from ..storage.interface import StorageEngine, TableType
from . import _params as p
from ._base import EngineExecutor
from .retention import latest_versions

if TYPE_CHECKING:
    from ..context import JobContext

__all__ = ["StreamEvictionExecutor"]

DEFAULT_BATCH_SIZE: Final = 10_000


class StreamEvictionExecutor(EngineExecutor):
    """Parameters: ``namespace_id``, ``table_name``, ``table_type`` (must be ``Stream``),
    ``ttl_seconds`` (whole number > 0), ``batch_size`` (whole number > 0, default 10000).

    A row expires ``ttl_seconds`` after its last write. Expired rows go oldest first, in
    batches; each batch removes every version of its rows (hot and cold) in one atomic purge and
    reports progress. Cancellation stops between batches; finished batches stay evicted.
    Re-running after a crash simply evicts what is still expired.
    """

    job_type: ClassVar[JobType] = JobType.STREAM_EVICTION
    name: ClassVar[str] = "stream eviction"
    cancellable: ClassVar[bool] = True
    rerun_on_recovery: ClassVar[bool] = True

    def validate_params(self, params: dict[str, Any]) -> None:
        p.check_fields(params, ("namespace_id", "table_name", "table_type", "ttl_seconds"),
                       ("batch_size",))
        p.table_target(params, only=TableType.STREAM)
        p.whole(params, "ttl_seconds")
        p.whole(params, "batch_size", default=DEFAULT_BATCH_SIZE)

    def _run(self, ctx: JobContext, engine: StorageEngine) -> JobDecision:
        self.validate_params(ctx.params)
        ns, table, kind = p.table_target(ctx.params, only=TableType.STREAM)
        ttl = p.whole(ctx.params, "ttl_seconds")
        batch_size = p.whole(ctx.params, "batch_size", default=DEFAULT_BATCH_SIZE)
        found = p.table_or_decision(ctx, engine, ns, table, kind)
        if isinstance(found, JobDecision):
            return found
        cutoff = engine.now_us() - ttl * 1_000_000
        latest, _ = latest_versions(engine.versions(ns, table))
        expired = sorted((v for v in latest.values() if v.ts < cutoff),
                         key=lambda v: (v.ts, v.user_id, v.pk))
        if not expired:
            message = f"no rows older than {ttl}s in {ns}:{table}"
            ctx.log_info(message)
            return JobDecision.skipped(message)
        batches = [expired[i:i + batch_size] for i in range(0, len(expired), batch_size)]
        ctx.log_info(f"evicting {len(expired)} expired rows from {ns}:{table} in "
                     f"{len(batches)} batches of up to {batch_size}")
        ctx.report_progress(0, len(expired), f"0 of {len(batches)} batches")
        evicted = 0
        for i, batch in enumerate(batches, start=1):
            if ctx.cancelled:
                return p.cancelled_decision(
                    ctx, f"evicted {evicted} rows in {i - 1} of {len(batches)} batches")
            engine.purge(ns, table, {v.key: v.seq for v in batch}, older_than_us=cutoff)
            evicted += len(batch)
            ctx.report_progress(evicted, len(expired), f"{i} of {len(batches)} batches")
            ctx.log_debug(f"batch {i} of {len(batches)}: evicted {len(batch)} rows")
        message = (f"evicted {evicted} expired rows (ttl {ttl}s) from {ns}:{table} in "
                   f"{len(batches)} batches")
        ctx.log_info(message)
        return JobDecision.completed(message)
