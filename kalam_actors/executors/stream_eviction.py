"""StreamEviction: delete stream rows older than their time to live, batch by batch."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, ClassVar, Final

from ..ids import JobType
from ..model import JobDecision
from ..storage.interface import Key, StorageEngine, TableType, Version
from . import _params as p
from ._base import EngineExecutor, Target

if TYPE_CHECKING:
    from ..context import JobContext

__all__ = ["StreamEvictionExecutor"]

DEFAULT_BATCH_SIZE: Final = 10_000


@dataclasses.dataclass(frozen=True, slots=True)
class _Row:
    """One key as eviction sees it: its latest version, when it was created, and its newest
    write time (a bound for the purge, which then skips younger segments)."""

    latest: Version
    created_us: int
    newest_us: int


def _rows_by_creation(versions: Iterable[Version]) -> dict[Key, _Row]:
    """Each key's latest version and creation time: the time of its first write, or of its
    first write after a delete (writing a deleted key creates the row anew); updates do not
    move it. The engine's record of it wins; without one (rows a restore brought in), the
    oldest version kept since the last delete stands in."""
    by_key: dict[Key, list[Version]] = {}
    for v in versions:
        by_key.setdefault(v.key, []).append(v)
    rows = {}
    for key, history in by_key.items():
        history.sort(key=lambda v: v.seq)
        latest = history[-1]
        created = latest.created_us
        if created is None:
            created = _oldest_since_delete(history)
        rows[key] = _Row(latest, created, max(v.ts for v in history))
    return rows


def _oldest_since_delete(history: list[Version]) -> int:
    created = history[0].ts
    for before, after in itertools.pairwise(history):
        if before.deleted:
            created = after.ts
    return created


class StreamEvictionExecutor(EngineExecutor):
    """Parameters: ``namespace_id``, ``table_name``, ``table_type`` (must be ``Stream``),
    ``ttl_seconds`` (whole number > 0), ``batch_size`` (whole number > 0, default 10000).

    A row expires ``ttl_seconds`` after it was created (its first write; a write after a
    delete creates it anew), however often it was updated since, as the seed's
    ``created_at`` rule says. The engine records creation times apart from the versions
    (which updates, flushes and compactions replace); for rows without that record (brought
    in by a restore) the oldest version kept stands in, so they may live longer, never
    shorter.
    Expired rows go oldest first, in batches; each batch removes every version of its rows
    (hot and cold) in one atomic purge and reports progress. Cancellation stops between
    batches; finished batches stay evicted. Re-running after a crash simply evicts what is
    still expired.
    """

    job_type: ClassVar[JobType] = JobType.STREAM_EVICTION
    name: ClassVar[str] = "stream eviction"
    cancellable: ClassVar[bool] = True
    rerun_on_recovery: ClassVar[bool] = True

    def _check_params(self, params: dict[str, Any]) -> Target:
        p.check_fields(params, ("namespace_id", "table_name", "table_type", "ttl_seconds"),
                       ("batch_size",))
        target = p.table_target(params, only=TableType.STREAM)
        p.whole(params, "ttl_seconds")
        p.whole(params, "batch_size", default=DEFAULT_BATCH_SIZE)
        return target

    def _run(self, ctx: JobContext, engine: StorageEngine) -> JobDecision:
        ns, table, kind = self._check_params(ctx.params)
        ttl = p.whole(ctx.params, "ttl_seconds")
        batch_size = p.whole(ctx.params, "batch_size", default=DEFAULT_BATCH_SIZE)
        found = p.table_or_decision(ctx, engine, ns, table, kind)
        if isinstance(found, JobDecision):
            return found
        cutoff = engine.now_us() - ttl * 1_000_000
        expired = sorted((r for r in _rows_by_creation(engine.versions(ns, table)).values()
                          if r.created_us < cutoff),
                         key=lambda r: (r.created_us, r.latest.user_id, r.latest.pk))
        if not expired:
            message = f"no rows older than {ttl}s in {ns}:{table}"
            ctx.log_info(message)
            return JobDecision.skipped(message)
        batches = [expired[i:i + batch_size] for i in range(0, len(expired), batch_size)]
        ctx.log_info(f"evicting {len(expired)} expired rows from {ns}:{table} in "
                     f"{len(batches)} batches of up to {batch_size}")
        ctx.report_progress(0, len(expired), f"0 of {len(batches)} batches")
        evicted = freed = 0
        for i, batch in enumerate(batches, start=1):
            if ctx.cancelled:
                return p.cancelled_decision(
                    ctx, f"evicted {evicted} rows in {i - 1} of {len(batches)} batches")
            freed += self._evict(engine, ns, table, batch)
            evicted += len(batch)
            ctx.report_progress(evicted, len(expired), f"{i} of {len(batches)} batches")
            ctx.log_debug(f"batch {i} of {len(batches)}: evicted {len(batch)} rows")
        message = (f"evicted {evicted} expired rows (ttl {ttl}s) from {ns}:{table} in "
                   f"{len(batches)} batches, {p.human_bytes(freed)} freed")
        ctx.log_info(message)
        return JobDecision.completed(message)

    @staticmethod
    def _evict(engine: StorageEngine, ns: str, table: str, batch: list[_Row]) -> int:
        """Purge one batch; returns the bytes it freed (segments and hot rows)."""
        # An updated row's later versions are younger than the ttl cutoff: the purge may skip
        # only segments younger than the batch's newest write.
        newest = max(r.newest_us for r in batch)
        result = engine.purge(ns, table, {r.latest.key: r.latest.seq for r in batch},
                              older_than_us=newest + 1)
        return result.bytes_freed + result.hot_bytes
