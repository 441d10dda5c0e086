"""RetentionExecutor: old soft deletes go for good, young ones and live rows stay."""

from __future__ import annotations

from typing import Any

import pytest
from executor_support import FakeClock, run_job, table_params

from kalam_actors import InvalidParams, Outcome
from kalam_actors.executors import RetentionExecutor
from kalam_actors.storage import Engine, TableType

NS = "default"
HOUR = 3600.0


def params(hours: Any = 24, table: str = "items", kind: str = "Shared") -> dict[str, Any]:
    return table_params(table, kind, retention_hours=hours)


def stored(engine: Engine, table: str = "items") -> list[tuple[str, bool]]:
    """Every stored version as (pk, deleted), hot and cold."""
    return sorted((v.pk, v.deleted) for v in engine.versions(NS, table))


@pytest.mark.parametrize("hours", [0, -1, "24", True, None, float("inf")])
def test_retention_hours_must_be_a_positive_number(hours: Any) -> None:
    with pytest.raises(InvalidParams) as info:
        RetentionExecutor().validate_params(params(hours))
    assert info.value.field == "retention_hours"


def test_missing_retention_hours_is_named() -> None:
    with pytest.raises(InvalidParams, match="retention_hours") as info:
        RetentionExecutor().validate_params(table_params("items", "Shared"))
    assert info.value.field == "retention_hours"


@pytest.fixture
def aged(engine: Engine, clock: FakeClock) -> Engine:
    """Rows 0-5; 1 and 2 deleted 48h ago (1 was flushed live before, 2 after its delete),
    3 deleted 1h ago; the rest live. Part hot, part cold."""
    engine.create_table(NS, "items", TableType.SHARED)
    engine.insert_many(NS, "items", [{"id": i, "v": i} for i in range(6)])
    engine.flush_table(NS, "items")
    engine.delete(NS, "items", 1)
    engine.delete(NS, "items", 2)
    engine.flush_table(NS, "items")
    engine.delete(NS, "items", 4)
    clock.advance(47 * HOUR)
    engine.delete(NS, "items", 3)
    clock.advance(1 * HOUR)
    return engine


def test_old_soft_deletes_are_removed_everywhere_young_ones_stay(aged: Engine) -> None:
    before = aged.scan(NS, "items")
    decision, rec = run_job(RetentionExecutor(), params(24), aged)
    assert decision.outcome is Outcome.COMPLETED
    assert decision.message is not None and decision.message.startswith(
        "removed 3 soft-deleted rows older than 24h from default:items (1 hot and 5 cold versions")
    assert aged.scan(NS, "items") == before == [{"id": 0, "v": 0}, {"id": 5, "v": 5}]
    assert stored(aged) == [("0", False), ("3", False), ("3", True), ("5", False)]
    assert rec.progress[-1].done == rec.progress[-1].total


def test_a_second_run_finds_nothing(aged: Engine) -> None:
    run_job(RetentionExecutor(), params(24), aged)
    decision, _ = run_job(RetentionExecutor(), params(24), aged)
    assert (decision.outcome, decision.message) == (
        Outcome.SKIPPED, "no soft-deleted rows older than 24h in default:items")


def test_a_longer_retention_keeps_everything(aged: Engine) -> None:
    before = stored(aged)
    decision, _ = run_job(RetentionExecutor(), params(72), aged)
    assert decision.outcome is Outcome.SKIPPED
    assert stored(aged) == before


def test_cancel_stops_between_segments_keeping_what_was_done(
    engine: Engine, clock: FakeClock
) -> None:
    engine.create_table(NS, "items", TableType.SHARED)
    for i in range(3):  # three segments, each holding one soon-expired soft delete
        engine.insert(NS, "items", {"id": i})
        engine.delete(NS, "items", i)
        engine.flush_table(NS, "items")
    clock.advance(10 * HOUR)
    decision, rec = run_job(RetentionExecutor(), params(1), engine, cancel_after_progress=1)
    assert decision.outcome is Outcome.FAILED and "cancelled" in (decision.message or "")
    assert len(rec.progress) == 1
    # Each hot insert was replaced by its soft delete before the flush: one version per key.
    assert stored(engine) == [("1", True), ("2", True)]


def test_user_tables_are_handled_per_user(engine: Engine, clock: FakeClock) -> None:
    engine.create_table(NS, "users", TableType.USER)
    engine.insert(NS, "users", {"id": 1}, user_id="u1")
    engine.insert(NS, "users", {"id": 1}, user_id="u2")
    engine.delete(NS, "users", 1, user_id="u1")
    engine.flush_table(NS, "users")
    clock.advance(2 * HOUR)
    decision, _ = run_job(RetentionExecutor(), params(1, "users", "User"), engine)
    assert decision.outcome is Outcome.COMPLETED
    assert sorted((v.user_id, v.pk) for v in engine.versions(NS, "users")) == [("u2", "1")]


def test_wrong_table_type_fails(aged: Engine) -> None:
    decision, _ = run_job(RetentionExecutor(), params(1, kind="Stream"), aged)
    assert decision.outcome is Outcome.FAILED
    assert "is a Shared table, not Stream" in (decision.message or "")
