"""Flush: move a table's hot rows into new Parquet segments."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from ..ids import JobType
from ..model import JobDecision
from ..storage.errors import OperationCancelled
from ..storage.interface import StorageEngine
from . import _params as p
from ._base import EngineExecutor, Target

if TYPE_CHECKING:
    from ..context import JobContext

__all__ = ["FlushExecutor"]


class FlushExecutor(EngineExecutor):
    """Parameters: ``namespace_id``, ``table_name``, ``table_type`` (``User``/``Shared``/
    ``Stream``).

    Rows stay hot until one transaction adds the new segments to the manifest and deletes
    exactly the versions they hold, so a re-run after a crash is safe (at worst it leaves an
    orphaned file for Cleanup ``remove_orphaned``). Cancellable between segment files, before
    that transaction.
    """

    job_type: ClassVar[JobType] = JobType.FLUSH
    name: ClassVar[str] = "flush"
    cancellable: ClassVar[bool] = True
    rerun_on_recovery: ClassVar[bool] = True

    def _check_params(self, params: dict[str, Any]) -> Target:
        p.check_fields(params, ("namespace_id", "table_name", "table_type"))
        return p.table_target(params)

    def _run(self, ctx: JobContext, engine: StorageEngine) -> JobDecision:
        ns, table, kind = self._check_params(ctx.params)
        found = p.table_or_decision(ctx, engine, ns, table, kind)
        if isinstance(found, JobDecision):
            return found
        if ctx.cancelled:
            return p.cancelled_decision(ctx, "flush not started")
        ctx.log_info(f"flushing {kind.value} table {ns}:{table}")
        ctx.report_progress(0, None, "reading hot rows")

        def on_file(done: int, total: int) -> None:
            ctx.report_progress(done, total, f"segment {done} of {total} written")
            if ctx.cancelled:
                raise OperationCancelled("flush cancelled before its manifest commit")

        try:
            result = engine.flush_table(ns, table, on_file=on_file)
        except OperationCancelled:
            return p.cancelled_decision(ctx, "flush stopped before its commit; rows stay hot")
        if result.rows == 0:
            message = f"nothing to flush: {ns}:{table} has no hot rows"
            ctx.log_info(message)
            return JobDecision.skipped(message)
        message = (f"flushed {result.rows} rows into {result.files} files "
                   f"({p.human_bytes(result.bytes)}) for {ns}:{table}")
        ctx.log_info(message)
        return JobDecision.completed(message)
