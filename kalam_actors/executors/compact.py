"""Compact: merge a table's small segments toward a target size."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Final

from ..ids import JobType
from ..model import JobDecision
from ..storage.errors import OperationCancelled, SegmentsChanged
from ..storage.interface import SegmentInfo, StorageEngine
from . import _params as p
from ._base import EngineExecutor, Target

if TYPE_CHECKING:
    from ..context import JobContext

__all__ = ["CompactExecutor", "plan_groups"]

DEFAULT_TARGET_MB: Final = 128
# Retention and eviction may rewrite segments while a compaction plans; re-plan this often.
REPLANS: Final = 3


def plan_groups(segments: Sequence[SegmentInfo], target_bytes: int) -> list[list[str]]:
    """Per user, consecutive (in creation order) segments smaller than the target packed into
    groups whose total stays within it; only groups of two or more are worth merging."""
    by_user: dict[str, list[SegmentInfo]] = {}
    for seg in sorted(segments, key=lambda s: s.segment_id):
        if seg.bytes < target_bytes:
            by_user.setdefault(seg.user_id, []).append(seg)
    groups: list[list[str]] = []
    for user in sorted(by_user):
        current: list[str] = []
        size = 0
        for seg in by_user[user]:
            if current and size + seg.bytes > target_bytes:
                groups.append(current)
                current, size = [], 0
            current.append(seg.segment_id)
            size += seg.bytes
        groups.append(current)
    return [g for g in groups if len(g) >= 2]


class CompactExecutor(EngineExecutor):
    """Parameters: ``namespace_id``, ``table_name``, ``table_type``,
    ``target_file_size_mb`` (a number > 0, default 128).

    The latest version of each key wins inside a merged group; the manifest swap is one
    transaction and old files are deleted only after it, so ``scan`` is identical before and
    after. Cancellable until the swap (nothing changes). A re-run after a crash is safe.
    """

    job_type: ClassVar[JobType] = JobType.COMPACT
    name: ClassVar[str] = "compact"
    cancellable: ClassVar[bool] = True
    rerun_on_recovery: ClassVar[bool] = True

    def _check_params(self, params: dict[str, Any]) -> Target:
        p.check_fields(params, ("namespace_id", "table_name", "table_type"),
                       ("target_file_size_mb",))
        p.number(params, "target_file_size_mb", default=DEFAULT_TARGET_MB)
        return p.table_target(params)

    def _run(self, ctx: JobContext, engine: StorageEngine) -> JobDecision:
        ns, table, kind = self._check_params(ctx.params)
        target_mb = p.number(ctx.params, "target_file_size_mb", default=DEFAULT_TARGET_MB)
        found = p.table_or_decision(ctx, engine, ns, table, kind)
        if isinstance(found, JobDecision):
            return found
        for _ in range(REPLANS):
            segments = engine.segments(ns, table)
            groups = plan_groups(segments, int(target_mb * 1024 * 1024))
            if not groups:
                message = (f"nothing to compact in {ns}:{table}: {len(segments)} segments, no "
                           f"two small ones fit together under {target_mb:g} MiB")
                ctx.log_info(message)
                return JobDecision.skipped(message)
            ctx.log_info(f"compacting {sum(map(len, groups))} segments of {ns}:{table} into "
                         f"{len(groups)}")
            ctx.report_progress(0, 1, f"merging {len(groups)} groups")
            try:
                result = engine.merge_segments(ns, table, groups,
                                               cancelled=lambda: ctx.cancelled)
                break
            except OperationCancelled:
                return p.cancelled_decision(ctx,
                                            "compaction stopped before its swap; nothing changed")
            except SegmentsChanged as exc:
                ctx.log_info(f"{exc}: another job rewrote segments meanwhile; planning again")
        else:
            return JobDecision.retry(
                f"segments of {ns}:{table} kept changing under compaction ({REPLANS} plans)")
        ctx.report_progress(1, 1, "segments swapped")
        message = (f"compacted {result.files_in} files into {result.files_out} in {ns}:{table} "
                   f"({result.rows_in} -> {result.rows_out} rows, "
                   f"{p.human_bytes(result.bytes_in)} -> {p.human_bytes(result.bytes_out)})")
        ctx.log_info(message)
        return JobDecision.completed(message)
