"""CleanupExecutor: drop_table, truncate, remove_orphaned."""

from __future__ import annotations

from typing import Any

import pytest
from executor_support import run_job

from kalam_actors import CancelNotAllowed, InvalidParams, Outcome
from kalam_actors.executors import CleanupExecutor
from kalam_actors.storage import Engine, TableType
from kalam_actors.testing import make_context, make_job

NS = "default"


def params(op: str, table: str = "items", kind: str = "Shared") -> dict[str, Any]:
    return {"table_id": f"{NS}:{table}", "table_type": kind, "operation": op}


@pytest.fixture
def items(engine: Engine) -> Engine:
    engine.create_table(NS, "items", TableType.SHARED)
    engine.insert_many(NS, "items", [{"id": 1}, {"id": 2}])
    engine.flush_table(NS, "items")
    engine.insert(NS, "items", {"id": 3})
    return engine


def table_dir(engine: Engine) -> Any:
    return engine.path / "segments" / NS / "items"


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ({"table_id": "default.items", "table_type": "Shared", "operation": "truncate"},
         "table_id"),
        ({"table_id": "default:../x", "table_type": "Shared", "operation": "truncate"},
         "table_id"),
        ({"table_id": "default:items", "table_type": "Shared", "operation": "vacuum"},
         "operation"),
        ({"table_id": "default:items", "table_type": "Shared"}, "operation"),
        ({"table_id": "default:items", "operation": "truncate"}, "table_type"),
    ],
)
def test_bad_params_name_the_field(bad: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidParams) as info:
        CleanupExecutor().validate_params(bad)
    assert info.value.field == field


def test_drop_table_removes_rows_files_manifest_and_metadata(items: Engine) -> None:
    size = sum(f.stat().st_size for f in table_dir(items).rglob("*.parquet"))
    decision, _ = run_job(CleanupExecutor(), params("drop_table"), items)
    assert decision.outcome is Outcome.COMPLETED
    assert decision.message == (f"drop_table default:items: deleted 1 files, freed {size} bytes, "
                                f"1 hot rows")
    assert items.table_info(NS, "items") is None
    assert not table_dir(items).exists()
    again, _ = run_job(CleanupExecutor(), params("drop_table"), items)
    assert again.outcome is Outcome.SKIPPED


def test_truncate_keeps_the_table_empty(items: Engine) -> None:
    decision, _ = run_job(CleanupExecutor(), params("truncate"), items)
    assert decision.outcome is Outcome.COMPLETED
    assert items.table_info(NS, "items") is not None
    assert items.scan(NS, "items") == []
    assert items.table_stats(NS, "items").to_dict() == {
        "hot_rows": 0, "segments": 0, "cold_rows": 0, "bytes": 0}
    assert list(table_dir(items).rglob("*.parquet")) == []


def test_remove_orphaned_deletes_only_unnamed_files(items: Engine) -> None:
    named = sorted(table_dir(items).rglob("*.parquet"))
    (table_dir(items) / "0000_orphan.parquet").write_bytes(b"x" * 10)
    (table_dir(items) / ".tmp-0001.parquet").write_bytes(b"y" * 5)
    decision, _ = run_job(CleanupExecutor(), params("remove_orphaned"), items)
    assert decision.message == "remove_orphaned default:items: deleted 2 files, freed 15 bytes"
    assert sorted(table_dir(items).rglob("*.parquet")) == named
    assert items.scan(NS, "items") == [{"id": 1}, {"id": 2}, {"id": 3}]


def test_type_mismatch_fails_and_touches_nothing(items: Engine) -> None:
    decision, _ = run_job(CleanupExecutor(), params("drop_table", kind="Stream"), items)
    assert decision.outcome is Outcome.FAILED
    assert decision.message == "table default:items is a Shared table, not Stream as the job says"
    assert items.scan(NS, "items") == [{"id": 1}, {"id": 2}, {"id": 3}]


def test_truncate_of_a_missing_table_is_skipped(engine: Engine) -> None:
    decision, _ = run_job(CleanupExecutor(), params("truncate", table="ghost"), engine)
    assert decision.outcome is Outcome.SKIPPED


def test_cleanup_cannot_be_cancelled(items: Engine) -> None:
    job = make_job(CleanupExecutor.job_type, params("truncate"))
    ctx, _ = make_context(job, storage=items)
    with pytest.raises(CancelNotAllowed):
        CleanupExecutor().cancel(ctx, job)
    assert CleanupExecutor.rerun_on_recovery is True
