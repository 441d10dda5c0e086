"""Running means running: a job is Running from the moment its executor starts it.

Jobs handed ahead to an actor (prefetch) are only claimed in the runtime's memory: the store
keeps them Queued, so they can be cancelled as Queued jobs, a shutdown gives them back, and a
restart finds them Queued, never "Server restarted". An executor that is not safe to re-run
starts only once its Running state is on disk.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
from runtime_support import Gate, ScriptedExecutor, wait_status

from kalam_actors import (
    JobDecision,
    JobManager,
    JobStatus,
    JobStore,
    JobType,
    open_job_manager,
)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "jobs"


async def handed_ahead(manager: JobManager, n: int) -> None:
    """Wait (virtual time) until ``n`` attempts are held by actors, started or not."""
    with trio.fail_after(10):
        while manager.statistics().in_flight < n:
            await trio.sleep(0.001)


async def test_a_job_handed_ahead_is_queued_and_cancellable_even_if_its_type_is_not(
    path: Path, vclock: object
) -> None:
    # Given an actor busy with one job and a second handed ahead to it
    gate = Gate()
    ex = ScriptedExecutor(JobType.CLEANUP, [gate, JobDecision.completed("second")],
                          cancellable=False, prefetch=2)
    async with open_job_manager(path, executors=[ex], max_concurrent=2) as manager:
        first = await manager.create_job(JobType.CLEANUP, {})
        await gate.wait_entered()
        second = await manager.create_job(JobType.CLEANUP, {})
        await handed_ahead(manager, 2)
        # Then the second is Queued, not started
        job = await manager.get_job(second)
        assert job is not None and job.status is JobStatus.QUEUED and job.started_at is None
        # When it is cancelled: a Cleanup that never started may be
        cancelled = await manager.cancel_job(second)
        assert cancelled.status is JobStatus.CANCELLED
        gate.opened.set()
        assert (await manager.wait_job(first)).status is JobStatus.COMPLETED
    # Then it never ran
    assert [job_id for job_id, _ in ex.attempts] == [first]


async def test_shutdown_gives_back_what_was_handed_ahead_and_a_restart_runs_it(
    path: Path, vclock: object
) -> None:
    # Given a running job and a second one handed ahead to the same actor
    gate = Gate()
    ex = ScriptedExecutor(script=[gate, JobDecision.completed("second")], prefetch=2)
    async with open_job_manager(path, executors=[ex], max_concurrent=2,
                                shutdown_timeout_s=0.5) as manager:
        first = await manager.create_job(JobType.FLUSH, {})
        await gate.wait_entered()
        second = await manager.create_job(JobType.FLUSH, {})
        await handed_ahead(manager, 2)
    # When the runtime shuts down (the running job is cancelled past the timeout)
    # Then the second never ran, and the store still has it Queued
    assert [job_id for job_id, _ in ex.attempts] == [first]
    with JobStore(path) as store:
        job = store.get_job(second)
        assert job is not None and job.status is JobStatus.QUEUED and job.started_at is None
    # And a restart runs it as a fresh first attempt: recovery did not fail it
    after = ScriptedExecutor(script=[JobDecision.completed("ran once")])
    async with open_job_manager(path, executors=[after]) as manager:
        job = await manager.wait_job(second)
    assert job.status is JobStatus.COMPLETED and job.message == "ran once"
    assert job.retry_count == 0 and after.attempts == [(second, 1)]


async def test_a_job_not_safe_to_re_run_is_running_on_disk_before_its_first_line(
    path: Path, vclock: object
) -> None:
    seen: list[tuple[JobStatus, bool]] = []

    def first_line(ctx, job):  # type: ignore[no-untyped-def]
        # Read the store as another reader would, from the executor's own thread.
        with JobStore(path) as store:
            stored = store.get_job(ctx.job_id)
        assert stored is not None
        seen.append((stored.status, stored.started_at is not None))
        return JobDecision.completed()

    ex = ScriptedExecutor(script=[first_line], rerun_on_recovery=False)
    async with open_job_manager(path, executors=[ex]) as manager:
        for _ in range(3):
            await manager.wait_job(await manager.create_job(JobType.FLUSH, {}))
    assert seen == [(JobStatus.RUNNING, True)] * 3


async def test_the_executor_sees_its_job_running(path: Path, vclock: object) -> None:
    seen = []

    def look(ctx, job):  # type: ignore[no-untyped-def]
        seen.append((job.status, job.started_at is not None, job.retry_count))
        return JobDecision.retry("again") if ctx.attempt == 1 else JobDecision.completed()

    for rerun in (False, True):
        ex = ScriptedExecutor(script=[look], rerun_on_recovery=rerun)
        async with open_job_manager(path, executors=[ex]) as manager:
            job = await manager.wait_job(await manager.create_job(JobType.FLUSH, {}))
        assert job.status is JobStatus.COMPLETED
    assert seen == [(JobStatus.RUNNING, True, 0), (JobStatus.RUNNING, True, 1)] * 2


async def test_a_cancel_reaches_a_job_waiting_to_start(path: Path, vclock: object) -> None:
    # A Queued job claimed by a busy actor of another type is cancelled at once, as Queued.
    gate = Gate()
    busy = ScriptedExecutor(script=[gate], prefetch=4)
    async with open_job_manager(path, executors=[busy], max_concurrent=4) as manager:
        running = await manager.create_job(JobType.FLUSH, {})
        await gate.wait_entered()
        waiting = [await manager.create_job(JobType.FLUSH, {}) for _ in range(3)]
        await handed_ahead(manager, 4)
        for job_id in waiting:
            assert (await manager.cancel_job(job_id)).status is JobStatus.CANCELLED
        assert (await manager.get_job(running)).status is JobStatus.RUNNING  # type: ignore[union-attr]
        gate.opened.set()
        await wait_status(manager, running, JobStatus.COMPLETED)
    assert [job_id for job_id, _ in busy.attempts] == [running]
