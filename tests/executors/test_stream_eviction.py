"""StreamEvictionExecutor: expired rows go batch by batch; cancellation keeps finished
batches."""

from __future__ import annotations

from typing import Any

import pytest
from executor_support import FakeClock, run_job, table_params

from kalam_actors import InvalidParams, Outcome
from kalam_actors.executors import StreamEvictionExecutor
from kalam_actors.executors._params import human_bytes
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
    before = events.table_stats(NS, "events").bytes
    decision, rec = run_job(StreamEvictionExecutor(), params(60, batch=4), events)
    assert decision.outcome is Outcome.COMPLETED
    # Ids 0-9 were all cold: what was freed is what the segments shrank by.
    freed = before - events.table_stats(NS, "events").bytes
    assert freed > 0
    assert decision.message == ("evicted 10 expired rows (ttl 60s) from default:events in "
                                f"3 batches, {human_bytes(freed)} freed")
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


def test_rows_expire_by_creation_not_by_their_last_write(
    events: Engine, clock: FakeClock
) -> None:
    clock.advance(20)  # now = t0 + 70 s: ids 0-9 were created more than 60 s ago
    # Updated just now, flushed into a young segment: created at t0 + 3 s, so expired
    events.update(NS, "events", {"id": 3, "seen": True})
    events.flush_table(NS, "events")
    # Updated just now, created at t0 + 15 s: lives on, as it did
    events.update(NS, "events", {"id": 15, "seen": True})
    # Deleted and written again just now: a new row, created now
    events.delete(NS, "events", 5)
    events.insert(NS, "events", {"id": 5, "again": True})
    decision, _ = run_job(StreamEvictionExecutor(), params(60), events)
    assert decision.outcome is Outcome.COMPLETED
    assert decision.message is not None and decision.message.startswith(
        "evicted 9 expired rows (ttl 60s)")
    assert ids(events) == [5, *range(10, 50)]
    # Every version of an evicted row went, the young segment's too: nothing resurfaces.
    assert {v.pk for v in events.versions(NS, "events")} == {str(i) for i in [5, *range(10, 50)]}


def test_freed_bytes_count_hot_rows_too(events: Engine, clock: FakeClock) -> None:
    clock.advance(200)  # everything expired: the segment of ids 0-19 and 30 hot rows
    segment_bytes = events.table_stats(NS, "events").bytes
    decision, _ = run_job(StreamEvictionExecutor(), params(60), events)
    assert events.table_stats(NS, "events").to_dict() == {
        "hot_rows": 0, "segments": 0, "cold_rows": 0, "bytes": 0}
    message = decision.message or ""
    assert message.startswith("evicted 50 expired rows (ttl 60s) from default:events in 1 "
                              "batches, ") and message.endswith(" freed")
    # More than the segment alone: the 30 hot rows' keys and values count too.
    freed = message.removesuffix(" freed").rsplit(", ", 1)[1]
    assert freed.endswith("KiB") and float(freed.split()[0]) * 1024 > segment_bytes


def test_creation_survives_hot_rewrites_flushes_and_compaction(
    events: Engine, clock: FakeClock
) -> None:
    # Given row 100 created at t, rewritten in the hot store, flushed, rewritten again, flushed
    # and compacted (which keeps only its latest version, written at t + 50 s)
    events.insert(NS, "events", {"id": 100})
    for _ in range(2):
        clock.advance(25)
        events.update(NS, "events", {"id": 100, "seen": True})
        events.flush_table(NS, "events")
    events.merge_segments(NS, "events", [[s.segment_id for s in events.segments(NS, "events")]])
    assert [v.ts for v in events.versions(NS, "events") if v.pk == "100"] == [
        events.now_us()]
    clock.advance(15)
    # When it is 65 s old (15 s since its last write), with a ttl of 60 s
    decision, _ = run_job(StreamEvictionExecutor(), params(60), events)
    # Then it expires by its creation
    assert decision.outcome is Outcome.COMPLETED
    assert 100 not in ids(events)
