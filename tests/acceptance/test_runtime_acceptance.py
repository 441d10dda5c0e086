"""Acceptance: the job runtime's public API exactly as the issue writes it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio

from kalam_actors import (
    SYSTEM_JOBS_COLUMNS,
    CancelNotAllowed,
    IdempotentConflict,
    InvalidParams,
    InvalidTransition,
    Job,
    JobContext,
    JobDecision,
    JobExecutor,
    JobFilter,
    JobId,
    JobManager,
    JobNotFound,
    JobStatus,
    JobStore,
    JobType,
    KalamError,
    RetryPolicy,
    StoreLocked,
    UnknownJobType,
    open_job_manager,
    start_job_manager,
)

PARAMS = {"namespace_id": "default", "table_name": "users", "table_type": "User"}


class FlushLike(JobExecutor):
    job_type = JobType.FLUSH
    name = "flush-like"

    def __init__(self) -> None:
        self.calls = 0

    def validate_params(self, params: dict[str, Any]) -> None:
        if "namespace_id" not in params:
            raise InvalidParams("missing required parameter 'namespace_id'", field="namespace_id")

    def execute(self, ctx: JobContext, job: Job) -> JobDecision:
        self.calls += 1
        ctx.log_info(f"flushing {ctx.params['table_name']}")
        ctx.report_progress(1, 1, "one segment")
        if ctx.attempt == 1:
            return JobDecision.retry("hot buffer locked")
        return JobDecision.completed("rows written: 3, files created: 1")


class NotCancellable(JobExecutor):
    job_type = JobType.CLEANUP
    name = "cleanup-like"
    cancellable = False

    def execute(self, ctx: JobContext, job: Job) -> JobDecision:
        return JobDecision.completed()


def test_every_name_of_the_contract_is_exported() -> None:
    for name in (JobManager, JobStore, Job, JobId, JobType, JobStatus, JobFilter, JobDecision,
                 JobContext, JobExecutor, RetryPolicy, KalamError, InvalidParams, UnknownJobType,
                 JobNotFound, InvalidTransition, IdempotentConflict, CancelNotAllowed,
                 StoreLocked):
        assert name.__module__.startswith("kalam_actors")


async def test_the_issue_example_runs_as_written(tmp_path: Path, autojump_clock: Any) -> None:
    path = tmp_path / "jobs"
    executor = FlushLike()
    async with open_job_manager(path, executors=[executor, NotCancellable()], storage=None,
            max_concurrent=10,
            retry_policy=RetryPolicy(base_ms=100, factor=2.0, max_ms=60_000, jitter=0.0),
            durable=True) as manager:
        job_id = await manager.create_job(JobType.FLUSH, PARAMS,
                                          idempotency_key="flush-users", max_retries=3)
        job = await manager.get_job(job_id)
        assert job is not None and job.job_id == job_id
        jobs = await manager.list_jobs(JobFilter(status=[JobStatus.RUNNING, JobStatus.QUEUED,
                                                         JobStatus.RETRYING, JobStatus.COMPLETED],
                                                 job_id_prefix="FL-"))
        assert [j.job_id for j in jobs] == [job_id]
        job = await manager.wait_job(job_id)
        assert job.status is JobStatus.COMPLETED and job.retry_count == 1
        assert job.message == "rows written: 3, files created: 1"
        assert job.progress is not None and job.progress.done == 1
        stats = manager.statistics()
        assert stats.by_status[JobStatus.COMPLETED] == 1 and stats.in_flight == 0
        rows = manager.system_jobs(JobFilter(job_id_prefix="FL-"))
        assert [r._fields for r in rows] == [SYSTEM_JOBS_COLUMNS]
        assert rows[0].status == "Completed" and rows[0].retry_count == 1
        try:
            await manager.cancel_job(job_id)
        except InvalidTransition as exc:
            assert "Cannot cancel job in status Completed" in str(exc)
        else:
            raise AssertionError("cancel of a completed job must fail")
    assert executor.calls == 2


def test_job_store_and_blocking_manager_as_written(tmp_path: Path) -> None:
    path = tmp_path / "jobs"
    store = JobStore(path, executors=[FlushLike()])
    submitted = store.create_job(JobType.FLUSH, PARAMS, idempotency_key="k")
    assert store.get_job(submitted).status is JobStatus.NEW  # type: ignore[union-attr]
    with start_job_manager(path, executors=[FlushLike()], poll_interval_s=0.05) as manager:
        job = manager.wait_job(submitted, timeout_s=30)
        assert job.status is JobStatus.COMPLETED
        again = manager.create_job(JobType.FLUSH, PARAMS, idempotency_key="k")
        assert manager.wait_job(again, timeout_s=30).status is JobStatus.COMPLETED
        try:
            with start_job_manager(path, executors=[FlushLike()]):
                pass
        except StoreLocked as exc:
            assert exc.pid is not None
        else:
            raise AssertionError("a second runtime on one store must be refused")
    assert [r.job_id for r in store.system_jobs()] == sorted([submitted, again])
    store.close()


async def test_bad_input_gets_the_documented_errors(tmp_path: Path, autojump_clock: Any) -> None:
    async with open_job_manager(tmp_path / "jobs", executors=[FlushLike()]) as manager:
        for call, error in [
            (lambda: manager.create_job("Nope", {}), UnknownJobType),
            (lambda: manager.create_job(JobType.FLUSH, "{bad json"), InvalidParams),
            (lambda: manager.create_job(JobType.FLUSH, {"table_name": "x"}), InvalidParams),
            (lambda: manager.get_job("FL-not-an-id"), InvalidParams),
            (lambda: manager.cancel_job(JobId.new(JobType.FLUSH)), JobNotFound),
        ]:
            try:
                await call()
            except error:
                pass
            else:
                raise AssertionError(f"expected {error.__name__}")
        assert await manager.list_jobs() == []
        await trio.sleep(0)
