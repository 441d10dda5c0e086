"""What a crash or a hostile caller leaves the engine: segment files no table references are
removed when the engine opens alone; creation times outlive rewrites; table definitions pass
one set of checks; limits and row counts are checked from metadata."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Any

import pytest
from engine_support import FakeClock

from kalam_actors.storage import (
    CorruptSegment,
    Engine,
    InvalidName,
    RestoreLimits,
    SimulatedCrash,
    TableType,
    check_table_spec,
)
from kalam_actors.storage.segments import parquet_rows

NS = "default"


def unreferenced(engine: Engine) -> set[str]:
    root = engine.path / "segments"
    named = {s.relpath for t in engine.list_tables() for s in engine.segments(t.namespace,
                                                                              t.name)}
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()} - named


def crash_a_flush(path: Path, clock: FakeClock, point: str) -> set[str]:
    """Open, write, crash a flush at ``point``, close; returns the files left unreferenced."""
    with Engine.open(path, clock=clock, durable=False) as engine:
        engine.create_table(NS, "t", TableType.USER)
        engine.insert_many(NS, "t", [{"id": i} for i in range(5)], user_id="u1")
        engine.flush_table(NS, "t")
        engine.insert(NS, "t", {"id": 1, "v": 2}, user_id="u1")

        def crash() -> None:
            raise SimulatedCrash

        engine.faults.set(point, crash)
        with pytest.raises(SimulatedCrash):
            engine.flush_table(NS, "t")
        return unreferenced(engine)


def test_opening_the_engine_alone_removes_files_no_table_references(
    tmp_path: Path, clock: FakeClock
) -> None:
    left = crash_a_flush(tmp_path / "e", clock, "after_segment_write")
    assert left
    (tmp_path / "e" / "segments" / "gone" / "table").mkdir(parents=True)
    (tmp_path / "e" / "segments" / "gone" / "table" / "x.parquet").write_bytes(b"left over")
    with Engine.open(tmp_path / "e", clock=clock, durable=False) as engine:
        assert unreferenced(engine) == set()
        assert engine.scan(NS, "t", user_id="u1") == [{"id": 0}, {"id": 1, "v": 2},
                                                      *({"id": i} for i in range(2, 5))]
        assert not (engine.path / "segments" / "gone").exists()


def test_files_stay_while_another_process_holds_the_engine(tmp_path: Path, clock: FakeClock
                                                          ) -> None:
    left = crash_a_flush(tmp_path / "e", clock, "after_segment_write")
    # A second open file description stands in for another process: flock tells them apart.
    other = os.open(tmp_path / "e" / "engine.lock", os.O_RDWR)
    try:
        fcntl.flock(other, fcntl.LOCK_SH)
        with Engine.open(tmp_path / "e", clock=clock, durable=False) as engine:
            assert unreferenced(engine) == left
            # Its shared lock is held while open: another process opening now would not sweep.
            probe = os.open(tmp_path / "e" / "engine.lock", os.O_RDWR)
            try:
                with pytest.raises(BlockingIOError):
                    fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
            finally:
                os.close(probe)
    finally:
        os.close(other)


def test_a_second_handle_in_the_same_process_does_not_sweep(tmp_path: Path, clock: FakeClock
                                                           ) -> None:
    with Engine.open(tmp_path / "e", clock=clock, durable=False) as first:
        first.create_table(NS, "t", TableType.SHARED)
        stray = first.path / "segments" / NS / "t" / "in-flight.parquet"
        stray.parent.mkdir(parents=True)
        stray.write_bytes(b"a write not yet committed")
        with Engine.open(tmp_path / "e", clock=clock, durable=False):
            assert stray.exists()


# -- creation times -------------------------------------------------------------------------

def created(engine: Engine, pk: int) -> set[Any]:
    return {v.created_us for v in engine.versions(NS, "s") if v.pk == str(pk)}


def test_a_rows_creation_time_outlives_updates_flushes_and_merges(
    engine: Engine, clock: FakeClock
) -> None:
    engine.create_table(NS, "s", TableType.STREAM, ttl_seconds=60)
    engine.insert(NS, "s", {"id": 1})
    born = engine.now_us()
    for _ in range(3):
        clock.advance(10)
        engine.update(NS, "s", {"id": 1, "n": 1})
        engine.flush_table(NS, "s")
    engine.merge_segments(NS, "s", [[s.segment_id for s in engine.segments(NS, "s")]])
    assert created(engine, 1) == {born}
    clock.advance(10)
    engine.delete(NS, "s", 1)
    assert created(engine, 1) == {None}  # deleted: no row, no creation time
    engine.insert(NS, "s", {"id": 1, "again": True})
    assert created(engine, 1) == {engine.now_us()}


def test_removing_rows_removes_their_creation_times(engine: Engine) -> None:
    engine.create_table(NS, "s", TableType.STREAM, ttl_seconds=60)
    engine.insert_many(NS, "s", [{"id": i} for i in range(3)])
    result = engine.purge(NS, "s", {("", "0"): max(v.seq for v in engine.versions(NS, "s"))})
    assert result.hot_rows == 1 and result.hot_bytes > 0
    engine.insert(NS, "s", {"id": 0})  # written again after the purge: a new row
    assert created(engine, 0) == {engine.now_us()}
    engine.drop_table_data(NS, "s", keep_metadata=True)
    engine.insert(NS, "s", {"id": 1})
    assert created(engine, 1) == {engine.now_us()}


# -- table definitions and limits -----------------------------------------------------------

@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"namespace": "a-b"}, "namespace"),
        ({"table": ""}, "table_name"),
        ({"table_type": "View"}, "table_type"),
        ({"primary_key": None}, "primary_key"),
        ({"ttl_seconds": -5}, "ttl_seconds"),
        ({"ttl_seconds": True}, "ttl_seconds"),
        ({"options": [1, 2]}, "options"),
        ({"options": {"f": object()}}, "options"),
    ],
)
def test_create_table_and_the_shared_check_refuse_alike(
    engine: Engine, kwargs: dict[str, Any], field: str
) -> None:
    spec: dict[str, Any] = {"namespace": NS, "table": "t", "table_type": "Stream",
                            "primary_key": "id", "ttl_seconds": 60, "options": None, **kwargs}
    with pytest.raises(InvalidName) as shared:
        check_table_spec(spec.pop("namespace"), spec.pop("table"), spec.pop("table_type"),
                         **spec)
    assert shared.value.field == field
    with pytest.raises(InvalidName) as created_:
        engine.create_table(kwargs.get("namespace", NS), kwargs.get("table", "t"),
                            kwargs.get("table_type", "Stream"),
                            primary_key=kwargs.get("primary_key", "id"),
                            ttl_seconds=kwargs.get("ttl_seconds", 60),
                            options=kwargs.get("options"))
    assert (created_.value.field, str(created_.value)) == (field, str(shared.value))


def test_restore_limits_are_checked_and_kept_per_engine(tmp_path: Path) -> None:
    with Engine.open(tmp_path / "a", durable=False) as default:
        assert default.restore_limits == RestoreLimits(1_000_000, 20_000_000, 32 << 30)
    limits = RestoreLimits(max_file_rows=5)
    with Engine.open(tmp_path / "b", durable=False, restore_limits=limits) as strict:
        assert strict.restore_limits is limits
    with pytest.raises(InvalidName, match="restore_limits must be a RestoreLimits"):
        Engine.open(tmp_path / "c", restore_limits={"max_file_rows": 5})  # type: ignore[arg-type]
    for bad in (0, -1, 1.5, True):
        with pytest.raises(InvalidName) as refused:
            RestoreLimits(max_total_bytes=bad)  # type: ignore[arg-type]
        assert refused.value.field == "max_total_bytes"


class _Meta:
    """Parquet metadata whose file total disagrees with its row groups."""

    num_rows = 10
    num_row_groups = 2

    class _Group:
        num_rows = 5_000_000

    def row_group(self, _i: int) -> Any:
        return self._Group()


def test_a_row_count_the_row_groups_contradict_is_refused() -> None:
    with pytest.raises(CorruptSegment, match="declares 10 rows but its row groups hold "
                                             "10000000"):
        parquet_rows(_Meta(), "x.parquet")
