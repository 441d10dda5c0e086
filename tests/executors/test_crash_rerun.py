"""Every executor that says ``rerun_on_recovery`` means it: crash it at each fault point, run
it again, tidy orphans, and the data is exactly what one clean run gives."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from executor_support import FakeClock, run_job, table_params

from kalam_actors import JobExecutor, Outcome
from kalam_actors.executors import (
    BackupExecutor,
    CleanupExecutor,
    CompactExecutor,
    FlushExecutor,
    RestoreExecutor,
    RetentionExecutor,
    StreamEvictionExecutor,
)
from kalam_actors.storage import Engine, SimulatedCrash, TableType
from kalam_actors.testing import make_context, make_job

NS = "default"


def prepare(engine: Engine, clock: FakeClock) -> None:
    engine.create_table(NS, "users", TableType.USER)
    engine.create_table(NS, "events", TableType.STREAM, ttl_seconds=60)
    for round_ in range(3):
        for user in ("u1", "u2"):
            engine.insert_many(NS, "users", [{"id": i, "r": round_} for i in range(round_, 4)],
                               user_id=user)
        engine.insert_many(NS, "events", [{"id": round_ * 10 + i} for i in range(3)])
        engine.delete(NS, "users", round_, user_id="u1")
        engine.flush_table(NS, "users")
        engine.flush_table(NS, "events")
        clock.advance(3600)
    engine.insert(NS, "users", {"id": 9}, user_id="u2")
    engine.insert(NS, "events", {"id": 99})


def backup_then_restore(engine: Engine) -> tuple[JobExecutor, dict[str, Any]]:
    run_job(BackupExecutor(), table_params("users", "User",
                                           backup_location=str(engine.path / "backups")), engine)
    return RestoreExecutor(), {"backup_location": str(engine.path / "backups" / NS / "users"),
                               "target_namespace": NS, "target_table_name": "copy"}


CASES: dict[str, Callable[[Engine], tuple[JobExecutor, dict[str, Any]]]] = {
    "flush": lambda e: (FlushExecutor(), table_params("users", "User")),
    "compact": lambda e: (CompactExecutor(), table_params("users", "User")),
    "retention": lambda e: (RetentionExecutor(),
                            table_params("users", "User", retention_hours=1.5)),
    "eviction": lambda e: (StreamEvictionExecutor(),
                           table_params("events", "Stream", ttl_seconds=60, batch_size=2)),
    "restore": backup_then_restore,
}


def snapshot(engine: Engine) -> dict[str, Any]:
    tables = [t.name for t in engine.list_tables(NS)]
    return {t: (engine.scan(NS, t), sorted((v.user_id, v.pk, v.seq, v.deleted)
                                           for v in engine.versions(NS, t))) for t in tables}


def files_match_manifests(engine: Engine) -> None:
    for table in engine.list_tables(NS):
        run_job(CleanupExecutor(), {"table_id": table.table_id, "table_type":
                                    table.table_type.value, "operation": "remove_orphaned"},
                engine)
        root = engine.path / "segments"
        on_disk = {p.relative_to(root).as_posix()
                   for p in (root / NS / table.name).rglob("*") if p.is_file()}
        assert on_disk == {s.relpath for s in engine.segments(NS, table.name)}


@pytest.mark.parametrize("point", ["after_segment_write", "after_commit"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_a_rerun_after_a_crash_ends_where_one_clean_run_does(
    tmp_path: Any, case: str, point: str
) -> None:
    clean_clock, crash_clock = FakeClock(), FakeClock()
    with Engine.open(tmp_path / "clean", clock=clean_clock, durable=False) as clean, \
            Engine.open(tmp_path / "crash", clock=crash_clock, durable=False) as crashy:
        prepare(clean, clean_clock)
        prepare(crashy, crash_clock)
        executor, params = CASES[case](clean)
        decision, _ = run_job(executor, params, clean)
        assert decision.outcome is Outcome.COMPLETED, decision.message
        assert executor.rerun_on_recovery is True

        executor, params = CASES[case](crashy)

        def crash() -> None:
            raise SimulatedCrash

        crashy.faults.set(point, crash)
        job = make_job(executor.job_type, params)  # the same job, run twice, as on recovery
        with pytest.raises(SimulatedCrash):
            executor.execute(make_context(job, storage=crashy)[0], job)
        crashy.faults.clear()
        rerun = executor.execute(make_context(job, storage=crashy, attempt=2)[0], job)
        assert rerun.outcome in (Outcome.COMPLETED, Outcome.SKIPPED), rerun.message
        files_match_manifests(crashy)

        expected, got = snapshot(clean), snapshot(crashy)
        assert {t: rows for t, (rows, _) in got.items()} == {
            t: rows for t, (rows, _) in expected.items()}
        # Same versions too, up to renumbering: compare what is stored, not the seq numbers.
        assert {t: [v[:2] + v[3:] for v in vs] for t, (_, vs) in got.items()} == {
            t: [v[:2] + v[3:] for v in vs] for t, (_, vs) in expected.items()}
