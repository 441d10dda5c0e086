"""CompactExecutor: small segments merge toward the target; scan never changes."""

from __future__ import annotations

from typing import Any

import pytest
from executor_support import run_job, table_params

from kalam_actors import InvalidParams, Outcome
from kalam_actors.executors import CompactExecutor
from kalam_actors.executors.compact import plan_groups
from kalam_actors.storage import Engine, SegmentInfo, TableType

NS = "default"


def seg(sid: str, size: int, user: str = "") -> SegmentInfo:
    return SegmentInfo(sid, user, 1, size, 1, 1, 0, f"{sid}.parquet")


def test_plan_packs_consecutive_small_segments_per_user() -> None:
    segments = [seg("a", 40), seg("b", 40), seg("c", 40), seg("d", 500), seg("e", 10),
                seg("f", 10, "u1"), seg("g", 10, "u2")]
    assert plan_groups(segments, 100) == [["a", "b"], ["c", "e"]]


@pytest.mark.parametrize("target", [0, -5, "big", True])
def test_target_must_be_positive(target: Any) -> None:
    with pytest.raises(InvalidParams) as info:
        CompactExecutor().validate_params(table_params("t", "Shared", target_file_size_mb=target))
    assert info.value.field == "target_file_size_mb"


@pytest.fixture
def layered(engine: Engine) -> Engine:
    engine.create_table(NS, "items", TableType.SHARED)
    for round_ in range(4):
        engine.insert_many(NS, "items", [{"id": i, "r": round_} for i in range(round_ * 2, 10)])
        if round_ == 2:
            engine.delete(NS, "items", 9)
        engine.flush_table(NS, "items")
    engine.insert(NS, "items", {"id": 0, "r": "hot"})
    return engine


def test_compaction_merges_and_keeps_scan_identical(layered: Engine) -> None:
    before = layered.scan(NS, "items")
    decision, _ = run_job(CompactExecutor(), table_params("items", "Shared"), layered)
    assert decision.outcome is Outcome.COMPLETED
    assert decision.message is not None and decision.message.startswith(
        "compacted 4 files into 1 in default:items (28 -> 10 rows")
    assert layered.scan(NS, "items") == before
    assert [s.rows for s in layered.segments(NS, "items")] == [10]
    files = list((layered.path / "segments" / NS / "items").rglob("*.parquet"))
    assert len(files) == 1


def test_nothing_to_compact_is_skipped(layered: Engine) -> None:
    run_job(CompactExecutor(), table_params("items", "Shared"), layered)
    decision, _ = run_job(CompactExecutor(), table_params("items", "Shared"), layered)
    assert decision.outcome is Outcome.SKIPPED


def test_segments_above_the_target_are_left_alone(layered: Engine) -> None:
    tiny = 1 / (1024 * 1024)  # one byte
    decision, _ = run_job(CompactExecutor(),
                          table_params("items", "Shared", target_file_size_mb=tiny), layered)
    assert decision.outcome is Outcome.SKIPPED
    assert len(layered.segments(NS, "items")) == 4


def test_cancelled_compaction_changes_nothing(layered: Engine) -> None:
    before = sorted(s.segment_id for s in layered.segments(NS, "items"))
    decision, _ = run_job(CompactExecutor(), table_params("items", "Shared"), layered,
                          cancel_after_progress=1)
    assert decision.outcome is Outcome.FAILED and "cancelled" in (decision.message or "")
    assert sorted(s.segment_id for s in layered.segments(NS, "items")) == before
    assert len(list((layered.path / "segments" / NS / "items").rglob("*.parquet"))) == 4


def test_user_segments_merge_only_with_their_own(engine: Engine) -> None:
    engine.create_table(NS, "users", TableType.USER)
    for round_ in range(2):
        for user in ("u1", "u2"):
            engine.insert(NS, "users", {"id": round_, "u": user}, user_id=user)
        engine.flush_table(NS, "users")
    before = engine.scan(NS, "users")
    run_job(CompactExecutor(), table_params("users", "User"), engine)
    assert sorted(s.user_id for s in engine.segments(NS, "users")) == ["u1", "u2"]
    assert engine.scan(NS, "users") == before


class _RewritesAfterListing:
    """The engine, except that right after the executor lists segments another job rewrites
    them (as a retention running beside the compaction does)."""

    def __init__(self, engine: Engine, rewrites: int) -> None:
        self._engine = engine
        self.rewrites = rewrites

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)

    def segments(self, ns: str, table: str) -> Any:
        listed = self._engine.segments(ns, table)
        if self.rewrites:
            self.rewrites -= 1
            self._engine.merge_segments(ns, table, [[s.segment_id for s in listed[:2]]])
        return listed


def test_segments_rewritten_meanwhile_are_planned_again(layered: Engine) -> None:
    before = layered.scan(NS, "items")
    racing = _RewritesAfterListing(layered, rewrites=1)
    decision, _ = run_job(CompactExecutor(), table_params("items", "Shared"), racing)
    assert decision.outcome is Outcome.COMPLETED, decision.message
    assert layered.scan(NS, "items") == before
    assert [s.rows for s in layered.segments(NS, "items")] == [10]


def test_segments_that_keep_changing_end_in_a_retry(layered: Engine) -> None:
    before = layered.scan(NS, "items")
    for _ in range(2):
        layered.insert_many(NS, "items", [{"id": 20, "r": "x"}])
        layered.flush_table(NS, "items")
    racing = _RewritesAfterListing(layered, rewrites=3)
    decision, _ = run_job(CompactExecutor(), table_params("items", "Shared"), racing)
    assert decision.outcome is Outcome.RETRY and "kept changing" in (decision.message or "")
    assert layered.scan(NS, "items") == [*before, {"id": 20, "r": "x"}]
