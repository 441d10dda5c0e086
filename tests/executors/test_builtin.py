"""builtin_executors: one executor per job type, each declaring its policies."""

from __future__ import annotations

import pytest
from executor_support import run_job

from kalam_actors import InvalidParams, JobExecutor, JobType, Outcome
from kalam_actors.executors import builtin_executors
from kalam_actors.storage import Engine

SEED_PARAMS = {
    JobType.FLUSH: {"namespace_id": "default", "table_name": "users", "table_type": "User"},
    JobType.CLEANUP: {"table_id": "default:users", "table_type": "User",
                      "operation": "drop_table"},
    JobType.RETENTION: {"namespace_id": "default", "table_name": "users", "table_type": "User",
                        "retention_hours": 720},
    JobType.STREAM_EVICTION: {"namespace_id": "default", "table_name": "events",
                              "table_type": "Stream", "ttl_seconds": 86400,
                              "batch_size": 10000},
    JobType.USER_CLEANUP: {"user_id": "USR123", "username": "john_doe", "cascade": True},
    JobType.COMPACT: {"namespace_id": "default", "table_name": "users", "table_type": "User",
                      "target_file_size_mb": 128},
    JobType.BACKUP: {"namespace_id": "default", "table_name": "users", "table_type": "User",
                     "backup_location": "/var/backups/kalamdb/", "compression": "zstd"},
    JobType.RESTORE: {"backup_location": "/var/backups/kalamdb/default/users/2025.tar.zst",
                      "target_namespace": "default", "target_table_name": "users_restored",
                      "overwrite": False},
}


def test_one_executor_per_maintenance_type() -> None:
    executors = builtin_executors()
    assert [e.job_type for e in executors] == [t for t in JobType if t is not JobType.JOB_CLEANUP]
    assert all(isinstance(e, JobExecutor) for e in executors)
    assert {type(e).__name__: e.cancellable for e in executors} == {
        "FlushExecutor": True, "CleanupExecutor": False, "RetentionExecutor": True,
        "StreamEvictionExecutor": True, "UserCleanupExecutor": False, "CompactExecutor": True,
        "BackupExecutor": True, "RestoreExecutor": True}
    assert all(isinstance(e.rerun_on_recovery, bool) for e in executors)


@pytest.mark.parametrize("executor", builtin_executors(), ids=lambda e: e.job_type.value)
def test_seed_parameters_are_accepted_and_empty_ones_refused(executor: JobExecutor) -> None:
    executor.validate_params(SEED_PARAMS[executor.job_type])
    with pytest.raises(InvalidParams) as info:
        executor.validate_params({})
    assert info.value.field is not None and info.value.field in str(info.value)
    with pytest.raises(InvalidParams):
        executor.validate_params([])  # type: ignore[arg-type]


@pytest.mark.parametrize("executor", builtin_executors(), ids=lambda e: e.job_type.value)
def test_without_storage_every_executor_fails_cleanly(executor: JobExecutor) -> None:
    decision, _ = run_job(executor, SEED_PARAMS[executor.job_type], None)
    assert (decision.outcome, decision.message) == (Outcome.FAILED, "no storage engine configured")


def test_with_an_engine_backup_locations_are_checked_against_its_roots(engine: Engine) -> None:
    by_type = {e.job_type: e for e in builtin_executors(engine)}
    with pytest.raises(InvalidParams, match="outside the allowed backup roots"):
        by_type[JobType.BACKUP].validate_params(SEED_PARAMS[JobType.BACKUP])
    inside = dict(SEED_PARAMS[JobType.BACKUP], backup_location=str(engine.path / "backups"))
    by_type[JobType.BACKUP].validate_params(inside)
