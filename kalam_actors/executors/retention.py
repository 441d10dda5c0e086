"""Retention: permanently remove soft-deleted rows older than the retention period."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from ..ids import JobType
from ..model import JobDecision
from ..storage.interface import Key, StorageEngine, Version
from . import _params as p
from ._base import EngineExecutor, Target

if TYPE_CHECKING:
    from ..context import JobContext

__all__ = ["RetentionExecutor", "latest_versions"]


def latest_versions(versions: list[Version]) -> tuple[dict[Key, Version], dict[Key, set[str]]]:
    """The latest version of each key, and the segments that hold any version of it."""
    latest: dict[Key, Version] = {}
    where: dict[Key, set[str]] = {}
    for v in versions:
        key = v.key
        old = latest.get(key)
        if old is None or v.seq > old.seq:
            latest[key] = v
        if v.segment_id is not None:
            where.setdefault(key, set()).add(v.segment_id)
    return latest, where


class RetentionExecutor(EngineExecutor):
    """Parameters: ``namespace_id``, ``table_name``, ``table_type``, ``retention_hours``
    (a number > 0).

    A row whose latest version is a soft delete older than the cutoff loses every version, hot
    and cold, in one atomic purge per segment (all of a key's versions go together, so an older
    version never resurfaces); soft deletes younger than the cutoff stay. Cancellable between
    segments; what was purged stays purged. Idempotent, so re-run after a crash is safe.
    """

    job_type: ClassVar[JobType] = JobType.RETENTION
    name: ClassVar[str] = "retention"
    cancellable: ClassVar[bool] = True
    rerun_on_recovery: ClassVar[bool] = True

    def _check_params(self, params: dict[str, Any]) -> Target:
        p.check_fields(params, ("namespace_id", "table_name", "table_type", "retention_hours"))
        target = p.table_target(params)
        p.number(params, "retention_hours")
        return target

    def _run(self, ctx: JobContext, engine: StorageEngine) -> JobDecision:
        ns, table, kind = self._check_params(ctx.params)
        hours = p.number(ctx.params, "retention_hours")
        found = p.table_or_decision(ctx, engine, ns, table, kind)
        if isinstance(found, JobDecision):
            return found
        cutoff = engine.now_us() - int(hours * 3600 * 1_000_000)
        latest, where = latest_versions(engine.versions(ns, table))
        victims = {key: v.seq for key, v in latest.items() if v.deleted and v.ts < cutoff}
        if not victims:
            message = f"no soft-deleted rows older than {hours:g}h in {ns}:{table}"
            ctx.log_info(message)
            return JobDecision.skipped(message)
        steps = self._steps(victims, where)
        ctx.log_info(f"removing {len(victims)} soft-deleted rows from {ns}:{table} in "
                     f"{len(steps)} steps")
        hot = cold = rewritten = freed = removed = 0
        for i, keys in enumerate(steps):
            if ctx.cancelled:
                return p.cancelled_decision(
                    ctx, f"removed {removed} of {len(victims)} rows before stopping")
            result = engine.purge(ns, table, {k: victims[k] for k in keys},
                                  older_than_us=cutoff)
            hot, cold = hot + result.hot_rows, cold + result.cold_rows
            rewritten, freed = rewritten + result.segments_rewritten, freed + result.bytes_freed
            removed += len(keys)
            ctx.report_progress(i + 1, len(steps), f"{removed} of {len(victims)} rows removed")
        message = (f"removed {removed} soft-deleted rows older than {hours:g}h from {ns}:{table} "
                   f"({hot} hot and {cold} cold versions; {rewritten} segments rewritten, "
                   f"{p.human_bytes(freed)} freed)")
        ctx.log_info(message)
        return JobDecision.completed(message)

    @staticmethod
    def _steps(victims: dict[Key, int], where: dict[Key, set[str]]) -> list[list[Key]]:
        """Victims grouped by the first segment (in id order) that holds one of their
        versions; victims living only in the hot store come last."""
        steps: dict[str, list[Key]] = {}
        hot_only: list[Key] = []
        for key in sorted(victims):
            segs = where.get(key)
            if segs:
                steps.setdefault(min(segs), []).append(key)
            else:
                hot_only.append(key)
        ordered = [steps[sid] for sid in sorted(steps)]
        return ordered + ([hot_only] if hot_only else [])
