"""Cleanup: drop or truncate a table's data, or remove files no manifest names."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Final

from ..ids import JobType
from ..model import JobDecision
from ..storage.interface import CleanupResult, StorageEngine
from . import _params as p
from ._base import EngineExecutor, Target

if TYPE_CHECKING:
    from ..context import JobContext

__all__ = ["CleanupExecutor"]

OPERATIONS: Final = ("drop_table", "truncate", "remove_orphaned")


class CleanupExecutor(EngineExecutor):
    """Parameters: ``table_id`` (``"ns:table"``), ``table_type``, ``operation``:

    - ``drop_table``: hot rows, segments, manifest and the table's metadata;
    - ``truncate``: the data only (the table stays, empty);
    - ``remove_orphaned``: segment files that the manifest does not name.

    Not cancellable (a half-done cleanup would leave orphans). Every operation is idempotent,
    so a re-run after a crash is safe and finishes the job.
    """

    job_type: ClassVar[JobType] = JobType.CLEANUP
    name: ClassVar[str] = "cleanup"
    cancellable: ClassVar[bool] = False
    rerun_on_recovery: ClassVar[bool] = True

    def _check_params(self, params: dict[str, Any]) -> Target:
        p.check_fields(params, ("table_id", "table_type", "operation"))
        ns, table = p.table_id(params)
        kind = p.table_type(params)
        p.choice(params, "operation", OPERATIONS, default="")
        return ns, table, kind

    def _run(self, ctx: JobContext, engine: StorageEngine) -> JobDecision:
        ns, table, kind = self._check_params(ctx.params)
        operation = ctx.params["operation"]
        info = engine.table_info(ns, table)
        if info is not None and info.table_type is not kind:
            message = (f"table {ns}:{table} is a {info.table_type.value} table, not "
                       f"{kind.value} as the job says")
            ctx.log_error(message)
            return JobDecision.failed(message)
        ctx.log_info(f"{operation} on {ns}:{table}")
        ctx.report_progress(0, 1, operation)
        if operation == "remove_orphaned":
            result = engine.remove_orphaned_files(ns, table)
        elif info is None and operation == "truncate":
            return self._skip(ctx, f"table {ns}:{table} does not exist; nothing to truncate")
        else:
            result = engine.drop_table_data(ns, table, keep_metadata=operation == "truncate")
            if info is None and result.files == 0:
                return self._skip(ctx, f"table {ns}:{table} does not exist and left no files")
        ctx.report_progress(1, 1, operation)
        message = self._message(operation, f"{ns}:{table}", result)
        ctx.log_info(message)
        return JobDecision.completed(message)

    @staticmethod
    def _skip(ctx: JobContext, message: str) -> JobDecision:
        ctx.log_info(message)
        return JobDecision.skipped(message)

    @staticmethod
    def _message(operation: str, table_id: str, result: CleanupResult) -> str:
        rows = f", {result.hot_rows} hot rows" if operation != "remove_orphaned" else ""
        return (f"{operation} {table_id}: deleted {result.files} files, freed {result.bytes} "
                f"bytes{rows}")
