"""The engine's maintenance, run on its own: schedules the runtime's one timer drives.

Three :class:`~kalam_actors.schedules.Schedule` implementations:

- :class:`FlushSchedule`: a table whose hot rows reach ``flush_row_limit``, or that has hot
  rows when its ``flush_interval_s`` slot begins, gets a Flush job with idempotency key
  ``FL:<ns>:<table>`` (so never two active flushes of one table, whichever rule fired).
- :class:`EvictionSchedule`: a STREAM table with ``ttl_seconds`` gets a StreamEviction job
  each ``eviction_interval_s`` slot, only when rows older than the ttl may exist.
- :class:`HistorySchedule`: terminal jobs older than ``history_retention_days`` are pruned by
  a JobCleanup job each ``history_interval_s`` slot, only when such jobs may exist.

Slots. The runtime fires a slot at most once per schedule name and records it in the job store
in the same transaction as the job, so a restart never fires a slot twice. Interval rules use
``now_us // interval_us`` (the interval number since the epoch). The row-limit rule uses the
``seq`` of the table's oldest hot version: every row written after a flush has a larger
``seq`` than anything that flush moved, so the slot grows exactly when the hot buffer is
refilled after a flush, and stays put while one buffer waits to be flushed.

All time comes from the ``now_us`` the runtime passes (it follows trio's clock, so tests with
``autojump_clock`` drive it virtually); only "has this row expired?" is asked of the engine's
own clock, as the eviction executor does.

Policies. Per table, on the engine: ``Engine.create_table(..., options={"flush_row_limit":
10000, "flush_interval_s": 60, "eviction_interval_s": 30})`` (``TableInfo.options``). A
:class:`MaintenancePolicy` gives the defaults for every table, per-table overrides for
engines without options, and the job-history settings; a table's own options win.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from loguru import logger

from .errors import InvalidParams
from .ids import JobType
from .model import JobFilter, JobStatus
from .schedules import Schedule, ScheduledJob

__all__ = [
    "EvictionSchedule",
    "FlushSchedule",
    "HistorySchedule",
    "MaintenancePolicy",
    "TablePolicy",
    "flush_key",
    "maintenance_schedules",
]

_US: Final = 1_000_000
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US: Final = timedelta(microseconds=1)
_DAY_US: Final = 86_400 * _US
_TABLE_KEYS: Final = ("flush_row_limit", "flush_interval_s", "eviction_interval_s")

LastSlot = Callable[[str], "int | None"]


def flush_key(namespace: str, table: str) -> str:
    """The idempotency key every scheduled flush of a table holds: ``FL:<ns>:<table>``."""
    return f"FL:{namespace}:{table}"


def _positive(value: Any, what: str, *, whole: bool = False) -> None:
    kinds = (int,) if whole else (int, float)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, kinds) or not value > 0:
        kind = "a whole number" if whole else "a number"
        raise InvalidParams(f"{what} must be {kind} > 0, not {value!r}", field=what)


@dataclasses.dataclass(frozen=True, slots=True)
class TablePolicy:
    """Maintenance of one table. None turns a rule off.

    Attributes:
        flush_row_limit: flush when the table holds this many hot versions.
        flush_interval_s: flush every this many seconds, when there are hot rows.
        eviction_interval_s: for STREAM tables with a ttl, look for expired rows this often.
    """

    flush_row_limit: int | None = None
    flush_interval_s: float | None = None
    eviction_interval_s: float | None = None

    def __post_init__(self) -> None:
        _positive(self.flush_row_limit, "flush_row_limit", whole=True)
        _positive(self.flush_interval_s, "flush_interval_s")
        _positive(self.eviction_interval_s, "eviction_interval_s")

    def over(self, other: Mapping[str, Any]) -> TablePolicy:
        """This policy with the keys set in ``other`` replacing its own."""
        changes = {k: other[k] for k in _TABLE_KEYS if k in other}
        return dataclasses.replace(self, **changes) if changes else self


@dataclasses.dataclass(frozen=True, slots=True)
class MaintenancePolicy:
    """What maintenance the runtime runs on its own. Its defaults also feed the CLI.

    Attributes:
        default: the policy of every table without an override.
        tables: overrides by ``"<ns>:<table>"`` (only the keys given replace the default).
        history_retention_days: prune terminal jobs older than this; None keeps them forever.
        history_interval_s: how often to look for old jobs.
        history_batch_size: records deleted per write transaction.
        row_check_interval_s: how often hot-row counts are compared with ``flush_row_limit``
            (the engine has no "buffer full" signal to wait for).
        eviction_batch_size: ``batch_size`` of the StreamEviction jobs.
        discovery_interval_s: how often the table list is re-read to find new tables.
    """

    default: TablePolicy = TablePolicy(eviction_interval_s=60.0)
    tables: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    history_retention_days: float | None = 7.0
    history_interval_s: float = 3600.0
    history_batch_size: int = 1000
    row_check_interval_s: float = 1.0
    eviction_batch_size: int = 10_000
    discovery_interval_s: float = 10.0

    def __post_init__(self) -> None:
        if self.history_retention_days is not None and (
            isinstance(self.history_retention_days, bool)
            or not isinstance(self.history_retention_days, (int, float))
            or self.history_retention_days < 0
        ):
            raise InvalidParams("history_retention_days must be a number >= 0",
                                field="history_retention_days")
        _positive(self.history_interval_s, "history_interval_s")
        _positive(self.history_batch_size, "history_batch_size", whole=True)
        _positive(self.row_check_interval_s, "row_check_interval_s")
        _positive(self.eviction_batch_size, "eviction_batch_size", whole=True)
        _positive(self.discovery_interval_s, "discovery_interval_s")
        for table_id, options in self.tables.items():
            if not isinstance(options, Mapping):
                raise InvalidParams(f"policy of {table_id} must be an object", field="tables")
            unknown = set(options) - set(_TABLE_KEYS)
            if unknown:
                raise InvalidParams(
                    f"unknown policy keys for {table_id}: {', '.join(sorted(unknown))}; "
                    f"known: {', '.join(_TABLE_KEYS)}", field="tables")
            self.default.over(options)  # validates the values

    def for_table(self, info: Any) -> TablePolicy:
        """The policy of a table (a ``TableInfo``): engine options, else override, else
        default."""
        policy = self.default.over(self.tables.get(info.table_id, {}))
        options = getattr(info, "options", None)
        if isinstance(options, Mapping):
            policy = policy.over(options)
        return policy

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None, **defaults: Any
             ) -> MaintenancePolicy:
        """A policy from a JSON file (``{"history_retention_days": 7, "tables": {"ns:t":
        {...}}, "default": {...}}``) and keyword defaults (None values are ignored).

        Raises:
            InvalidParams: for an unreadable file or bad values, naming the key.
        """
        data: dict[str, Any] = {}
        if path is not None:
            try:
                with open(path, encoding="utf-8") as f:
                    data = json.load(f)
            except (OSError, ValueError) as exc:
                raise InvalidParams(f"cannot read maintenance policy {path}: {exc}") from exc
            if not isinstance(data, dict):
                raise InvalidParams(f"maintenance policy {path} must be a JSON object")
        default = TablePolicy(eviction_interval_s=60.0).over(data.get("default", {}))
        table_defaults = {k: v for k, v in defaults.items() if k in _TABLE_KEYS and v is not None}
        default = default.over(table_defaults)
        fields = {k: v for k, v in data.items() if k not in ("default", "tables")}
        fields.update({k: v for k, v in defaults.items()
                       if k not in _TABLE_KEYS and v is not None})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(fields) - known
        if unknown:
            raise InvalidParams(f"unknown maintenance policy keys: {', '.join(sorted(unknown))}")
        return cls(default=default, tables=dict(data.get("tables", {})), **fields)


def _next_boundary(now_us: int, interval_s: float) -> int:
    step = max(1, int(interval_s * _US))
    return (now_us // step + 1) * step


def _slot(now_us: int, interval_s: float) -> int:
    return now_us // max(1, int(interval_s * _US))


def _table_params(info: Any) -> dict[str, Any]:
    return {"namespace_id": info.namespace, "table_name": info.name,
            "table_type": info.table_type.value}


@dataclasses.dataclass(frozen=True, slots=True)
class HotSummary:
    """A table's hot buffer: how many versions, the oldest ``seq`` and write time (µs)."""

    rows: int
    min_seq: int | None
    min_ts: int | None


def hot_summary(engine: Any, namespace: str, table: str) -> HotSummary:
    """A table's hot buffer summary (``Engine.hot_summary``: one read transaction over the
    table's hot keys, bounded by the flush row limit when one is set)."""
    result = engine.hot_summary(namespace, table)
    return HotSummary(result.rows, result.min_seq, result.min_ts)


class _TableSchedule:
    """Shared by the per-table schedules: the table list, re-read at most once per plan."""

    def __init__(self, engine: Any, policy: MaintenancePolicy) -> None:
        self.engine = engine
        self.policy = policy
        self._tables: list[tuple[Any, TablePolicy]] | None = None
        self._warned: set[str] = set()

    def _refresh(self) -> list[tuple[Any, TablePolicy]]:
        tables = []
        for info in self.engine.list_tables():
            try:
                tables.append((info, self.policy.for_table(info)))
            except InvalidParams as exc:
                # One table's bad options must not stop the maintenance of the others.
                if info.table_id not in self._warned:
                    self._warned.add(info.table_id)
                    logger.warning(f"maintenance of {info.table_id} is off: {exc}")
        self._tables = tables
        return tables

    def _known(self) -> list[tuple[Any, TablePolicy]]:
        return self._tables if self._tables is not None else self._refresh()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} on {self.engine!r}>"


class FlushSchedule(_TableSchedule):
    """Flush a table when its hot rows reach ``flush_row_limit``, or each
    ``flush_interval_s`` slot when it has hot rows. Both rules share the key
    ``FL:<ns>:<table>``: while a flush of the table is active, a due slot is recorded and
    skipped.

    The interval rule fires at the first check in a slot that finds hot rows: at the slot's
    start, or — for a table seen for the first time, or rows written mid-slot after an empty
    start — at the next row check or table discovery within the slot. A restart within a slot
    that already fired does not fire it again.
    """

    def next_wake_us(self, now_us: int) -> int | None:
        wakes = []
        for _info, tp in self._known():
            if tp.flush_interval_s is not None:
                wakes.append(_next_boundary(now_us, tp.flush_interval_s))
            if tp.flush_row_limit is not None:
                wakes.append(_next_boundary(now_us, self.policy.row_check_interval_s))
        wakes.append(_next_boundary(now_us, self.policy.discovery_interval_s))
        return min(wakes)

    def plan(self, now_us: int, last_slot: LastSlot) -> list[ScheduledJob]:
        out: list[ScheduledJob] = []
        for info, tp in self._refresh():
            if tp.flush_row_limit is None and tp.flush_interval_s is None:
                continue
            table_id = info.table_id
            interval_name = f"flush-interval:{table_id}"
            interval_slot = None
            if tp.flush_interval_s is not None:
                interval_slot = _slot(now_us, tp.flush_interval_s)
                last = last_slot(interval_name)
                if last is not None and interval_slot <= last:
                    interval_slot = None
            if interval_slot is None and tp.flush_row_limit is None:
                continue
            hot = hot_summary(self.engine, info.namespace, info.name)
            if hot.rows == 0 or hot.min_seq is None:
                continue
            params = _table_params(info)
            key = flush_key(info.namespace, info.name)
            if tp.flush_row_limit is not None and hot.rows >= tp.flush_row_limit:
                name = f"flush-rows:{table_id}"
                last = last_slot(name)
                if last is None or hot.min_seq > last:
                    out.append(ScheduledJob(name, hot.min_seq, JobType.FLUSH, params, key))
            # When both rules are due, the runtime creates the first and records the second's
            # slot as skipped (the key is taken in the same transaction): one flush covers both.
            if interval_slot is not None:
                out.append(ScheduledJob(interval_name, interval_slot, JobType.FLUSH, params, key))
        return out


class EvictionSchedule(_TableSchedule):
    """A StreamEviction job for each STREAM table with a ttl, each ``eviction_interval_s``
    slot, only when a row older than the ttl may exist (the oldest hot row or segment is
    older; superseded old versions can make this say yes when the job then finds nothing, and
    it is Skipped)."""

    def next_wake_us(self, now_us: int) -> int | None:
        wakes = [
            _next_boundary(now_us, tp.eviction_interval_s)
            for info, tp in self._known()
            if info.table_type.value == "Stream" and info.ttl_seconds
            and tp.eviction_interval_s is not None
        ]
        wakes.append(_next_boundary(now_us, self.policy.discovery_interval_s))
        return min(wakes)

    def plan(self, now_us: int, last_slot: LastSlot) -> list[ScheduledJob]:
        out: list[ScheduledJob] = []
        for info, tp in self._refresh():
            if info.table_type.value != "Stream" or not info.ttl_seconds:
                continue
            if tp.eviction_interval_s is None:
                continue
            name = f"evict:{info.table_id}"
            slot = _slot(now_us, tp.eviction_interval_s)
            last = last_slot(name)
            if last is not None and slot <= last:
                continue
            if not self._may_have_expired(info):
                continue
            params = {**_table_params(info), "ttl_seconds": info.ttl_seconds,
                      "batch_size": self.policy.eviction_batch_size}
            out.append(ScheduledJob(name, slot, JobType.STREAM_EVICTION, params,
                                    f"SE:{info.table_id}"))
        return out

    def _may_have_expired(self, info: Any) -> bool:
        cutoff = self.engine.now_us() - info.ttl_seconds * _US
        hot = hot_summary(self.engine, info.namespace, info.name)
        if hot.min_ts is not None and hot.min_ts < cutoff:
            return True
        return any(seg.min_ts < cutoff for seg in self.engine.segments(info.namespace, info.name))


class HistorySchedule:
    """A JobCleanup job each ``history_interval_s`` slot, when the oldest terminal job of some
    status was created before the retention cutoff (four index peeks). The job's
    ``before_us`` is the cutoff computed from the runtime's clock."""

    name: Final = "job-history"

    def __init__(self, store: Any, policy: MaintenancePolicy) -> None:
        self.store = store
        self.policy = policy

    def next_wake_us(self, now_us: int) -> int | None:
        if self.policy.history_retention_days is None:
            return None
        return _next_boundary(now_us, self.policy.history_interval_s)

    def plan(self, now_us: int, last_slot: LastSlot) -> list[ScheduledJob]:
        days = self.policy.history_retention_days
        if days is None:
            return []
        slot = _slot(now_us, self.policy.history_interval_s)
        last = last_slot(self.name)
        if last is not None and slot <= last:
            return []
        cutoff = now_us - int(days * _DAY_US)
        if not self._has_old_jobs(cutoff):
            return []
        params = {"older_than_days": days, "batch_size": self.policy.history_batch_size,
                  "before_us": cutoff}
        return [ScheduledJob(self.name, slot, JobType.JOB_CLEANUP, params, "JC:history")]

    def _has_old_jobs(self, cutoff_us: int) -> bool:
        for status in JobStatus:
            if not status.is_terminal:
                continue
            oldest = self.store.list_jobs(JobFilter(status=status, limit=1))
            if oldest and (oldest[0].created_at - _EPOCH) // _ONE_US < cutoff_us:
                return True
        return False

    def __repr__(self) -> str:
        return "<HistorySchedule>"


def maintenance_schedules(engine: Any, policy: MaintenancePolicy | None = None,
                          store: Any = None) -> list[Schedule]:
    """The schedules for ``engine`` (flush and eviction) and, given the job ``store``, job
    history pruning."""
    policy = policy or MaintenancePolicy()
    schedules: list[Schedule] = []
    if engine is not None:
        schedules += [FlushSchedule(engine, policy), EvictionSchedule(engine, policy)]
    if store is not None and policy.history_retention_days is not None:
        schedules.append(HistorySchedule(store, policy))
    return schedules
