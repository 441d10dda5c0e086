"""FlushExecutor: validation, the real flush, races, crashes and cancellation."""

from __future__ import annotations

from typing import Any

import pytest
from executor_support import run_job, table_params

from kalam_actors import InvalidParams, Outcome
from kalam_actors.executors import CleanupExecutor, FlushExecutor
from kalam_actors.storage import Engine, SimulatedCrash, TableType

NS = "default"


@pytest.fixture
def users(engine: Engine) -> Engine:
    engine.create_table(NS, "users", TableType.USER)
    engine.insert_many(NS, "users", [{"id": i, "n": f"a{i}"} for i in range(3)], user_id="u1")
    engine.insert_many(NS, "users", [{"id": i, "n": f"b{i}"} for i in range(2)], user_id="u2")
    return engine


def files_of(engine: Engine, table: str) -> list[str]:
    root = engine.path / "segments" / NS / table
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"table_name": "t", "table_type": "User"}, "namespace_id"),
        ({"namespace_id": "default", "table_type": "User"}, "table_name"),
        ({"namespace_id": "default", "table_name": "t"}, "table_type"),
        (table_params("t", "Table"), "table_type"),
        (table_params("t", 3), "table_type"),
        (table_params("../t", "User"), "table_name"),
        (table_params("t", "User", ns=7), "namespace_id"),
        (table_params("t", "User", extra=1), "extra"),
    ],
)
def test_bad_params_name_the_field(params: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidParams) as info:
        FlushExecutor().validate_params(params)
    assert info.value.field == field
    assert field in str(info.value)


def test_flush_moves_every_hot_row_into_one_file_per_user(users: Engine) -> None:
    before = users.scan(NS, "users")
    decision, rec = run_job(FlushExecutor(), table_params("users", "User"), users)
    assert decision.outcome is Outcome.COMPLETED
    assert decision.message is not None
    assert decision.message.startswith("flushed 5 rows into 2 files")
    assert users.scan(NS, "users") == before
    stats = users.table_stats(NS, "users")
    assert (stats.hot_rows, stats.segments, stats.cold_rows) == (0, 2, 5)
    assert [f.split("/")[0] for f in files_of(users, "users")] == ["u1", "u2"]
    assert rec.progress[-1].done == rec.progress[-1].total == 2


def test_flushing_twice_never_duplicates_a_row(users: Engine) -> None:
    run_job(FlushExecutor(), table_params("users", "User"), users)
    decision, _ = run_job(FlushExecutor(), table_params("users", "User"), users)
    assert decision.outcome is Outcome.SKIPPED
    assert decision.message == "nothing to flush: default:users has no hot rows"
    assert len(users.versions(NS, "users")) == 5


def test_missing_table_is_skipped_and_wrong_type_fails(users: Engine) -> None:
    decision, _ = run_job(FlushExecutor(), table_params("ghost", "User"), users)
    assert (decision.outcome, decision.message) == (
        Outcome.SKIPPED, "table default:ghost does not exist")
    decision, _ = run_job(FlushExecutor(), table_params("users", "Shared"), users)
    assert decision.outcome is Outcome.FAILED
    assert decision.message == "table default:users is a User table, not Shared as the job says"
    assert users.table_stats(NS, "users").hot_rows == 5


def test_no_storage_engine_fails_cleanly() -> None:
    decision, _ = run_job(FlushExecutor(), table_params("users", "User"), None)
    assert (decision.outcome, decision.message) == (Outcome.FAILED, "no storage engine configured")


def test_rows_written_during_the_flush_stay_hot_and_are_not_lost(users: Engine) -> None:
    def race() -> None:
        users.update(NS, "users", {"id": 0, "n": "changed"}, user_id="u1")
        users.delete(NS, "users", 1, user_id="u2")
        users.insert(NS, "users", {"id": 7, "n": "late"}, user_id="u2")

    users.faults.set("after_segment_write", race)
    decision, _ = run_job(FlushExecutor(), table_params("users", "User"), users)
    assert decision.outcome is Outcome.COMPLETED
    assert users.scan(NS, "users", user_id="u1") == [
        {"id": 0, "n": "changed"}, {"id": 1, "n": "a1"}, {"id": 2, "n": "a2"}]
    assert users.scan(NS, "users", user_id="u2") == [{"id": 0, "n": "b0"}, {"id": 7, "n": "late"}]
    assert users.table_stats(NS, "users").hot_rows == 3
    users.faults.clear()
    run_job(FlushExecutor(), table_params("users", "User"), users)
    assert users.scan(NS, "users", user_id="u2") == [{"id": 0, "n": "b0"}, {"id": 7, "n": "late"}]


def test_crash_before_the_manifest_commit_then_orphan_cleanup(users: Engine) -> None:
    before = users.scan(NS, "users")

    def crash() -> None:
        raise SimulatedCrash

    users.faults.set("after_segment_write", crash)
    with pytest.raises(SimulatedCrash):
        run_job(FlushExecutor(), table_params("users", "User"), users)
    users.faults.clear()
    assert len(files_of(users, "users")) == 2  # written, never committed
    assert users.table_stats(NS, "users").hot_rows == 5
    assert users.scan(NS, "users") == before

    decision, _ = run_job(CleanupExecutor(), {"table_id": "default:users", "table_type": "User",
                                              "operation": "remove_orphaned"}, users)
    assert decision.message is not None and decision.message.startswith(
        "remove_orphaned default:users: deleted 2 files")
    assert files_of(users, "users") == []

    run_job(FlushExecutor(), table_params("users", "User"), users)
    assert sorted((v.user_id, v.pk) for v in users.versions(NS, "users")) == [
        ("u1", "0"), ("u1", "1"), ("u1", "2"), ("u2", "0"), ("u2", "1")]
    assert users.scan(NS, "users") == before


def test_cancel_between_files_leaves_rows_hot_and_no_files(users: Engine) -> None:
    # Reports: "reading hot rows", then one per file; cancel after the first file.
    decision, _ = run_job(FlushExecutor(), table_params("users", "User"), users,
                          cancel_after_progress=2)
    assert decision.outcome is Outcome.FAILED
    assert decision.message is not None and "cancelled" in decision.message
    assert files_of(users, "users") == []
    assert users.table_stats(NS, "users").hot_rows == 5


def test_logs_carry_the_job_id(users: Engine, log_lines: list[str]) -> None:
    run_job(FlushExecutor(), table_params("users", "User"), users)
    mine = [line for line in log_lines if "flush" in line]
    assert mine and all(line.startswith("[FL-") for line in mine)


def test_declares_rerun_and_cancel_policy() -> None:
    assert FlushExecutor.rerun_on_recovery is True
    assert FlushExecutor.cancellable is True
