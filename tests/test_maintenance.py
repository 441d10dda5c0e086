"""Maintenance schedules driven by a real runtime's one timer, in virtual time.

The runtime's wall clock is pinned (``manager._wall_now_us``) to an instant aligned on the hour,
so its ``now`` is that instant plus the virtual time since the runtime opened, and job creation
times can be asserted exactly.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest
import trio

import kalam_actors.manager as manager_mod
from kalam_actors import JobStatus, JobStore, JobType, open_job_manager
from kalam_actors.errors import InvalidParams
from kalam_actors.executors import FlushExecutor, StreamEvictionExecutor
from kalam_actors.executors.job_cleanup import JobCleanupExecutor
from kalam_actors.maintenance import (
    EvictionSchedule,
    FlushSchedule,
    HistorySchedule,
    MaintenancePolicy,
    TablePolicy,
    flush_key,
    maintenance_schedules,
)
from kalam_actors.model import Job, JobFilter
from kalam_actors.storage import Engine

W0 = 1_800_000_000 // 3600 * 3600 * 1_000_000  # µs since the epoch, on the hour
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def at(offset_s: float) -> datetime:
    """The wall time ``offset_s`` seconds after W0."""
    return EPOCH + timedelta(microseconds=W0 + int(offset_s * 1_000_000))


class Wall:
    """The runtime's wall clock at open, set by the test before each open."""

    def __init__(self) -> None:
        self.us = W0

    def __call__(self) -> int:
        return self.us


class EngineClock:
    """The engine's clock (seconds), moved by the test; starts at W0."""

    def __init__(self) -> None:
        self.s = W0 / 1_000_000

    def __call__(self) -> float:
        return self.s


@pytest.fixture
def wall(monkeypatch: pytest.MonkeyPatch) -> Wall:
    clock = Wall()
    monkeypatch.setattr(manager_mod, "_wall_now_us", clock)
    return clock


@pytest.fixture
def engine_clock() -> EngineClock:
    return EngineClock()


@pytest.fixture
def engine(tmp_path: Path, engine_clock: EngineClock) -> Any:
    e = Engine.open(tmp_path / "engine", clock=engine_clock)
    try:
        yield e
    finally:
        e.close()


class GatedFlush(FlushExecutor):
    """The real flush, held at the start of each attempt until the test opens the gate."""

    def __init__(self, engine: Any) -> None:
        super().__init__(engine)
        self.gate = threading.Event()
        self.entered = threading.Event()

    def execute(self, ctx: Any, job: Job) -> Any:
        self.entered.set()
        while not self.gate.wait(0.005):
            if ctx.cancelled:
                break
        return super().execute(ctx, job)


def jobs_of(store: Any, job_type: JobType) -> list[Job]:
    return list(store.list_jobs(JobFilter(job_type=job_type)))


def open_runtime(tmp_path: Path, engine: Any, schedules: list[Any],
                 executors: list[Any] | None = None) -> Any:
    return open_job_manager(
        tmp_path / "jobs", storage=engine, durable=False, poll_interval_s=3600,
        executors=executors or [FlushExecutor(engine), StreamEvictionExecutor(engine)],
        schedules=schedules,
    )


async def wait_until(predicate: Callable[[], Any], what: str, limit_s: float = 600) -> None:
    """Step virtual time (half a second a step: each step costs the clock's 20 ms of real
    idleness) until ``predicate()`` holds."""
    with trio.fail_after(limit_s):
        while not predicate():
            await trio.sleep(0.5)


# --------------------------------------------------------------------------- policy


def test_policy_merges_defaults_overrides_and_engine_options(tmp_path: Path) -> None:
    path = tmp_path / "maintenance.json"
    path.write_text('{"history_retention_days": 3, "tables": {"app:t": {"flush_row_limit": 5}}}')
    policy = MaintenancePolicy.load(path, flush_interval_s=30.0, flush_row_limit=None)
    assert policy.history_retention_days == 3

    class Info:
        table_id = "app:t"
        options: ClassVar = {"eviction_interval_s": 7}

    assert policy.for_table(Info()) == TablePolicy(5, 30.0, 7)
    with pytest.raises(InvalidParams, match="flush_row_limit"):
        MaintenancePolicy(tables={"app:t": {"flush_row_limit": 0}})
    with pytest.raises(InvalidParams, match="unknown policy keys"):
        MaintenancePolicy(tables={"app:t": {"flush_rows": 5}})
    with pytest.raises(InvalidParams, match="cannot read"):
        MaintenancePolicy.load(tmp_path / "missing.json")


def test_schedules_for_an_engine_and_a_store() -> None:
    kinds = [type(s) for s in maintenance_schedules(object(), MaintenancePolicy(), object())]
    assert kinds == [FlushSchedule, EvictionSchedule, HistorySchedule]
    off = MaintenancePolicy(history_retention_days=None)
    assert [type(s) for s in maintenance_schedules(None, off, object())] == []


# --------------------------------------------------------------------------- flush


async def test_interval_flush_fires_once_per_slot_only_with_hot_rows(
    tmp_path: Path, engine: Any, wall: Wall, vclock: Any,
) -> None:
    engine.create_table("app", "t", "Shared")
    engine.insert_many("app", "t", [{"id": i} for i in range(10)])
    policy = MaintenancePolicy(default=TablePolicy(flush_interval_s=60))
    async with open_runtime(tmp_path, engine, [FlushSchedule(engine, policy)]) as manager:
        start = trio.current_time()
        # The first check (table discovery, at 10 s) fires slot [0, 60); the checks of the
        # slots [60, 120) and [120, 180) find no hot rows until rows arrive at 125; the next
        # check (130) fires [120, 180); [180, 240) finds no hot rows again.
        await trio.sleep_until(start + 125)
        engine.insert_many("app", "t", [{"id": i} for i in range(10, 15)])
        await trio.sleep_until(start + 250)
        flushes = jobs_of(manager.store, JobType.FLUSH)
    assert [j.created_at for j in flushes] == [at(10), at(130)]
    assert {j.idempotency_key for j in flushes} == {flush_key("app", "t")}
    assert all(j.status is JobStatus.COMPLETED for j in flushes)
    assert engine.table_stats("app", "t").hot_rows == 0


async def test_row_limit_flush_never_two_active_and_fires_again_on_a_new_buffer(
    tmp_path: Path, engine: Any, wall: Wall, vclock: Any,
) -> None:
    engine.create_table("app", "t", "Shared")
    flush = GatedFlush(engine)
    policy = MaintenancePolicy(default=TablePolicy(flush_row_limit=100))
    schedules = [FlushSchedule(engine, policy)]
    async with open_runtime(tmp_path, engine, schedules, [flush]) as manager:
        start = trio.current_time()
        engine.insert_many("app", "t", [{"id": i} for i in range(99)])
        await trio.sleep_until(start + 5.5)
        assert jobs_of(manager.store, JobType.FLUSH) == [], "99 rows: under the limit"
        engine.insert("app", "t", {"id": 99})
        await wait_until(lambda: jobs_of(manager.store, JobType.FLUSH), "a flush")
        first = jobs_of(manager.store, JobType.FLUSH)[0]
        assert first.created_at == at(6)
        # While it is held: more rows, and the oldest row rewritten, so the row checks of
        # the next 90 s plan a new slot; the active flush holds the key, so nothing fires.
        engine.insert_many("app", "t", [{"id": i} for i in range(100, 250)])
        engine.insert("app", "t", {"id": 0, "v": "rewritten"})
        await trio.sleep_until(start + 95)
        assert [j.job_id for j in jobs_of(manager.store, JobType.FLUSH)] == [first.job_id]
        flush.gate.set()
        await manager.wait_job(first.job_id)
        assert engine.table_stats("app", "t").hot_rows == 0
        engine.insert_many("app", "t", [{"id": i} for i in range(300, 400)])
        await wait_until(lambda: len(jobs_of(manager.store, JobType.FLUSH)) == 2, "flush 2")
        second = jobs_of(manager.store, JobType.FLUSH)[1]
        done = [first, await manager.wait_job(second.job_id)]
        done[0] = await manager.wait_job(first.job_id)
    assert "flushed 250 rows" in (done[0].message or "")
    assert "flushed 100 rows" in (done[1].message or "")


async def test_a_restart_does_not_fire_a_recorded_slot_again(
    tmp_path: Path, engine: Any, wall: Wall, vclock: Any,
) -> None:
    engine.create_table("app", "t", "Shared")
    engine.insert_many("app", "t", [{"id": i} for i in range(10)])
    policy = MaintenancePolicy(default=TablePolicy(flush_interval_s=60, flush_row_limit=1000))
    async with open_runtime(tmp_path, engine, [FlushSchedule(engine, policy)]) as manager:
        start = trio.current_time()
        await trio.sleep_until(start + 20)
        assert [j.created_at for j in jobs_of(manager.store, JobType.FLUSH)] == [at(1)]
    # Restart within the same slot, with hot rows again: the slot [0, 60) is recorded, so
    # the row checks of every following second (which plan it) create nothing until 60.
    engine.insert_many("app", "t", [{"id": i} for i in range(10, 20)])
    wall.us = W0 + 30_000_000
    async with open_runtime(tmp_path, engine, [FlushSchedule(engine, policy)]) as manager:
        start = trio.current_time()
        await trio.sleep_until(start + 29.5)
        assert len(jobs_of(manager.store, JobType.FLUSH)) == 1
        await trio.sleep_until(start + 30.5)
        flushes = jobs_of(manager.store, JobType.FLUSH)
    assert [j.created_at for j in flushes] == [at(1), at(60)]


# --------------------------------------------------------------------------- eviction


async def test_eviction_runs_each_interval_only_when_rows_expired(
    tmp_path: Path, engine: Any, engine_clock: EngineClock, wall: Wall, vclock: Any,
) -> None:
    engine.create_table("app", "ev", "Stream", ttl_seconds=100)
    engine.create_table("app", "fresh", "Stream", ttl_seconds=10_000)
    engine.create_table("app", "plain", "Shared")
    engine.insert_many("app", "ev", [{"id": i} for i in range(30)])
    engine.insert_many("app", "fresh", [{"id": i} for i in range(3)])
    policy = MaintenancePolicy(default=TablePolicy(eviction_interval_s=30),
                               eviction_batch_size=7)
    async with open_runtime(tmp_path, engine, [EvictionSchedule(engine, policy)]) as manager:
        start = trio.current_time()
        await trio.sleep_until(start + 65)  # checks up to 60: nothing expired yet
        assert jobs_of(manager.store, JobType.STREAM_EVICTION) == []
        engine_clock.s += 200  # the engine's rows are now older than the ttl of "ev"
        # The next check (table discovery at 70) fires slot [60, 90); the checks of the
        # slots [90, 120) and [120, 150) find nothing expired.
        await trio.sleep_until(start + 125)
        evictions = jobs_of(manager.store, JobType.STREAM_EVICTION)
    assert [j.created_at for j in evictions] == [at(70)]
    job = evictions[0]
    assert job.status is JobStatus.COMPLETED, job.message
    assert job.idempotency_key == "SE:app:ev"
    assert job.params == {"namespace_id": "app", "table_name": "ev", "table_type": "Stream",
                          "ttl_seconds": 100, "batch_size": 7}
    assert "evicted 30 expired rows" in (job.message or "")
    assert engine.scan("app", "ev") == [] and len(engine.scan("app", "fresh")) == 3


# --------------------------------------------------------------------------- history


async def test_history_is_pruned_once_jobs_pass_the_retention(
    tmp_path: Path, engine: Any, wall: Wall, vclock: Any,
) -> None:
    engine.create_table("app", "t", "Shared")
    policy = MaintenancePolicy(history_retention_days=1, history_interval_s=3600,
                               history_batch_size=2)
    with JobStore(tmp_path / "jobs") as store:
        executors = [FlushExecutor(engine), JobCleanupExecutor(store)]
        schedule = HistorySchedule(store, policy)
        async with open_runtime(tmp_path, engine, [schedule], executors) as manager:
            start = trio.current_time()
            old = [await manager.create_job("Flush", {"namespace_id": "app", "table_name": "t",
                                                      "table_type": "Shared"})
                   for _ in range(5)]
            for job_id in old:
                await manager.wait_job(job_id)
            await trio.sleep_until(start + 86_400 + 1)
            assert jobs_of(store, JobType.JOB_CLEANUP) == [], "not a day old at 24:00"
            await trio.sleep_until(start + 86_400 + 3600 + 1)
            cleanup = jobs_of(store, JobType.JOB_CLEANUP)[0]
            done = await manager.wait_job(cleanup.job_id)
        assert all(store.get_job(j) is None for j in old)
    assert cleanup.created_at == at(86_400 + 3600)
    assert cleanup.idempotency_key == "JC:history"
    assert cleanup.params["before_us"] == W0 + 3600 * 1_000_000
    assert done.status is JobStatus.COMPLETED, done.message
    assert done.message == "deleted 5 terminal job records older than 1 days"


async def test_open_job_manager_with_every_schedule(
    tmp_path: Path, engine: Any, wall: Wall, vclock: Any,
) -> None:
    """A smoke test of the default wiring: no table, no history, nothing fires."""
    with JobStore(tmp_path / "jobs") as store:
        schedules = maintenance_schedules(engine, MaintenancePolicy(), store)
        async with open_runtime(tmp_path, engine, schedules) as manager:
            await trio.sleep(125)
            assert manager.store.list_jobs() == []



async def test_per_table_options_on_the_engine_win_and_bad_ones_are_skipped(
    tmp_path: Path, engine: Any, wall: Wall, vclock: Any, log_lines: list[str],
) -> None:
    engine.create_table("app", "t", "Shared", options={"flush_row_limit": 20})
    engine.create_table("app", "bad", "Shared", options={"flush_row_limit": "lots"})
    engine.create_table("app", "none", "Shared")
    for table in ("t", "bad", "none"):
        engine.insert_many("app", table, [{"id": i} for i in range(25)])
    policy = MaintenancePolicy(row_check_interval_s=1)
    async with open_runtime(tmp_path, engine, [FlushSchedule(engine, policy)]) as manager:
        start = trio.current_time()
        await trio.sleep_until(start + 30)
        flushes = jobs_of(manager.store, JobType.FLUSH)
    assert [(j.params["table_name"], j.created_at) for j in flushes] == [("t", at(1))]
    assert sum("maintenance of app:bad is off" in line for line in log_lines) == 1


async def test_both_flush_rules_due_at_once_make_one_flush(
    tmp_path: Path, engine: Any, wall: Wall, vclock: Any,
) -> None:
    engine.create_table("app", "t", "Shared")
    engine.insert_many("app", "t", [{"id": i} for i in range(30)])
    policy = MaintenancePolicy(default=TablePolicy(flush_row_limit=20, flush_interval_s=60))
    async with open_runtime(tmp_path, engine, [FlushSchedule(engine, policy)]) as manager:
        start = trio.current_time()
        await trio.sleep_until(start + 1.5)
        engine.insert_many("app", "t", [{"id": i} for i in range(30, 35)])
        await trio.sleep_until(start + 59.5)  # the interval slot [0, 60) was used at 1 s
        flushes = jobs_of(manager.store, JobType.FLUSH)
        assert manager.store.last_slot("flush-interval:app:t") is not None
    assert [j.created_at for j in flushes] == [at(1)]
