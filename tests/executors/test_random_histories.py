"""Random histories of writes and maintenance: ``scan`` always matches a plain model."""

from __future__ import annotations

import tempfile
from typing import Any

from executor_support import FakeClock, run_job, table_params
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kalam_actors.executors import (
    CompactExecutor,
    FlushExecutor,
    RetentionExecutor,
    StreamEvictionExecutor,
)
from kalam_actors.storage import Engine, RowNotFound, TableType

NS = "default"
PKS = st.integers(min_value=0, max_value=5)
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("insert"), PKS, st.integers(0, 9)),
        st.tuples(st.just("update"), PKS, st.integers(0, 9)),
        st.tuples(st.just("delete"), PKS),
        st.tuples(st.just("flush")),
        st.tuples(st.just("compact")),
        st.tuples(st.just("retention")),
    ),
    max_size=25,
)


def apply(engine: Engine, clock: FakeClock, model: dict[int, dict[str, Any]],
          op: tuple[Any, ...]) -> None:
    kind = op[0]
    if kind == "insert":
        model[op[1]] = {"id": op[1], "v": op[2]}
        engine.insert(NS, "t", model[op[1]])
    elif kind == "update":
        if op[1] in model:
            model[op[1]] = {**model[op[1]], "v": op[2]}
            engine.update(NS, "t", {"id": op[1], "v": op[2]})
        else:
            try:
                engine.update(NS, "t", {"id": op[1], "v": op[2]})
            except RowNotFound:
                return
            raise AssertionError(f"update of missing row {op[1]} succeeded")
    elif kind == "delete":
        assert engine.delete(NS, "t", op[1]) is (model.pop(op[1], None) is not None)
    elif kind == "flush":
        run_job(FlushExecutor(), table_params("t", "Shared"), engine)
    elif kind == "compact":
        run_job(CompactExecutor(), table_params("t", "Shared"), engine)
    else:
        clock.advance(2 * 3600)
        run_job(RetentionExecutor(), table_params("t", "Shared", retention_hours=1), engine)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=OPS)
def test_scan_always_matches_a_plain_dict(ops: list[tuple[Any, ...]]) -> None:
    clock = FakeClock()
    with tempfile.TemporaryDirectory() as folder, \
            Engine.open(folder, clock=clock, durable=False) as engine:
        engine.create_table(NS, "t", TableType.SHARED)
        model: dict[int, dict[str, Any]] = {}
        for op in ops:
            apply(engine, clock, model, op)
            assert engine.scan(NS, "t") == [model[k] for k in sorted(model)], op
        seqs = [v.seq for v in engine.versions(NS, "t")]
        assert len(seqs) == len(set(seqs))  # no version stored twice


STREAM_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("insert"), PKS, st.integers(0, 9)),
        st.tuples(st.just("delete"), PKS),
        st.tuples(st.just("flush")),
        st.tuples(st.just("compact")),
        st.tuples(st.just("tick"), st.integers(1, 90)),
        st.tuples(st.just("evict"), st.integers(1, 3)),
    ),
    max_size=25,
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=STREAM_OPS)
def test_eviction_removes_exactly_the_rows_written_longer_than_ttl_ago(
    ops: list[tuple[Any, ...]],
) -> None:
    ttl = 60
    clock = FakeClock()
    with tempfile.TemporaryDirectory() as folder, \
            Engine.open(folder, clock=clock, durable=False) as engine:
        engine.create_table(NS, "s", TableType.STREAM, ttl_seconds=ttl)
        model: dict[int, tuple[dict[str, Any], float]] = {}  # row, time of its last write
        for op in ops:
            kind = op[0]
            if kind == "insert":
                model[op[1]] = ({"id": op[1], "v": op[2]}, clock.now)
                engine.insert(NS, "s", model[op[1]][0])
            elif kind == "delete":
                engine.delete(NS, "s", op[1])
                model.pop(op[1], None)
            elif kind == "tick":
                clock.advance(op[1])
            elif kind in ("flush", "compact"):
                executor = FlushExecutor() if kind == "flush" else CompactExecutor()
                run_job(executor, table_params("s", "Stream"), engine)
            else:
                run_job(StreamEvictionExecutor(),
                        table_params("s", "Stream", ttl_seconds=ttl, batch_size=op[1]), engine)
                model = {k: v for k, v in model.items() if v[1] >= clock.now - ttl}
            assert engine.scan(NS, "s") == [model[k][0] for k in sorted(model)], op
