"""JobCleanup: pruning terminal job records by age, in bounded batches, beside a runtime."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kalam_actors import InvalidParams, JobStatus, JobStore, JobType, open_job_manager
from kalam_actors.executors.job_cleanup import JobCleanupExecutor
from kalam_actors.ids import JobId
from kalam_actors.model import JobDecision
from kalam_actors.store import StoreTxn, new_record
from kalam_actors.testing import make_context, make_job

DAY = 86_400 * 1_000_000
NOW = 1_800_000_000 * 1_000_000


@pytest.fixture
def store(tmp_path: Path) -> Iterator[JobStore]:
    with JobStore(tmp_path / "jobs") as s:
        yield s


def add(store: JobStore, created: int, finished: int | None,
        status: JobStatus = JobStatus.COMPLETED) -> str:
    """A job created at ``created`` that ended ``status`` at ``finished`` (or stays Queued)."""
    job_id = JobId.new(JobType.FLUSH)

    def write(txn: StoreTxn) -> None:
        rec = new_record(job_id, "{}", key=None, max_retries=0, now=created,
                         status=JobStatus.QUEUED)
        txn.insert(rec)
        if finished is not None:
            txn.move(rec, JobStatus.RUNNING, created)
            txn.move(rec, status, finished)

    store.write(write)
    return job_id


def ids(store: JobStore) -> set[str]:
    return {j.job_id for j in store.list_jobs()}


def test_prunes_only_terminal_jobs_finished_before_the_cutoff(store: JobStore) -> None:
    old = [add(store, NOW - 10 * DAY, NOW - 9 * DAY, s)
           for s in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED,
                     JobStatus.SKIPPED)]
    long_running = add(store, NOW - 10 * DAY, NOW - 1 * DAY)  # created before, ended after
    active = add(store, NOW - 10 * DAY, None)
    young = add(store, NOW - 1 * DAY, NOW - 1 * DAY)
    deleted = store.prune_history(NOW - 7 * DAY)
    assert deleted == 4
    assert ids(store) == {long_running, active, young}
    assert all(store.get_job(j) is None for j in old)
    counts = store.counts()
    assert sum(counts.values()) == 3
    assert counts[(JobStatus.QUEUED, JobType.FLUSH)] == 1


def test_batches_are_bounded_and_reported(store: JobStore, monkeypatch: Any) -> None:
    for _ in range(10):
        add(store, NOW - 30 * DAY, NOW - 30 * DAY)
    writes: list[int] = []
    real_write = store.write

    def counting_write(fn: Any, **kw: Any) -> Any:
        writes.append(1)
        return real_write(fn, **kw)

    monkeypatch.setattr(store, "write", counting_write)
    reports: list[int] = []
    assert store.prune_history(NOW, batch_size=3, on_batch=reports.append) == 10
    assert reports == [3, 6, 9, 10]
    # Four batches of at most 3 records; the fourth walks on through the empty ranges of the
    # other statuses and types in the same transaction.
    assert len(writes) == 4


def test_the_walk_stops_at_the_first_job_created_after_the_cutoff(
    store: JobStore, monkeypatch: Any,
) -> None:
    add(store, NOW - 9 * DAY, NOW - 9 * DAY)
    young = [add(store, NOW - DAY, NOW - DAY) for _ in range(50)]
    read: list[str] = []
    real_get = StoreTxn.get

    def spy(self: StoreTxn, job_id: str) -> Any:
        read.append(job_id)
        return real_get(self, job_id)

    monkeypatch.setattr(StoreTxn, "get", spy)
    assert store.prune_history(NOW - 7 * DAY, batch_size=1000) == 1
    assert len(read) == 2, "one old record, then the first young one ends the walk"
    assert ids(store) == set(young)


def test_cancelled_between_batches(store: JobStore) -> None:
    for _ in range(6):
        add(store, NOW - 30 * DAY, NOW - 30 * DAY)
    asked = iter([False, True])
    assert store.prune_history(NOW, batch_size=2, cancelled=lambda: next(asked)) == 2
    assert len(ids(store)) == 4


@pytest.mark.parametrize(("params", "field"), [
    ({"older_than_days": -1}, "older_than_days"),
    ({"older_than_days": "7"}, "older_than_days"),
    ({"batch_size": 0}, "batch_size"),
    ({"batch_size": 1.5}, "batch_size"),
    ({"before_us": "soon"}, "before_us"),
    ({"older_than": 7}, "older_than"),
])
def test_bad_params_are_refused(params: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidParams) as info:
        JobCleanupExecutor(None).validate_params(params)
    assert info.value.field == field


def test_executor_reports_progress_and_counts(store: JobStore) -> None:
    for _ in range(5):
        add(store, NOW - 30 * DAY, NOW - 30 * DAY)
    executor = JobCleanupExecutor(store, clock=lambda: NOW)
    job = make_job(JobType.JOB_CLEANUP, {"older_than_days": 7, "batch_size": 2})
    ctx, recorder = make_context(job)
    decision = executor.execute(ctx, job)
    assert decision == JobDecision.completed(
        "deleted 5 terminal job records older than 7 days")
    assert [p.done for p in recorder.progress] == [0, 2, 4, 5, 5]
    assert recorder.progress[-1].total == 5
    assert recorder.progress[0].total == 5
    again = executor.execute(ctx, job)
    assert again.outcome.value == "skipped"
    assert again.message == "no terminal jobs finished more than 7 days ago"


def test_executor_opens_a_store_from_its_path(store: JobStore) -> None:
    add(store, NOW - 30 * DAY, NOW - 30 * DAY)
    executor = JobCleanupExecutor(store.path, clock=lambda: NOW)
    job = make_job(JobType.JOB_CLEANUP, {"before_us": NOW - DAY})
    ctx, _ = make_context(job)
    assert executor.execute(ctx, job).message == (
        "deleted 1 terminal job records older than 7 days")


async def test_runs_beside_a_live_runtime(tmp_path: Path) -> None:
    """The runtime keeps working while its own JobCleanup job deletes its history."""
    with JobStore(tmp_path / "jobs") as store:
        old = [add(store, NOW - 30 * DAY, NOW - 30 * DAY) for _ in range(20)]
        executor = JobCleanupExecutor(store, clock=lambda: NOW)
        async with open_job_manager(tmp_path / "jobs", executors=[executor],
                                    durable=False) as manager:
            job_id = await manager.create_job(JobType.JOB_CLEANUP, {"batch_size": 7})
            job = await manager.wait_job(job_id, timeout_s=30)
            assert job.status is JobStatus.COMPLETED, job.message
            assert job.message == "deleted 20 terminal job records older than 7 days"
            assert all(store.get_job(j) is None for j in old)
            assert [j.job_id for j in store.list_jobs()] == [job_id]


def test_a_young_job_of_one_type_does_not_hide_old_jobs_of_another(store: JobStore) -> None:
    # Ids sort by type first ("CO-" < "FL-"): a young Compact job must not end the walk before
    # the old Flush jobs are reached.
    young_id = JobId.new(JobType.COMPACT)

    def write(txn: StoreTxn) -> None:
        rec = new_record(young_id, "{}", key=None, max_retries=0, now=NOW - DAY,
                         status=JobStatus.QUEUED)
        txn.insert(rec)
        txn.move(rec, JobStatus.RUNNING, NOW - DAY)
        txn.move(rec, JobStatus.COMPLETED, NOW - DAY)

    store.write(write)
    old = add(store, NOW - 10 * DAY, NOW - 9 * DAY)
    assert store.prune_history(NOW - 7 * DAY) == 1
    assert ids(store) == {young_id}
    assert store.get_job(old) is None
