"""Acceptance for issue 7: the runtime is killed with SIGKILL at moments this suite chooses,
and after every restart it has lost nothing it acknowledged.

Moments: while the runtime is starting (opening the store, recovering); the instant the
restarted runtime is ready; mid-stream after a burst of
acknowledgements; while a job waits to be retried; while a Flush, a Compact or a Backup job
is running; and exactly inside the engine's flush and compaction (after the snapshot, after the
new segment files are durable but before the manifest commit, after the commit but before old
files are deleted), reached through the engine's fault hooks. After each kill the reliability
harness checks: every acknowledged job exists, no terminal job changed, every acknowledged
cancel stands, indexes agree with the records, at most one active job per idempotency key, no
attempt started twice, no job still Running from before the crash once recovery is done, and
the engine's scan equals the rows whose insert returned. Finally the runtime drains the store
and every job ends.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "reliability"))

from kill9_harness import KillHarness
from reliability_support import read_lines, report

FAULT_POINTS = [
    "flush_table:after_snapshot",
    "flush_table:after_segment_write",
    "flush_table:after_commit",
    "merge_segments:after_segment_write",
    "merge_segments:after_commit",
]


def _running(prefix: str):  # type: ignore[no-untyped-def]
    return lambda records: any(
        k.startswith(prefix) and b'"s":"R"' in v for k, v in records.items()
    )


def _retrying(records: dict[str, bytes]) -> bool:
    return any(b'"s":"Y"' in v for v in records.values())


@pytest.fixture
def harness(tmp_path: Path):  # type: ignore[no-untyped-def]
    h = KillHarness(tmp_path, seed=11)
    yield h
    h.close()


def test_kill9_at_chosen_moments_loses_nothing(harness: KillHarness) -> None:
    # Given a store with work of every kind in it
    harness.cycle(window=1.0)
    # When the runtime is killed the instant it is ready (recovery just done)
    harness.cycle(window=0.0)
    # and right after a burst of acknowledgements
    acks = len([line for line in read_lines(harness.journal) if line[0] == "ACK"])
    harness.cycle_when(
        lambda _records: len([ln for ln in read_lines(harness.journal) if ln[0] == "ACK"])
        >= acks + 25,
        "after_25_acks",
    )
    # and while jobs wait for their retry, or Flush / Compact / Backup jobs run
    caught = {
        "retrying": harness.cycle_when(_retrying, "retrying"),
        "flush": harness.cycle_when(_running("FL-"), "flush_running"),
        "compact": harness.cycle_when(_running("CO-"), "compact_running"),
        "backup": harness.cycle_when(_running("BK-"), "backup_running"),
    }
    # and while it is starting: importing, opening the store, recovering
    for delay in (0.2, 0.5, 0.8, 1.2):
        harness.cycle_starting(delay)
    # and exactly inside flush and compaction
    for spec in FAULT_POINTS:
        harness.cycle_at(spec)
    # Then after all of it the runtime drains the store and every job ends
    harness.start(drain=True)
    harness.finish_drain()
    harness.check_drained()
    assert caught["retrying"] and caught["flush"], caught
    report("acceptance_kill9", cycles_survived=harness.cycles,
           fault_points=len(FAULT_POINTS), recovered_running=harness.recovered_running,
           lost=0, **harness.figures)
