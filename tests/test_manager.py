"""The job manager's behaviour beyond the seed's scenarios: cancellation, concurrency, order,
actor faults, timeouts, outside submitters, locking, the blocking facade, statistics."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import trio
from runtime_support import (
    ExplodingCancelExecutor,
    Forever,
    Gate,
    RefusingExecutor,
    ScriptedExecutor,
    wait_status,
)

from kalam_actors import (
    CancelNotAllowed,
    IdempotentConflict,
    InvalidParams,
    InvalidTransition,
    JobDecision,
    JobId,
    JobNotFound,
    JobStatus,
    JobStore,
    JobType,
    RuntimeFailed,
    StoreLocked,
    UnknownJobType,
    open_job_manager,
    start_job_manager,
)
from kalam_actors.schedules import ScheduledJob
from supervisors import Intensity

S = JobStatus


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "jobs"


# ---------------------------------------------------------------- cancellation


async def test_cancel_queued_and_retrying_jobs_at_once(path: Path, vclock: object) -> None:
    gate = Gate()
    busy = ScriptedExecutor(script=[gate])
    retrying = ScriptedExecutor(JobType.COMPACT, script=[JobDecision.retry("x", 60_000)])
    async with open_job_manager(path, executors=[busy, retrying], max_concurrent=2) as manager:
        await manager.create_job(JobType.FLUSH, {})
        await gate.wait_entered()
        queued = await manager.create_job(JobType.FLUSH, {})
        retry = await manager.create_job(JobType.COMPACT, {})
        await wait_status(manager, retry, S.RETRYING)
        for job_id in (queued, retry):
            job = await manager.cancel_job(job_id)
            assert job.status is S.CANCELLED and job.message == "Cancelled by user"
        gate.opened.set()
    assert len(retrying.attempts) == 1  # the cancelled retry never ran again


async def test_cancel_running_job_ends_cancelled_whatever_execute_returns(
    path: Path, vclock: object
) -> None:
    gate = Gate()
    async with open_job_manager(path, executors=[ScriptedExecutor(script=[gate])]) as manager:
        job_id = await manager.create_job(JobType.FLUSH, {})
        await gate.wait_entered()
        await manager.cancel_job(job_id)
        job = await manager.wait_job(job_id)
    assert gate.saw_cancel
    assert job.status is S.CANCELLED and job.message == "Cancelled by user"


async def test_cancel_refused_by_the_executor_leaves_the_job_alone(
    path: Path, vclock: object
) -> None:
    gate = Gate()
    async with open_job_manager(path, executors=[RefusingExecutor(script=[gate])]) as manager:
        job_id = await manager.create_job(JobType.FLUSH, {})
        await gate.wait_entered()
        with pytest.raises(CancelNotAllowed, match="never stops halfway"):
            await manager.cancel_job(job_id)
        assert (await manager.get_job(job_id)).status is S.RUNNING  # type: ignore[union-attr]
        gate.opened.set()
        job = await manager.wait_job(job_id)
    assert job.status is S.COMPLETED and not gate.saw_cancel


@pytest.mark.parametrize("executor_class", [ScriptedExecutor, ExplodingCancelExecutor])
async def test_cancel_of_non_cancellable_or_exploding_cancel(
    path: Path, vclock: object, executor_class: type[ScriptedExecutor]
) -> None:
    gate = Gate()
    cancellable = executor_class is not ScriptedExecutor
    ex = executor_class(script=[gate], cancellable=cancellable)
    async with open_job_manager(path, executors=[ex]) as manager:
        job_id = await manager.create_job(JobType.FLUSH, {})
        await gate.wait_entered()
        with pytest.raises(CancelNotAllowed):
            await manager.cancel_job(job_id)
        gate.opened.set()
        assert (await manager.wait_job(job_id)).status is S.COMPLETED


async def test_cancel_of_terminal_or_unknown_job(path: Path, vclock: object) -> None:
    async with open_job_manager(path, executors=[ScriptedExecutor()]) as manager:
        job_id = await manager.create_job(JobType.FLUSH, {})
        await manager.wait_job(job_id)
        with pytest.raises(InvalidTransition, match="Cannot cancel job in status Completed"):
            await manager.cancel_job(job_id)
        with pytest.raises(JobNotFound):
            await manager.cancel_job(JobId.new(JobType.FLUSH))


async def test_cancel_from_another_process_reaches_a_running_job(
    path: Path, vclock: object
) -> None:
    gate = Gate()
    async with open_job_manager(path, executors=[ScriptedExecutor(script=[gate])],
                                poll_interval_s=0.05) as manager:
        job_id = await manager.create_job(JobType.FLUSH, {})
        await gate.wait_entered()
        outside = JobStore(path, executors=[])
        verdict = await trio.to_thread.run_sync(outside.cancel_job, job_id)
        outside.close()
        assert verdict.job_id == job_id
        job = await manager.wait_job(job_id)
    assert job.status is S.CANCELLED and gate.saw_cancel


# ---------------------------------------------------------------- concurrency and order


async def test_never_more_than_max_concurrent_and_in_creation_order(
    path: Path, vclock: object
) -> None:
    running = 0
    most = 0
    order: list[str] = []
    lock = threading.Lock()

    def body(ctx, job):  # type: ignore[no-untyped-def]
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
            order.append(job.job_id)
        threading.Event().wait(0.002)
        with lock:
            running -= 1
        return JobDecision.completed()

    ex = ScriptedExecutor(script=[body], actors=4, prefetch=1)
    async with open_job_manager(path, executors=[ex], max_concurrent=3) as manager:
        ids = await manager.create_jobs([(JobType.FLUSH, {"i": i}) for i in range(40)])
        jobs = [await manager.wait_job(job_id) for job_id in ids]
    assert most <= 3 and sorted(order) == sorted(ids)
    # Ready jobs start in creation order: start times never go backwards along the ids.
    starts = [j.started_at for j in jobs]
    assert starts == sorted(starts)  # type: ignore[type-var]


async def test_other_types_keep_running_while_one_type_is_busy(
    path: Path, vclock: object
) -> None:
    gate = Gate()
    busy = ScriptedExecutor(script=[gate])
    quick = ScriptedExecutor(JobType.COMPACT)
    async with open_job_manager(path, executors=[busy, quick], max_concurrent=4) as manager:
        await manager.create_job(JobType.FLUSH, {})
        await gate.wait_entered()
        done = [await manager.wait_job(await manager.create_job(JobType.COMPACT, {}))
                for _ in range(5)]
        gate.opened.set()
    assert all(j.status is S.COMPLETED for j in done)


async def test_bulk_create_is_all_or_nothing(path: Path, vclock: object) -> None:
    gate = Gate()
    async with open_job_manager(path, executors=[ScriptedExecutor(script=[gate])]) as manager:
        held = await manager.create_job(JobType.FLUSH, {}, idempotency_key="taken")
        with pytest.raises(IdempotentConflict):
            await manager.create_jobs([(JobType.FLUSH, {}), (JobType.FLUSH, {})],
                                      idempotency_keys=["free", "taken"])
        with pytest.raises(InvalidParams, match="bad"):
            await manager.create_jobs([(JobType.FLUSH, {}), (JobType.FLUSH, {"bad": 1})])
        assert [j.job_id for j in await manager.list_jobs()] == [held]
        gate.opened.set()


async def test_unknown_type_or_unregistered_type_is_refused(path: Path, vclock: object) -> None:
    async with open_job_manager(path, executors=[ScriptedExecutor()]) as manager:
        with pytest.raises(UnknownJobType, match="Vacuum"):
            await manager.create_job("Vacuum", {})
        with pytest.raises(UnknownJobType, match="no executor is registered for job type Compact"):
            await manager.create_job(JobType.COMPACT, {})
        assert await manager.list_jobs() == []


async def test_concurrent_creates_with_one_key_make_one_job(path: Path, vclock: object) -> None:
    gate = Gate()
    made: list[str] = []
    conflicts: list[str] = []
    async with open_job_manager(path, executors=[ScriptedExecutor(script=[gate])]) as manager:

        async def create() -> None:
            try:
                made.append(await manager.create_job(JobType.FLUSH, {}, idempotency_key="one"))
            except IdempotentConflict as exc:
                conflicts.append(exc.existing_job_id)

        async with trio.open_nursery() as nursery:
            for _ in range(300):
                nursery.start_soon(create)
        gate.opened.set()
    assert len(made) == 1 and len(conflicts) == 299 and set(conflicts) == set(made)


async def test_a_caller_cancelled_while_waiting_leaves_the_runtime_serving(
    path: Path, vclock: object
) -> None:
    """A create_job whose caller is cancelled while it waits for its commit may still create
    the job; the answer, when the commit lands, must wake nobody and break nothing."""
    executor = ScriptedExecutor()
    async with open_job_manager(path, executors=[executor]) as manager:
        with trio.CancelScope() as scope:
            scope.cancel()  # the wait for the answer is cancelled at once; the job was sent
            await manager.create_job(JobType.FLUSH, {"n": 1})
        assert scope.cancelled_caught
        after = await manager.create_job(JobType.FLUSH, {"n": 2})
        assert (await manager.wait_job(after)).status is S.COMPLETED
        jobs = await manager.list_jobs()
        assert [j.params["n"] for j in jobs] == [1, 2]  # the abandoned call's job was created
        for job in jobs:
            assert (await manager.wait_job(job.job_id)).status is S.COMPLETED


# ---------------------------------------------------------------- outside submitters


async def test_jobs_submitted_by_another_store_are_picked_up(path: Path, vclock: object) -> None:
    async with open_job_manager(path, executors=[ScriptedExecutor()],
                                poll_interval_s=0.25) as manager:
        outside = JobStore(path, executors=[])
        job_id = outside.create_job(JobType.FLUSH, {})
        start = trio.current_time()
        job = await manager.wait_job(job_id)
        assert trio.current_time() - start <= 1.0
        outside.close()
    assert job.status is S.COMPLETED


# ---------------------------------------------------------------- actor faults


class Dies(ScriptedExecutor):
    pass


async def test_actor_whose_thread_dies_is_restarted_and_the_job_retried(
    path: Path, vclock: object
) -> None:
    ex = ScriptedExecutor(script=[SystemExit("thread gone"), JobDecision.completed("second try")])
    async with open_job_manager(path, executors=[ex]) as manager:
        job = await manager.wait_job(await manager.create_job(JobType.FLUSH, {}))
        restarts = manager.statistics().actor_restarts
    assert job.status is S.COMPLETED and job.retry_count == 1 and job.message == "second try"
    assert "SystemExit: thread gone" in (job.exception_trace or "")
    assert restarts == 1


async def test_garbage_instead_of_a_decision_is_a_failed_attempt(
    path: Path, vclock: object
) -> None:
    ex = ScriptedExecutor(script=[lambda ctx, job: "done!", JobDecision.completed()])
    async with open_job_manager(path, executors=[ex]) as manager:
        job = await manager.wait_job(await manager.create_job(JobType.FLUSH, {}))
    assert job.status is S.COMPLETED and job.retry_count == 1
    assert "returned 'done!', not a JobDecision" in (job.exception_trace or "")


async def test_actors_crashing_past_the_intensity_stop_the_runtime(
    path: Path, vclock: object
) -> None:
    ex = ScriptedExecutor(script=[SystemExit("again and again")])
    with pytest.raises(RuntimeFailed, match="crashed too often"):
        async with open_job_manager(path, executors=[ex],
                                    actor_intensity=Intensity(max_restarts=2, period_s=60)) as m:
            await m.create_jobs([(JobType.FLUSH, {}) for _ in range(5)])
            await trio.sleep_forever()
    with JobStore(path, executors=[]) as store:
        assert len(store.list_jobs()) == 5  # nothing acknowledged was lost


async def test_stuck_attempt_times_out_and_the_actor_is_replaced(
    path: Path, vclock: object
) -> None:
    stuck = Forever()
    other = ScriptedExecutor(JobType.FLUSH)
    try:
        async with open_job_manager(path, executors=[stuck, other]) as manager:
            job_id = await manager.create_job(JobType.BACKUP, {}, timeout_s=5.0, max_retries=0)
            job = await manager.wait_job(job_id)
            # The runtime kept serving other types, and the replaced actor works.
            assert (await manager.wait_job(await manager.create_job(JobType.FLUSH, {}))).status \
                is S.COMPLETED
            assert manager.statistics().actor_restarts == 1
    finally:
        stuck.release.set()
    assert job.status is S.FAILED and "ran past its 5 s limit" in (job.message or "")
    assert job.finished_at - job.started_at >= __import__("datetime").timedelta(seconds=5)  # type: ignore[operator]


# ---------------------------------------------------------------- locking and lifecycle


async def test_second_runtime_on_one_store_is_refused(path: Path, vclock: object) -> None:
    async with open_job_manager(path, executors=[ScriptedExecutor()]):
        with pytest.raises(StoreLocked) as info:
            async with open_job_manager(path, executors=[ScriptedExecutor()]):
                pass
        import os

        assert info.value.pid == os.getpid()


def test_runtime_in_another_process_is_refused(path: Path) -> None:
    code = (
        "import sys, trio\n"
        "from kalam_actors import open_job_manager, StoreLocked\n"
        "from kalam_actors.executors import builtin_executors\n"
        "async def main():\n"
        "    try:\n"
        f"        async with open_job_manager({str(path)!r}, executors=builtin_executors()):\n"
        "            pass\n"
        "    except StoreLocked as exc:\n"
        "        print('locked', exc.pid); sys.exit(5)\n"
        "trio.run(main)\n"
    )
    with start_job_manager(path, executors=[ScriptedExecutor()]):
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                timeout=60)
    import os

    assert result.returncode == 5, result.stderr
    assert result.stdout.split() == ["locked", str(os.getpid())]


async def test_create_after_shutdown_is_refused(path: Path, vclock: object) -> None:
    async with open_job_manager(path, executors=[ScriptedExecutor()]) as manager:
        pass
    from kalam_actors import RuntimeStopped

    with pytest.raises(RuntimeStopped):
        await manager.create_job(JobType.FLUSH, {})


async def test_queued_and_retrying_jobs_resume_after_a_restart(path: Path, vclock: object) -> None:
    gate = Gate()
    first = ScriptedExecutor(script=[gate])
    retrying = ScriptedExecutor(JobType.COMPACT, script=[JobDecision.retry("later", 1_000),
                                                         JobDecision.completed("resumed")])
    async with open_job_manager(path, executors=[first, retrying], max_concurrent=2,
                                shutdown_timeout_s=0.1) as manager:
        running = await manager.create_job(JobType.FLUSH, {})
        await gate.wait_entered()
        queued = await manager.create_job(JobType.FLUSH, {})
        retry = await manager.create_job(JobType.COMPACT, {})
        await wait_status(manager, retry, S.RETRYING)
    gate.opened.set()
    again = ScriptedExecutor()
    async with open_job_manager(path, executors=[again, retrying]) as manager:
        assert (await manager.wait_job(queued)).status is S.COMPLETED
        assert (await manager.wait_job(retry)).message == "resumed"
        # The running job was cancelled at shutdown (cancellable) and never runs twice.
        assert (await manager.get_job(running)).status is S.CANCELLED  # type: ignore[union-attr]


def test_blocking_facade_from_threads(path: Path) -> None:
    ex = ScriptedExecutor(script=[JobDecision.completed("ok")])
    with start_job_manager(path, executors=[ex]) as manager:
        ids: list[str] = []
        threads = [threading.Thread(target=lambda: ids.append(manager.create_job("FL", {})))
                   for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        jobs = [manager.wait_job(j, timeout_s=30) for j in ids]
        stats = manager.statistics()
    assert len(set(ids)) == 8 and all(j.status is S.COMPLETED for j in jobs)
    assert stats.by_status[S.COMPLETED] == 8 and stats.by_type[JobType.FLUSH] == 8


def test_blocking_facade_raises_start_errors(path: Path) -> None:
    with pytest.raises(InvalidParams, match="max_concurrent"), start_job_manager(
        path, executors=[ScriptedExecutor()], max_concurrent=0
    ):
        pass


async def test_statistics_count_by_status_and_type(path: Path, vclock: object) -> None:
    ok = ScriptedExecutor()
    bad = ScriptedExecutor(JobType.COMPACT, script=[JobDecision.failed("no")])
    async with open_job_manager(path, executors=[ok, bad]) as manager:
        for job_id in await manager.create_jobs([("FL", {}), ("FL", {}), ("CO", {})]):
            await manager.wait_job(job_id)
        stats = manager.statistics()
    assert stats.by_status == {S.COMPLETED: 2, S.FAILED: 1}
    assert stats.by_type == {JobType.FLUSH: 2, JobType.COMPACT: 1}
    assert stats.in_flight == 0 and stats.commits > 0


async def test_progress_is_persisted_while_running(path: Path, vclock: object) -> None:
    gate = Gate()

    def body(ctx, job):  # type: ignore[no-untyped-def]
        ctx.report_progress(3, 10, "batch 3 of 10")
        return gate(ctx, job)

    async with open_job_manager(path, executors=[ScriptedExecutor(script=[body])]) as manager:
        job_id = await manager.create_job(JobType.FLUSH, {})
        async with contextlib.aclosing(manager.watch_job(job_id)) as changes:
            async for job in changes:
                if job.progress is not None:
                    break
        assert (job.progress.done, job.progress.total, job.progress.note) == (  # type: ignore[union-attr]
            3, 10, "batch 3 of 10")
        assert job.progress.fraction == 0.3  # type: ignore[union-attr]
        gate.opened.set()
        await manager.wait_job(job_id)


# ---------------------------------------------------------------- schedules


class EverySecond:
    """Asks for one FL job per whole second, slots numbered by the second."""

    def next_wake_us(self, now_us: int) -> int:
        return (now_us // 1_000_000 + 1) * 1_000_000

    def plan(self, now_us: int, last_slot):  # type: ignore[no-untyped-def]
        slot = now_us // 1_000_000
        return [ScheduledJob("tick", slot, JobType.FLUSH, {"slot": slot}, "FL:tick")]


async def test_schedules_fire_once_per_slot_and_not_again_after_restart(
    path: Path, vclock: object
) -> None:
    ex = ScriptedExecutor()
    async with open_job_manager(path, executors=[ex], schedules=[EverySecond()]) as manager:
        first_slot = manager._now_us() // 1_000_000
        await trio.sleep(3.5)
        last_slot = manager._now_us() // 1_000_000
        jobs = await manager.list_jobs()
    slots = [j.params["slot"] for j in jobs]
    # The schedule first wakes at the next whole second, then once a second.
    assert slots == list(range(first_slot + 1, last_slot + 1))
    # A restart lands in a slot that already fired (virtual time ran ahead of the wall clock):
    # nothing fires again until the next new slot.
    async with open_job_manager(path, executors=[ex], schedules=[EverySecond()]) as manager:
        restart_slot = manager._now_us() // 1_000_000
        assert restart_slot <= last_slot
        await trio.sleep(0.5)
        assert [j.params["slot"] for j in await manager.list_jobs()] == slots


def test_a_second_runtime_is_refused_even_after_the_lock_file_is_deleted(path: Path) -> None:
    # Given a runtime serving the store, and an operator who deletes its pid file
    with start_job_manager(path, executors=[ScriptedExecutor()]):
        (path / "runtime.lock").unlink()
        # When a second runtime starts on the same store (another process: flock is per
        # open file, so the same process could not show it)
        code = (
            "import sys, trio\n"
            "from kalam_actors import open_job_manager, StoreLocked, JobExecutor, JobType\n"
            "class E(JobExecutor):\n"
            "    job_type = JobType.FLUSH\n"
            "async def main():\n"
            "    try:\n"
            f"        async with open_job_manager({str(path)!r}, executors=[E()]):\n"
            "            pass\n"
            "    except StoreLocked as exc:\n"
            "        print('locked', exc.pid); sys.exit(5)\n"
            "trio.run(main)\n"
        )
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                timeout=60)
    # Then it is refused: the lock is on the store folder, not on the deleted file
    assert result.returncode == 5, result.stderr
    assert result.stdout.split() == ["locked", "None"]


@pytest.mark.parametrize("via", ["runtime", "JobStore"])
async def test_a_non_cancellable_job_that_has_started_an_attempt_cannot_be_cancelled(
    path: Path, vclock: object, via: str
) -> None:
    # Given a Cleanup job (the seed: it cannot be cancelled) that retried after a partial
    # attempt and now waits, Retrying, for its next attempt
    ex = ScriptedExecutor(JobType.CLEANUP, [JobDecision.retry("partial", backoff_ms=60_000)],
                          cancellable=False)
    async with open_job_manager(path, executors=[ex]) as manager:
        job_id = await manager.create_job(JobType.CLEANUP, {})
        await wait_status(manager, job_id, JobStatus.RETRYING)
        # When it is cancelled
        with pytest.raises(CancelNotAllowed, match="once an attempt has started"):
            if via == "runtime":
                await manager.cancel_job(job_id)
            else:
                with JobStore(path) as store:
                    store.cancel_job(job_id)
        # Then it is still Retrying
        job = await manager.get_job(job_id)
        assert job is not None and job.status is JobStatus.RETRYING and job.retry_count == 1


def test_a_non_cancellable_job_that_never_started_can_be_cancelled(path: Path) -> None:
    with JobStore(path) as store:  # no runtime: the job stays New
        job_id = store.create_job(JobType.CLEANUP, {})
        assert store.cancel_job(job_id).status is JobStatus.CANCELLED
