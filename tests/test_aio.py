"""``kalam_actors.aio``: the job manager for asyncio programs. Each test is a plain test that
runs ``asyncio.run`` (the suite's ``trio_mode`` makes every ``async def`` test a trio test),
so the asyncio program here is exactly what a user writes."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import pytest
import trio

from kalam_actors import (
    InvalidParams,
    Job,
    JobContext,
    JobDecision,
    JobExecutor,
    JobFilter,
    JobNotFound,
    JobStatus,
    JobType,
    RuntimeFailed,
    RuntimeStopped,
    StoreLocked,
    UnknownJobType,
    aio,
    start_job_manager,
)
from kalam_actors.storage import Engine
from supervisors import Intensity

T = TypeVar("T")
FLUSH = {"namespace_id": "app", "table_name": "t", "table_type": "Shared"}


class SlowFlush(JobExecutor):
    """A Flush that works in small sleeps, reporting progress, until cancelled or done."""

    job_type: ClassVar[JobType] = JobType.FLUSH
    name: ClassVar[str] = "slow flush"
    cancellable: ClassVar[bool] = True
    actors: ClassVar[int] = 4

    def __init__(self, steps: int = 40) -> None:
        self.steps = steps
        self.started = threading.Event()

    def execute(self, ctx: JobContext, job: Job) -> JobDecision:
        self.started.set()
        for step in range(self.steps):
            if ctx.cancelled:
                return JobDecision.failed("stopped: cancelled")
            ctx.report_progress(step + 1, self.steps, "working")
            time.sleep(0.01)  # slow work in the actor's own thread
        return JobDecision.completed(f"done in {self.steps} steps")


def run(main: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(main())  # type: ignore[arg-type]


# --------------------------------------------------------------------------- the loop never stalls


def test_asyncio_program_creates_watches_and_cancels_without_stalling_the_loop(
    tmp_path: Path,
) -> None:
    """Given an asyncio program with a task ticking every 10 ms, when it creates, watches and
    cancels jobs through kalam_actors.aio, then every job ends as it should and the ticker
    never waits more than 50 ms between ticks."""
    executor = SlowFlush(steps=30)

    async def main() -> tuple[list[float], dict[str, Any]]:
        gaps: list[float] = []
        stop = asyncio.Event()

        async def ticker() -> None:
            last = time.monotonic()
            while not stop.is_set():
                await asyncio.sleep(0.01)
                now = time.monotonic()
                gaps.append(now - last)
                last = now

        ticking = asyncio.create_task(ticker())
        await asyncio.sleep(0.05)
        seen: dict[str, Any] = {}
        async with aio.open_job_manager(tmp_path / "jobs", executors=[executor],
                                        durable=False, poll_interval_s=0.05) as manager:
            # created and watched to the end
            done_id = await manager.create_job(JobType.FLUSH, FLUSH)
            statuses = [job.status async for job in manager.watch_job(done_id)]
            seen["watched"] = statuses
            # many at once, waited for concurrently
            ids = await manager.create_jobs([(JobType.FLUSH, FLUSH)] * 6)
            finished = await asyncio.gather(*(manager.wait_job(i, timeout_s=30) for i in ids))
            seen["batch"] = {job.status for job in finished}
            # cancelled while it runs, while another task watches it
            victim = await manager.create_job(JobType.FLUSH, FLUSH)
            watch = asyncio.create_task(_collect(manager.watch_job(victim)))
            while (job := await manager.get_job(victim)) is not None and \
                    job.status is not JobStatus.RUNNING:
                await asyncio.sleep(0.005)
            seen["cancel"] = (await manager.cancel_job(victim)).status
            seen["victim"] = (await manager.wait_job(victim, timeout_s=30)).status
            seen["victim_watch"] = await watch
            seen["stats"] = await manager.statistics()
            seen["listed"] = len(await manager.list_jobs(JobFilter()))
        await asyncio.sleep(0.05)
        stop.set()
        await ticking
        return gaps, seen

    gaps, seen = run(main)
    watched = seen["watched"]
    assert watched[-1] is JobStatus.COMPLETED and JobStatus.RUNNING in watched
    assert seen["batch"] == {JobStatus.COMPLETED}
    assert seen["cancel"] in (JobStatus.RUNNING, JobStatus.CANCELLED)
    assert seen["victim"] is JobStatus.CANCELLED
    assert seen["victim_watch"][-1] is JobStatus.CANCELLED
    assert seen["listed"] == 8
    assert seen["stats"].by_status[JobStatus.COMPLETED] == 7
    assert len(gaps) > 20
    assert max(gaps) < 0.050, f"the asyncio loop stalled {max(gaps) * 1000:.0f} ms"


async def _collect(changes: Any) -> list[JobStatus]:
    return [job.status async for job in changes]


# --------------------------------------------------------------------------- the API


def test_errors_come_back_as_themselves(tmp_path: Path) -> None:
    async def main() -> None:
        async with aio.open_job_manager(tmp_path / "jobs", executors=[SlowFlush(1)],
                                        durable=False) as manager:
            with pytest.raises(UnknownJobType):
                await manager.create_job("Nope", {})
            with pytest.raises(UnknownJobType):  # no executor for it here
                await manager.create_job(JobType.BACKUP, {})
            with pytest.raises(InvalidParams):
                await manager.create_job(JobType.FLUSH, "{not json")
            missing = "FL-01JD9Y3V2TQK8M4N6P0R5S7W9X"
            assert await manager.get_job(missing) is None
            with pytest.raises(JobNotFound):
                await manager.wait_job(missing)
            with pytest.raises(JobNotFound):
                await manager.cancel_job(missing)
            with pytest.raises(JobNotFound):
                async for _ in manager.watch_job(missing):
                    pass
            job_id = await manager.create_job(JobType.FLUSH, FLUSH, idempotency_key="k")
            assert (await manager.wait_job(job_id, timeout_s=30)).status is JobStatus.COMPLETED
            rows = await manager.system_jobs()
            assert [r.job_id for r in rows] == [job_id] and rows[0].status == "Completed"
        with pytest.raises(RuntimeStopped):
            await manager.create_job(JobType.FLUSH, FLUSH)

    run(main)


def test_the_default_executors_include_job_cleanup(tmp_path: Path) -> None:
    async def main() -> JobStatus:
        with Engine.open(tmp_path / "engine", durable=False) as engine:
            async with aio.open_job_manager(tmp_path / "jobs", storage=engine,
                                            durable=False) as manager:
                job_id = await manager.create_job(JobType.JOB_CLEANUP, {"older_than_days": 7})
                return (await manager.wait_job(job_id, timeout_s=30)).status

    assert run(main) is JobStatus.SKIPPED


def test_a_cancelled_wait_stops_in_the_runtime_and_the_job_goes_on(tmp_path: Path) -> None:
    executor = SlowFlush(steps=20)

    async def main() -> tuple[JobStatus, int]:
        async with aio.open_job_manager(tmp_path / "jobs", executors=[executor],
                                        durable=False) as manager:
            job_id = await manager.create_job(JobType.FLUSH, FLUSH)
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(manager.wait_job(job_id), 0.02)
            # leave a watch early: the runtime's watcher is cancelled, not leaked
            async with _aclosing(manager.watch_job(job_id)) as changes:
                async for _ in changes:
                    break
            job = await manager.wait_job(job_id, timeout_s=30)
            await asyncio.sleep(0.1)
            calls = manager._runtime._calls  # the runtime's nursery of calls from asyncio
            assert calls is not None
            return job.status, len(calls.child_tasks)

    status, left = run(main)
    assert status is JobStatus.COMPLETED
    assert left == 0, "the cancelled wait and the abandoned watch ended in the runtime"


def _aclosing(gen: Any) -> Any:
    import contextlib

    return contextlib.aclosing(gen)


def test_a_second_runtime_on_the_store_is_refused_on_entry(tmp_path: Path) -> None:
    async def main() -> None:
        async with aio.open_job_manager(tmp_path / "jobs", executors=[SlowFlush(1)],
                                        durable=False):
            with pytest.raises(StoreLocked):
                async with aio.open_job_manager(tmp_path / "jobs", executors=[SlowFlush(1)]):
                    pass

    run(main)


def test_bad_options_are_raised_on_entry(tmp_path: Path) -> None:
    async def main() -> None:
        with pytest.raises(InvalidParams):
            async with aio.open_job_manager(tmp_path / "jobs", max_concurrent=0):
                pass

    run(main)
    assert threading.active_count() < 10, "no runtime thread left behind"


def test_outside_asyncio_it_names_the_alternatives(tmp_path: Path) -> None:
    async def in_trio() -> None:
        async with aio.open_job_manager(tmp_path / "jobs"):
            pass

    with pytest.raises(RuntimeError, match=r"in a trio program use kalam_actors\.open_job_"):
        trio.run(in_trio)


def test_the_asyncio_task_entering_can_be_cancelled_while_the_runtime_starts(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        task = asyncio.create_task(_enter(tmp_path))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # the store is free again: its runtime shut down with the cancelled entry
        async with aio.open_job_manager(tmp_path / "jobs", executors=[SlowFlush(1)],
                                        durable=False):
            pass

    run(main)


async def _enter(tmp_path: Path) -> None:
    async with aio.open_job_manager(tmp_path / "jobs", executors=[SlowFlush(1)], durable=False):
        await asyncio.sleep(10)


class Crashes(JobExecutor):
    """Kills its actor thread on every attempt: the runtime gives up past the intensity."""

    job_type: ClassVar[JobType] = JobType.FLUSH

    def execute(self, ctx: JobContext, job: Job) -> JobDecision:
        raise SystemExit("the actor thread dies")


def test_a_runtime_failure_stops_calls_and_is_raised_at_the_end(tmp_path: Path) -> None:
    """Both facades: a call waiting when the runtime fails gets RuntimeStopped (not a trio
    internal), later calls too, and leaving the block raises RuntimeFailed."""
    options: dict[str, Any] = {"executors": [Crashes()], "durable": False,
                               "actor_intensity": Intensity(max_restarts=1, period_s=60)}
    seen: list[type[BaseException]] = []

    async def main() -> None:
        async with aio.open_job_manager(tmp_path / "a", **options) as manager:
            ids = await manager.create_jobs([(JobType.FLUSH, FLUSH)] * 4)
            with pytest.raises(RuntimeStopped):
                await manager.wait_job(ids[-1], timeout_s=30)
            with pytest.raises(RuntimeStopped):
                await manager.create_job(JobType.FLUSH, FLUSH)
            seen.append(RuntimeStopped)

    with pytest.raises(RuntimeFailed, match="crashed too often"):
        run(main)
    assert seen == [RuntimeStopped]

    with pytest.raises(RuntimeFailed, match="crashed too often"), \
            start_job_manager(tmp_path / "b", **options) as blocking_manager:
        ids = blocking_manager.create_jobs([(JobType.FLUSH, FLUSH)] * 4)
        with pytest.raises(RuntimeStopped):
            blocking_manager.wait_job(ids[-1], timeout_s=30)
        with pytest.raises(RuntimeStopped):
            blocking_manager.create_job(JobType.FLUSH, FLUSH)
