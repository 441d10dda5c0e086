"""Issue 7.4 — actor faults: an executor whose thread dies, one that raises inside ``cancel``,
one that never returns, one that returns garbage. The runtime keeps serving other types
throughout (a healthy executor's jobs complete before, during and after each fault).

The runtime runs in-process on a MockClock that jumps only after 0.25 s of real idleness, so
timeouts are exact virtual durations while actor threads (which trio cannot see) still get
real time to finish their short work.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from reliability_support import audit_store, report

from kalam_actors import (
    CancelNotAllowed,
    JobDecision,
    JobExecutor,
    JobStatus,
    JobType,
    Outcome,
    RetryPolicy,
    open_job_manager,
)
from supervisors import Intensity

TESTS = "actor_faults"


@pytest.fixture
def clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0.2)


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    """Released at teardown, so no stuck executor thread outlives its test."""
    event = threading.Event()
    yield event
    event.set()


class Healthy(JobExecutor):
    job_type = JobType.USER_CLEANUP
    name = "healthy"

    def execute(self, ctx: Any, job: Any) -> JobDecision:
        return JobDecision.completed("fine")


def make(job_type: JobType, run: Any, **attrs: Any) -> JobExecutor:
    cls = type(f"Fault{job_type.prefix}", (JobExecutor,), {
        "job_type": job_type, "name": f"fault-{job_type.prefix}",
        "execute": lambda self, ctx, job: run(ctx), **attrs,
    })
    return cls()


async def healthy_round(jm: Any, n: int = 3) -> int:
    """Other types keep being served: n healthy jobs complete."""
    ids = [await jm.create_job("UC", {}) for _ in range(n)]
    for job_id in ids:
        assert (await jm.wait_job(job_id, timeout_s=60)).status is JobStatus.COMPLETED
    return n


def opened(tmp_path: Path, *executors: JobExecutor, **options: Any) -> Any:
    options.setdefault("retry_policy", RetryPolicy(base_ms=100))
    # Nothing is submitted from other processes: a long poll keeps the loop idle, so the
    # MockClock jumps straight to the next deadline instead of ticking along in real time.
    options.setdefault("poll_interval_s", 600.0)
    # Commits in the trio thread: trio is never idle while a commit's fsync runs in a worker
    # thread, so the clock cannot jump in the middle of one.
    options.setdefault("durable", False)
    return open_job_manager(tmp_path / "store", executors=[Healthy(), *executors], **options)


async def test_executor_thread_death_fails_the_attempt_and_restarts_the_actor(
    tmp_path: Path, clock: trio.testing.MockClock
) -> None:
    def run(ctx: Any) -> JobDecision:
        if ctx.params.get("die"):
            raise SystemExit("executor thread dies")
        return JobDecision.completed("ok")

    async with opened(tmp_path, make(JobType.FLUSH, run)) as jm:
        served = await healthy_round(jm)
        # Given a job whose executor kills its thread, and more of its type queued behind it
        dying = await jm.create_job("FL", {"die": True}, max_retries=1)
        behind = [await jm.create_job("FL", {}) for _ in range(5)]
        served += await healthy_round(jm)
        # Then every attempt of it is reported failed and it ends Failed after its retry
        job = await jm.wait_job(dying, timeout_s=60)
        assert job.status is JobStatus.FAILED, job
        assert "SystemExit" in (job.exception_trace or ""), job.exception_trace
        assert job.retry_count == 1
        # and the jobs behind it ran on the restarted actor (at worst retried once),
        # and so does one more, after the second death's restart.
        for job_id in behind:
            assert (await jm.wait_job(job_id, timeout_s=60)).status is JobStatus.COMPLETED
        after = await jm.create_job("FL", {})
        assert (await jm.wait_job(after, timeout_s=60)).status is JobStatus.COMPLETED
        assert jm.statistics().actor_restarts == 2
        served += await healthy_round(jm)
        audit_store(jm.store)
    report(TESTS, thread_deaths=2, healthy_jobs_served=served)


async def test_executor_thread_death_with_a_busy_type(
    tmp_path: Path, clock: trio.testing.MockClock
) -> None:
    """A thread dying while several actors of the type hold prefetched work."""

    def run(ctx: Any) -> JobDecision:
        if ctx.params.get("die") and ctx.attempt == 1:
            raise SystemExit("dies on the first attempt")
        return JobDecision.completed("ok")

    executor = make(JobType.FLUSH, run, actors=2, prefetch=3)
    # Restarts allowed generously: this test is about dispatch racing a death, not intensity.
    async with opened(tmp_path, executor, max_concurrent=6, durable=False,
                      actor_intensity=Intensity(max_restarts=100, period_s=10.0)) as jm:
        ids = await jm.create_jobs([("FL", {"die": i % 3 == 0}) for i in range(24)])
        for job_id in ids:
            job = await jm.wait_job(job_id, timeout_s=120)
            assert job.status is JobStatus.COMPLETED, job
        served = await healthy_round(jm)
        audit_store(jm.store)
    report(TESTS, busy_type_jobs=len(ids), healthy_jobs_served=served)


@pytest.mark.parametrize("refusal", ["raise", "refuse"])
async def test_executor_raising_in_cancel_refuses_and_keeps_running(
    tmp_path: Path, clock: trio.testing.MockClock, gate: threading.Event, refusal: str
) -> None:
    started = threading.Event()

    def run(ctx: Any) -> JobDecision:
        started.set()
        gate.wait(60)
        return JobDecision.completed("finished despite the cancel")

    def cancel(self: Any, ctx: Any, job: Any) -> None:
        if refusal == "refuse":
            raise CancelNotAllowed(ctx.job_id, "this executor never agrees")
        raise RuntimeError("cancel exploded")

    async with opened(tmp_path, make(JobType.CLEANUP, run, cancel=cancel)) as jm:
        job_id = await jm.create_job("CL", {})
        await trio.to_thread.run_sync(started.wait, 30)
        with pytest.raises(CancelNotAllowed) as info:
            await jm.cancel_job(job_id)
        assert info.value.job_id == job_id
        served = await healthy_round(jm)
        gate.set()
        job = await jm.wait_job(job_id, timeout_s=60)
        assert job.status is JobStatus.COMPLETED
        served += await healthy_round(jm)
        audit_store(jm.store)
    report(TESTS, cancel_raised=1, healthy_jobs_served=served)


async def test_executor_raising_systemexit_in_cancel_does_not_kill_the_runtime(
    tmp_path: Path, clock: trio.testing.MockClock, gate: threading.Event
) -> None:
    started = threading.Event()

    def run(ctx: Any) -> JobDecision:
        started.set()
        gate.wait(60)
        return JobDecision.completed("finished despite the cancel")

    def cancel(self: Any, ctx: Any, job: Any) -> None:
        raise SystemExit("cancel kills its thread")

    async with opened(tmp_path, make(JobType.CLEANUP, run, cancel=cancel)) as jm:
        job_id = await jm.create_job("CL", {})
        await trio.to_thread.run_sync(started.wait, 30)
        with pytest.raises(CancelNotAllowed):
            await jm.cancel_job(job_id)
        await healthy_round(jm)
        gate.set()
        assert (await jm.wait_job(job_id, timeout_s=60)).status is JobStatus.COMPLETED
        await healthy_round(jm)


@pytest.mark.parametrize(
    ("type_timeout", "job_timeout", "expected"), [(5.0, None, 5.0), (5.0, 2.0, 2.0),
                                                  (None, 3.0, 3.0)]
)
async def test_executor_that_never_returns_is_timed_out_and_replaced(
    tmp_path: Path, clock: trio.testing.MockClock, gate: threading.Event,
    type_timeout: float | None, job_timeout: float | None, expected: float,
) -> None:
    def run(ctx: Any) -> JobDecision:
        if ctx.params.get("stuck"):
            gate.wait()  # never returns while the test runs
        return JobDecision.completed("ok")

    executor = make(JobType.RETENTION, run, timeout_s=type_timeout)
    async with opened(tmp_path, executor) as jm:
        stuck = await jm.create_job("RT", {"stuck": True}, max_retries=1, timeout_s=job_timeout)
        behind = await jm.create_job("RT", {})
        served = await healthy_round(jm)
        job = await jm.wait_job(stuck, timeout_s=600)
        # Given two attempts (one retry), each ended exactly at its limit, virtual time
        assert job.status is JobStatus.FAILED, job
        assert job.retry_count == 1
        assert "timed out" in (job.exception_trace or "")
        assert job.started_at is not None and job.finished_at is not None
        assert (job.finished_at - job.started_at).total_seconds() == pytest.approx(expected,
                                                                                   abs=0.05)
        # The job that waited behind the stuck one ran on a replacement actor, and so does
        # the next one, on the actor that replaced the second stuck attempt.
        assert (await jm.wait_job(behind, timeout_s=600)).status is JobStatus.COMPLETED
        after = await jm.create_job("RT", {})
        assert (await jm.wait_job(after, timeout_s=600)).status is JobStatus.COMPLETED
        # (at least: on a starved machine an idle trio may jump past another deadline)
        assert jm.statistics().actor_restarts >= 2
        served += await healthy_round(jm)
        audit_store(jm.store)
    report(TESTS, stuck_actors_replaced=2, healthy_jobs_served=served)


GARBAGE: list[Any] = [
    None, "completed", 0, {"outcome": "completed"}, JobDecision, Outcome.COMPLETED,
]


async def test_executor_returning_garbage_is_a_failed_attempt(
    tmp_path: Path, clock: trio.testing.MockClock
) -> None:
    def run(ctx: Any) -> Any:
        return GARBAGE[ctx.params["i"]]

    async with opened(tmp_path, make(JobType.STREAM_EVICTION, run)) as jm:
        ids = [await jm.create_job("SE", {"i": i}, max_retries=1) for i in range(len(GARBAGE))]
        for job_id in ids:
            job = await jm.wait_job(job_id, timeout_s=120)
            assert job.status is JobStatus.FAILED
            assert "not a JobDecision" in (job.message or ""), job.message
        served = await healthy_round(jm)
        audit_store(jm.store)
    report(TESTS, garbage_returns=len(GARBAGE) * 2, healthy_jobs_served=served)


MALFORMED = [
    JobDecision(Outcome.COMPLETED, message=b"bytes"),  # type: ignore[arg-type]
    JobDecision(Outcome.FAILED, message=123),  # type: ignore[arg-type]
    JobDecision(Outcome.RETRY, "x", backoff_ms=1e300),  # type: ignore[arg-type]
    JobDecision(Outcome.RETRY, "x", backoff_ms="10"),  # type: ignore[arg-type]
    JobDecision("completed", "x"),  # type: ignore[arg-type]
    JobDecision(Outcome.FAILED, "x", exception_trace=object()),  # type: ignore[arg-type]
    JobDecision.retry("a backoff past the due index's range", backoff_ms=10**30),
]


async def test_executor_returning_a_malformed_decision_is_a_failed_attempt(
    tmp_path: Path, clock: trio.testing.MockClock
) -> None:
    def run(ctx: Any) -> Any:
        return MALFORMED[ctx.params["i"]]

    async with opened(tmp_path, make(JobType.STREAM_EVICTION, run)) as jm:
        ids = [await jm.create_job("SE", {"i": i}, max_retries=0) for i in range(len(MALFORMED))]
        for job_id in ids:
            job = await jm.wait_job(job_id, timeout_s=120)
            assert job.status is JobStatus.FAILED, job
        await healthy_round(jm)
        audit_store(jm.store)


async def test_a_crashing_actor_does_not_stop_the_runtime_until_past_intensity(
    tmp_path: Path, clock: trio.testing.MockClock
) -> None:
    """Deaths spread out in time never reach the restart intensity (5 in 10 s)."""

    def run(ctx: Any) -> JobDecision:
        raise SystemExit("dies every time")

    async with opened(tmp_path, make(JobType.FLUSH, run)) as jm:
        served = 0
        for _ in range(8):
            job = await jm.wait_job(await jm.create_job("FL", {}, max_retries=0), timeout_s=60)
            assert job.status is JobStatus.FAILED
            await trio.sleep(5)  # virtual: keeps the deaths under the intensity
            served += await healthy_round(jm, 1)
    report(TESTS, spaced_deaths=8, healthy_jobs_served=served)
