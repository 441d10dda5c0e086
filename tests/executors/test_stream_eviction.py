"""StreamEvictionExecutor: expired rows go batch by batch; cancellation keeps finished
batches."""

from __future__ import annotations

from typing import Any

import pytest
from executor_support import FakeClock, run_job, table_params

from kalam_actors import InvalidParams, Outcome
from kalam_actors.executors import StreamEvictionExecutor
from kalam_actors.storage import Engine, TableType

NS = "default"


def params(ttl: Any = 60, batch: Any = None, kind: str = "Stream", table: str = "events"
           ) -> dict[str, Any]:
    extra = {} if batch is None else {"batch_size": batch}
    return table_params(table, kind, ttl_seconds=ttl, **extra)


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        (params(kind="Shared"), "table_type"),
        (params(kind="User"), "table_type"),
        (params(ttl=0), "ttl_seconds"),
        (params(ttl=1.5), "ttl_seconds"),
        (params(batch=0), "batch_size"),
        (params(batch="10"), "batch_size"),
        (table_params("events", "Stream"), "ttl_seconds"),
    ],
)
def test_bad_params_name_the_field(bad: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidParams) as info:
        StreamEvictionExecutor().validate_params(bad)
    assert info.value.field == field


def test_batch_size_defaults_to_ten_thousand() -> None:
    StreamEvictionExecutor().validate_params(params())


@pytest.fixture
def events(engine: Engine, clock: FakeClock) -> Engine:
    """Ids 0-49 written one second apart (0 oldest); 0-19 flushed to a segment."""
    engine.create_table(NS, "events", TableType.STREAM, ttl_seconds=60)
    for i in range(50):
        engine.insert(NS, "events", {"id": i})
        clock.advance(1)
        if i == 19:
            engine.flush_table(NS, "events")
    return engine


def ids(engine: Engine) -> list[int]:
    return [row["id"] for row in engine.scan(NS, "events")]


def test_expired_rows_are_evicted_hot_and_cold(events: Engine, clock: FakeClock) -> None:
    clock.advance(20)  # now = t0 + 70 s: ids 0-9 are older than 60 s
    decision, rec = run_job(StreamEvictionExecutor(), params(60, batch=4), events)
    assert decision.outcome is Outcome.COMPLETED
    assert decision.message == ("evicted 10 expired rows (ttl 60s) from default:events in "
                                "3 batches")
    assert ids(events) == list(range(10, 50))
    assert sorted(int(v.pk) for v in events.versions(NS, "events")) == list(range(10, 50))
    assert [p.done for p in rec.progress] == [0, 4, 8, 10]


def test_cancel_halfway_keeps_exactly_the_finished_batches(
    events: Engine, clock: FakeClock
) -> None:
    clock.advance(100)  # everything is expired
    # Reports: the start, then one per batch; cancel right after batch 2 finishes.
    decision, _ = run_job(StreamEvictionExecutor(), params(60, batch=10), events,
                            cancel_after_progress=3)
    assert decision.outcome is Outcome.FAILED
    assert decision.message == "cancelled: evicted 20 rows in 2 of 5 batches"
    assert ids(events) == list(range(20, 50))


def test_nothing_expired_is_skipped(events: Engine) -> None:
    decision, _ = run_job(StreamEvictionExecutor(), params(3600), events)
    assert (decision.outcome, decision.message) == (
        Outcome.SKIPPED, "no rows older than 3600s in default:events")
    assert len(ids(events)) == 50


def test_a_table_that_is_not_a_stream_fails(engine: Engine) -> None:
    engine.create_table(NS, "events", TableType.SHARED)
    decision, _ = run_job(StreamEvictionExecutor(), params(), engine)
    assert decision.outcome is Outcome.FAILED
    assert decision.message == ("table default:events is a Shared table, not Stream as the job "
                                "says")


def test_updated_rows_live_on(events: Engine, clock: FakeClock) -> None:
    clock.advance(20)
    events.update(NS, "events", {"id": 3, "seen": True})
    run_job(StreamEvictionExecutor(), params(60), events)
    assert ids(events) == [3, *range(10, 50)]
