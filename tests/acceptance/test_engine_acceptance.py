"""Acceptance: the engine and the eight executors, driven through the API issue 4 writes down.

Executors run as the runtime would run them: ``executor.execute(ctx, job)`` with a context
from ``kalam_actors.testing.make_context``; the engine is the job's ``ctx.storage``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kalam_actors import JobDecision, JobExecutor, JobType, Outcome
from kalam_actors.executors import (
    BackupExecutor,
    CleanupExecutor,
    CompactExecutor,
    FlushExecutor,
    RestoreExecutor,
    RetentionExecutor,
    StreamEvictionExecutor,
    UserCleanupExecutor,
    builtin_executors,
)
from kalam_actors.storage import Engine, TableType
from kalam_actors.testing import ContextRecorder, make_context, make_job


class Clock:
    def __init__(self) -> None:
        self.now = 1_750_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def engine(tmp_path: Path, clock: Clock) -> Iterator[Engine]:
    engine = Engine.open(tmp_path / "db", clock=clock)
    engine.create_table("default", "users", TableType.USER, primary_key="id")
    engine.create_table("default", "events", TableType.STREAM, primary_key="id",
                        ttl_seconds=3600)
    try:
        yield engine
    finally:
        engine.close()


def execute(executor: JobExecutor, job_type: JobType, params: dict[str, Any], engine: Engine
            ) -> tuple[JobDecision, ContextRecorder]:
    executor.validate_params(params)
    job = make_job(job_type, params)
    ctx, rec = make_context(job, storage=engine)
    return executor.execute(ctx, job), rec


USERS = {"namespace_id": "default", "table_name": "users", "table_type": "User"}


def seed_users(engine: Engine) -> None:
    engine.insert("default", "users", {"id": 1, "name": "ann"}, user_id="u1")
    engine.insert("default", "users", {"id": 2, "name": "ben"}, user_id="u1")
    engine.insert("default", "users", {"id": 1, "name": "cat"}, user_id="u2")


def test_rows_flush_and_scan_the_same_before_and_after(engine: Engine) -> None:
    seed_users(engine)
    engine.update("default", "users", {"id": 2, "name": "benjamin"}, user_id="u1")
    engine.delete("default", "users", 1, user_id="u2")
    expected = [{"id": 1, "name": "ann"}, {"id": 2, "name": "benjamin"}]
    assert engine.scan("default", "users", user_id=None) == expected

    decision, rec = execute(FlushExecutor(), JobType.FLUSH, USERS, engine)
    assert decision.outcome is Outcome.COMPLETED
    assert decision.message is not None
    assert decision.message.startswith("flushed 3 rows into 2 files")
    assert rec.progress
    assert engine.scan("default", "users", user_id=None) == expected
    stats = engine.table_stats("default", "users")
    assert (stats.hot_rows, stats.segments, stats.cold_rows) == (0, 2, 3) and stats.bytes > 0

    again, _ = execute(FlushExecutor(), JobType.FLUSH, USERS, engine)
    assert again.outcome is Outcome.SKIPPED
    assert engine.table_stats("default", "users").cold_rows == 3


def test_a_thread_writing_through_a_flush_loses_nothing(engine: Engine) -> None:
    seed_users(engine)
    started, release = threading.Event(), threading.Event()

    def writer() -> None:
        started.wait(10)
        for i in range(10, 20):
            engine.insert("default", "users", {"id": i}, user_id="u3")
        release.set()

    def pause() -> None:  # hold the flush between its Parquet write and its commit
        started.set()
        assert release.wait(10)

    thread = threading.Thread(target=writer)
    thread.start()
    engine.faults.set("after_segment_write", pause)
    decision, _ = execute(FlushExecutor(), JobType.FLUSH, USERS, engine)
    thread.join(10)
    assert decision.outcome is Outcome.COMPLETED
    assert engine.scan("default", "users", user_id="u3") == [{"id": i} for i in range(10, 20)]
    assert engine.table_stats("default", "users").hot_rows == 10


def test_retention_and_stream_eviction_by_age(engine: Engine, clock: Clock) -> None:
    seed_users(engine)
    engine.delete("default", "users", 1, user_id="u1")
    execute(FlushExecutor(), JobType.FLUSH, USERS, engine)
    for i in range(5):
        engine.insert("default", "events", {"id": i})
    clock.now += 2 * 3600
    engine.delete("default", "users", 2, user_id="u1")
    engine.insert("default", "events", {"id": 99})

    decision, _ = execute(RetentionExecutor(), JobType.RETENTION,
                          {**USERS, "retention_hours": 1}, engine)
    assert decision.outcome is Outcome.COMPLETED
    assert sorted((v.user_id, v.pk, v.deleted) for v in engine.versions("default", "users")) == [
        ("u1", "2", False), ("u1", "2", True), ("u2", "1", False)]

    decision, _ = execute(StreamEvictionExecutor(), JobType.STREAM_EVICTION,
                          {"namespace_id": "default", "table_name": "events",
                           "table_type": "Stream", "ttl_seconds": 3600, "batch_size": 2}, engine)
    assert decision.message is not None and decision.message.startswith(
        "evicted 5 expired rows (ttl 3600s) from default:events in 3 batches, ")
    assert decision.message.endswith(" bytes freed")  # the seed's success message
    assert engine.scan("default", "events") == [{"id": 99}]


def test_user_cleanup_after_a_soft_delete(engine: Engine) -> None:
    seed_users(engine)
    execute(FlushExecutor(), JobType.FLUSH, USERS, engine)
    engine.insert("default", "users", {"id": 3, "name": "dan"}, user_id="u1")
    engine.create_user("u1", "ann")
    engine.delete_user("u1")
    decision, _ = execute(UserCleanupExecutor(), JobType.USER_CLEANUP,
                          {"user_id": "u1", "username": "ann", "cascade": True}, engine)
    assert decision.outcome is Outcome.COMPLETED
    assert engine.scan("default", "users", user_id=None) == [{"id": 1, "name": "cat"}]


def test_compaction_keeps_scan_identical(engine: Engine) -> None:
    for round_ in range(3):
        engine.insert("default", "users", {"id": round_ % 2, "r": round_}, user_id="u1")
        execute(FlushExecutor(), JobType.FLUSH, USERS, engine)
    before = engine.scan("default", "users", user_id=None)
    decision, _ = execute(CompactExecutor(), JobType.COMPACT,
                          {**USERS, "target_file_size_mb": 128}, engine)
    assert decision.message is not None and decision.message.startswith(
        "compacted 3 files into 1")
    assert engine.scan("default", "users", user_id=None) == before


def test_backup_restore_round_trip_then_cleanup(engine: Engine) -> None:
    seed_users(engine)
    execute(FlushExecutor(), JobType.FLUSH, USERS, engine)
    engine.update("default", "users", {"id": 1, "name": "anna"}, user_id="u1")
    at_backup = engine.scan("default", "users", user_id=None)
    root = engine.path / "backups"

    decision, _ = execute(BackupExecutor(engine), JobType.BACKUP,
                          {**USERS, "backup_location": str(root), "compression": "zstd"}, engine)
    assert decision.outcome is Outcome.COMPLETED
    [archive] = list((root / "default" / "users").iterdir())
    engine.delete("default", "users", 1, user_id="u1")

    decision, _ = execute(RestoreExecutor(engine), JobType.RESTORE,
                          {"backup_location": str(archive), "target_namespace": "default",
                           "target_table_name": "users_restored", "overwrite": False}, engine)
    assert decision.outcome is Outcome.COMPLETED
    assert engine.scan("default", "users_restored", user_id=None) == at_backup

    decision, _ = execute(CleanupExecutor(), JobType.CLEANUP,
                          {"table_id": "default:users_restored", "table_type": "User",
                           "operation": "drop_table"}, engine)
    assert decision.outcome is Outcome.COMPLETED
    assert engine.table_info("default", "users_restored") is None


def test_builtin_executors_cover_the_eight_types(engine: Engine) -> None:
    kinds = {e.job_type for e in builtin_executors(engine)}
    assert kinds == {JobType.FLUSH, JobType.CLEANUP, JobType.RETENTION, JobType.STREAM_EVICTION,
                     JobType.USER_CLEANUP, JobType.COMPACT, JobType.BACKUP, JobType.RESTORE}
