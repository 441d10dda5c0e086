"""The seed's acceptance scenarios AS1–AS33, one test each, through the public API.

Every timed assertion runs in virtual time (the ``vclock`` fixture).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import trio
from runtime_support import Gate, ScriptedExecutor, wait_status

from kalam_actors import (
    IdempotentConflict,
    InvalidParams,
    JobDecision,
    JobFilter,
    JobStatus,
    JobStore,
    JobType,
    open_job_manager,
)
from kalam_actors.model import MAX_EXCEPTION_TRACE, MAX_MESSAGE
from kalam_actors.store import StoreTxn

S = JobStatus
FLUSH_PARAMS = {"namespace_id": "default", "table_name": "users", "table_type": "User"}
ms = timedelta(milliseconds=1)


def _jobs_path(tmp_path: Path) -> Path:
    return tmp_path / "jobs"


# ---------------------------------------------------------------- status transitions (AS1–AS10)


async def test_as01_job_creation(tmp_path: Path, vclock: object) -> None:
    gate = Gate()
    ex = ScriptedExecutor(script=[gate])
    async with open_job_manager(_jobs_path(tmp_path), executors=[ex]) as manager:
        job_id = await manager.create_job(JobType.FLUSH, FLUSH_PARAMS)
        job = await manager.get_job(job_id)
        assert job is not None and job.job_id == job_id and job.job_type is JobType.FLUSH
        assert job.params == FLUSH_PARAMS and job.created_at is not None
        gate.opened.set()
        await manager.wait_job(job_id)


async def test_as02_new_to_queued(tmp_path: Path, vclock: object) -> None:
    # Given a runtime whose only slot is busy,
    gate = Gate()
    ex = ScriptedExecutor(script=[gate])
    async with open_job_manager(_jobs_path(tmp_path), executors=[ex], max_concurrent=1,
                                poll_interval_s=0.05) as manager:
        busy = await manager.create_job(JobType.FLUSH, {})
        await gate.wait_entered()
        # when another process submits a job, it is stored New,
        other = JobStore(_jobs_path(tmp_path))
        job_id = other.create_job(JobType.FLUSH, FLUSH_PARAMS)
        assert other.get_job(job_id).status is S.NEW  # type: ignore[union-attr]
        # then the runtime admits it to Queued (and cannot run it yet).
        job = await wait_status(manager, job_id, S.QUEUED)
        assert job.started_at is None
        gate.opened.set()
        assert (await manager.wait_job(job_id)).status is S.COMPLETED
        await manager.wait_job(busy)
        other.close()


async def test_as03_queued_to_running(tmp_path: Path, vclock: object) -> None:
    gate = Gate()
    async with open_job_manager(_jobs_path(tmp_path),
                                executors=[ScriptedExecutor(script=[gate])]) as manager:
        job_id = await manager.create_job(JobType.FLUSH, {})
        await gate.wait_entered()
        job = await manager.get_job(job_id)
        assert job is not None and job.status is S.RUNNING and job.started_at is not None
        gate.opened.set()
        await manager.wait_job(job_id)


async def test_as04_running_to_completed(tmp_path: Path, vclock: object) -> None:
    ex = ScriptedExecutor(script=[JobDecision.completed("flushed 10 rows")])
    async with open_job_manager(_jobs_path(tmp_path), executors=[ex]) as manager:
        job = await manager.wait_job(await manager.create_job(JobType.FLUSH, {}))
    assert job.status is S.COMPLETED and job.message == "flushed 10 rows"
    assert job.finished_at is not None and job.started_at is not None
    assert job.finished_at >= job.started_at


async def test_as05_running_to_retrying(tmp_path: Path, vclock: object) -> None:
    gate = Gate()
    ex = ScriptedExecutor(script=[JobDecision.retry("disk busy", backoff_ms=10_000), gate])
    async with open_job_manager(_jobs_path(tmp_path), executors=[ex]) as manager:
        job_id = await manager.create_job(JobType.FLUSH, {})
        job = await wait_status(manager, job_id, S.RETRYING)
        assert job.retry_count == 1 and job.run_after == job.updated_at + 10_000 * ms
        gate.opened.set()
        await manager.wait_job(job_id)


async def test_as06_retrying_to_running(tmp_path: Path, vclock: object) -> None:
    ex = ScriptedExecutor(script=[JobDecision.retry("try again"), JobDecision.completed("ok")])
    async with open_job_manager(_jobs_path(tmp_path), executors=[ex]) as manager:
        job_id = await manager.create_job(JobType.FLUSH, {})
        job = await manager.wait_job(job_id)
    assert job.status is S.COMPLETED and job.retry_count == 1
    assert ex.attempts == [(job_id, 1), (job_id, 2)]


async def test_as07_running_to_failed(tmp_path: Path, vclock: object) -> None:
    ex = ScriptedExecutor(script=[JobDecision.failed("table is gone", "no such table")])
    async with open_job_manager(_jobs_path(tmp_path), executors=[ex]) as manager:
        job = await manager.wait_job(await manager.create_job(JobType.FLUSH, {}))
    assert job.status is S.FAILED and job.message == "table is gone"
    assert job.exception_trace == "no such table" and job.retry_count == 0


def _force_running(path: Path, job_type: JobType) -> str:
    """Leave a job Running in the store, as a runtime killed mid-job would."""
    store = JobStore(path, executors=[])
    job_id = store.create_job(job_type, {})

    def run(txn: StoreTxn) -> None:
        rec = txn.require(job_id)
        txn.move(rec, S.QUEUED, rec["u"])
        txn.move(rec, S.RUNNING, rec["u"])

    store.write(run)
    store.close()
    return job_id


async def test_as08_crash_recovery_fails_running_jobs(tmp_path: Path, vclock: object) -> None:
    job_id = _force_running(_jobs_path(tmp_path), JobType.FLUSH)
    ex = ScriptedExecutor()
    async with open_job_manager(_jobs_path(tmp_path), executors=[ex]) as manager:
        job = await manager.get_job(job_id)
    assert job is not None and job.status is S.FAILED
    assert job.message == "Server restarted"
    assert job.exception_trace == "Job was running when server shut down"
    assert ex.attempts == []


async def test_as08_crash_recovery_reruns_what_is_safe_to_rerun(
    tmp_path: Path, vclock: object
) -> None:
    job_id = _force_running(_jobs_path(tmp_path), JobType.FLUSH)
    ex = ScriptedExecutor(rerun_on_recovery=True)
    async with open_job_manager(_jobs_path(tmp_path), executors=[ex]) as manager:
        job = await manager.wait_job(job_id)
    assert job.status is S.COMPLETED and job.retry_count == 1
    assert "Job was running when server shut down" in (job.exception_trace or "")


@pytest.mark.parametrize(
    ("job_type", "prefix"),
    [(JobType.FLUSH, "FL-"), (JobType.CLEANUP, "CL-"), (JobType.RETENTION, "RT-"),
     (JobType.STREAM_EVICTION, "SE-"), (JobType.USER_CLEANUP, "UC-"), (JobType.COMPACT, "CO-"),
     (JobType.BACKUP, "BK-"), (JobType.RESTORE, "RS-")],
)
async def test_as09_job_id_prefix_for_every_type(
    tmp_path: Path, vclock: object, job_type: JobType, prefix: str
) -> None:
    async with open_job_manager(_jobs_path(tmp_path),
                                executors=[ScriptedExecutor(job_type)]) as manager:
        job_id = await manager.create_job(job_type, {})
        assert job_id.startswith(prefix)
        listed = await manager.list_jobs(JobFilter(job_id_prefix=prefix))
        assert [j.job_id for j in listed] == [job_id]
        await manager.wait_job(job_id)


async def test_as10_every_job_log_line_starts_with_the_job_id(
    tmp_path: Path, vclock: object, log_lines: list[str]
) -> None:
    def body(ctx, job):  # type: ignore[no-untyped-def]
        ctx.log_info("starting flush")
        ctx.log_warn("slow disk")
        return JobDecision.completed()

    ex = ScriptedExecutor(script=[JobDecision.retry("again"), body])
    # log_lines turns the library's logging on, as an application would.
    async with open_job_manager(_jobs_path(tmp_path), executors=[ex]) as manager:
        job_id = await manager.wait_job(await manager.create_job(JobType.FLUSH, {}))
    assert f"[{job_id.job_id}] starting flush" in log_lines
    assert f"[{job_id.job_id}] slow disk" in log_lines
    assert len(log_lines) >= 4
    # Every line, not only those naming the job: a line that lost its id must fail here too.
    # (tests/test_job_logging.py checks every path through the runtime.)
    # The actor supervisor's own events are about actors, not jobs.
    about_jobs = [line for line in log_lines if not line.startswith("supervisor '")]
    assert [line for line in about_jobs if not line.startswith(f"[{job_id.job_id}] ")] == []


# ---------------------------------------------------------------- idempotency (AS11–AS16)


async def test_as11_duplicate_key_is_rejected(tmp_path: Path, vclock: object) -> None:
    gate = Gate()
    async with open_job_manager(_jobs_path(tmp_path),
                                executors=[ScriptedExecutor(script=[gate])]) as manager:
        first = await manager.create_job(JobType.FLUSH, {}, idempotency_key="flush-users")
        with pytest.raises(IdempotentConflict) as info:
            await manager.create_job(JobType.FLUSH, {}, idempotency_key="flush-users")
        assert info.value.existing_job_id == first
        assert len(await manager.list_jobs()) == 1
        gate.opened.set()
        await manager.wait_job(first)


async def test_as12_key_is_reusable_after_the_first_completes(
    tmp_path: Path, vclock: object
) -> None:
    async with open_job_manager(_jobs_path(tmp_path), executors=[ScriptedExecutor()]) as manager:
        first = await manager.create_job(JobType.FLUSH, {}, idempotency_key="k")
        await manager.wait_job(first)
        second = await manager.create_job(JobType.FLUSH, {}, idempotency_key="k")
        assert second != first
        await manager.wait_job(second)


async def test_as13_keys_are_case_sensitive(tmp_path: Path, vclock: object) -> None:
    gate = Gate()
    async with open_job_manager(_jobs_path(tmp_path), executors=[ScriptedExecutor(
            script=[gate], prefetch=2)], max_concurrent=2) as manager:
        a = await manager.create_job(JobType.FLUSH, {}, idempotency_key="Flush-Users")
        b = await manager.create_job(JobType.FLUSH, {}, idempotency_key="flush-users")
        assert a != b
        gate.opened.set()
        await manager.wait_job(a)
        await manager.wait_job(b)


async def test_as14_jobs_without_key_never_conflict(tmp_path: Path, vclock: object) -> None:
    async with open_job_manager(_jobs_path(tmp_path), executors=[ScriptedExecutor()]) as manager:
        ids = [await manager.create_job(JobType.FLUSH, FLUSH_PARAMS) for _ in range(5)]
        assert len(set(ids)) == 5
        for job_id in ids:
            await manager.wait_job(job_id)


async def test_as15_every_active_status_holds_the_key(tmp_path: Path, vclock: object) -> None:
    path = _jobs_path(tmp_path)
    # New: submitted while no runtime runs.
    store = JobStore(path, executors=[])
    new = store.create_job(JobType.RETENTION, {}, idempotency_key="new")
    with pytest.raises(IdempotentConflict):
        store.create_job(JobType.FLUSH, {}, idempotency_key="new")
    store.close()
    gate = Gate()
    ex = ScriptedExecutor(script=[gate])
    retrying = ScriptedExecutor(JobType.COMPACT, script=[JobDecision.retry("x", 60_000)])
    later = ScriptedExecutor(JobType.RETENTION)
    async with open_job_manager(path, executors=[ex, retrying, later],
                                max_concurrent=3) as manager:
        running = await manager.create_job(JobType.FLUSH, {}, idempotency_key="running")
        await gate.wait_entered()
        queued = await manager.create_job(JobType.FLUSH, {}, idempotency_key="queued")
        retry = await manager.create_job(JobType.COMPACT, {}, idempotency_key="retrying")
        await wait_status(manager, retry, S.RETRYING)
        assert (await manager.get_job(queued)).status is S.QUEUED  # type: ignore[union-attr]
        assert (await manager.get_job(running)).status is S.RUNNING  # type: ignore[union-attr]
        for key, holder in [("running", running), ("queued", queued), ("retrying", retry)]:
            with pytest.raises(IdempotentConflict) as info:
                await manager.create_job(JobType.FLUSH, {}, idempotency_key=key)
            assert info.value.existing_job_id == holder
        await manager.cancel_job(retry)
        gate.opened.set()
        await manager.wait_job(queued)
        await manager.wait_job(new)


@pytest.mark.parametrize(
    ("decision", "status"),
    [(JobDecision.completed(), S.COMPLETED), (JobDecision.failed("no"), S.FAILED),
     (JobDecision.skipped("nothing to do"), S.SKIPPED)],
)
async def test_as16_terminal_jobs_do_not_block_the_key(
    tmp_path: Path, vclock: object, decision: JobDecision, status: JobStatus
) -> None:
    async with open_job_manager(_jobs_path(tmp_path),
                                executors=[ScriptedExecutor(script=[decision])]) as manager:
        first = await manager.create_job(JobType.FLUSH, {}, idempotency_key="k")
        assert (await manager.wait_job(first)).status is status
        await manager.wait_job(await manager.create_job(JobType.FLUSH, {}, idempotency_key="k"))


async def test_as16_cancelled_job_does_not_block_the_key(tmp_path: Path, vclock: object) -> None:
    gate = Gate()
    async with open_job_manager(_jobs_path(tmp_path), executors=[ScriptedExecutor(
            script=[gate])], max_concurrent=1) as manager:
        await manager.create_job(JobType.FLUSH, {})
        await gate.wait_entered()
        queued = await manager.create_job(JobType.FLUSH, {}, idempotency_key="k")
        await manager.cancel_job(queued)
        again = await manager.create_job(JobType.FLUSH, {}, idempotency_key="k")
        gate.opened.set()
        await manager.wait_job(again)


# ---------------------------------------------------------------- message / trace (AS17–AS25)


async def test_as17_message_on_success(tmp_path: Path, vclock: object) -> None:
    ex = ScriptedExecutor(script=[JobDecision.completed("flushed 1200 rows into 3 files")])
    async with open_job_manager(_jobs_path(tmp_path), executors=[ex]) as manager:
        job = await manager.wait_job(await manager.create_job(JobType.FLUSH, {}))
    assert job.message == "flushed 1200 rows into 3 files"


async def test_as18_exception_trace_on_failure(tmp_path: Path, vclock: object) -> None:
    ex = ScriptedExecutor(script=[JobDecision.failed("corrupt segment", "checksum mismatch")])
    async with open_job_manager(_jobs_path(tmp_path), executors=[ex]) as manager:
        job = await manager.wait_job(await manager.create_job(JobType.FLUSH, {}))
    assert job.status is S.FAILED and job.exception_trace == "checksum mismatch"


def _explode(ctx, job):  # type: ignore[no-untyped-def]
    raise ZeroDivisionError("segment size was zero")


async def test_as19_trace_includes_the_stack(tmp_path: Path, vclock: object) -> None:
    ex = ScriptedExecutor(script=[_explode])
    async with open_job_manager(_jobs_path(tmp_path), executors=[ex]) as manager:
        job = await manager.wait_job(await manager.create_job(JobType.FLUSH, {}, max_retries=0))
    trace = job.exception_trace or ""
    assert "Traceback (most recent call last)" in trace
    assert "in _explode" in trace and "ZeroDivisionError: segment size was zero" in trace


async def test_as20_message_is_capped_at_1000_characters(tmp_path: Path, vclock: object) -> None:
    ex = ScriptedExecutor(script=[JobDecision.completed("r" * 5000)])
    async with open_job_manager(_jobs_path(tmp_path), executors=[ex]) as manager:
        job = await manager.wait_job(await manager.create_job(JobType.FLUSH, {}))
    assert job.message is not None and len(job.message) == MAX_MESSAGE
    assert "truncated" in job.message


async def test_as21_trace_is_capped_at_10000_characters(tmp_path: Path, vclock: object) -> None:
    ex = ScriptedExecutor(script=[JobDecision.failed("x", "t" * 50_000 + "END")])
    async with open_job_manager(_jobs_path(tmp_path), executors=[ex]) as manager:
        job = await manager.wait_job(await manager.create_job(JobType.FLUSH, {}))
    assert job.exception_trace is not None and len(job.exception_trace) == MAX_EXCEPTION_TRACE
    assert job.exception_trace.endswith("END") and "truncated" in job.exception_trace


async def test_as22_message_is_cleared_on_retry(tmp_path: Path, vclock: object) -> None:
    def progress_then_retry(ctx, job):  # type: ignore[no-untyped-def]
        return JobDecision.retry("lock held", backoff_ms=60_000)

    ex = ScriptedExecutor(script=[progress_then_retry])
    async with open_job_manager(_jobs_path(tmp_path), executors=[ex]) as manager:
        job_id = await manager.create_job(JobType.FLUSH, {})
        job = await wait_status(manager, job_id, S.RETRYING)
        assert job.message is None and "lock held" in (job.exception_trace or "")
        await manager.cancel_job(job_id)


async def test_as23_trace_is_kept_across_retries(tmp_path: Path, vclock: object) -> None:
    ex = ScriptedExecutor(script=[
        JobDecision.retry("first", exception_trace="trace one"),
        JobDecision.retry("second", exception_trace="trace two"),
        JobDecision.failed("third", "trace three"),
    ])
    async with open_job_manager(_jobs_path(tmp_path), executors=[ex]) as manager:
        job = await manager.wait_job(await manager.create_job(JobType.FLUSH, {}))
    assert job.exception_trace == "trace one\ntrace two\ntrace three"


async def test_as24_message_visible_in_system_jobs(tmp_path: Path, vclock: object) -> None:
    ex = ScriptedExecutor(script=[JobDecision.completed("rows written: 7")])
    async with open_job_manager(_jobs_path(tmp_path), executors=[ex]) as manager:
        job_id = await manager.create_job(JobType.FLUSH, {})
        await manager.wait_job(job_id)
        rows = manager.system_jobs(JobFilter(job_id_prefix=job_id))
    assert [(r.job_id, r.status, r.message) for r in rows] == [(job_id, "Completed",
                                                                "rows written: 7")]


async def test_as25_trace_visible_in_system_jobs(tmp_path: Path, vclock: object) -> None:
    ex = ScriptedExecutor(script=[JobDecision.failed("bad", "the stack")])
    async with open_job_manager(_jobs_path(tmp_path), executors=[ex]) as manager:
        job_id = await manager.create_job(JobType.FLUSH, {})
        await manager.wait_job(job_id)
        (row,) = manager.system_jobs(JobFilter(status=S.FAILED))
    assert row.job_id == job_id and row.exception_trace == "the stack"


# ---------------------------------------------------------------- retries (AS26–AS30)


async def test_as26_retry_count_increments(tmp_path: Path, vclock: object) -> None:
    ex = ScriptedExecutor(script=[JobDecision.retry("a"), JobDecision.retry("b"),
                                  JobDecision.completed()])
    async with open_job_manager(_jobs_path(tmp_path), executors=[ex]) as manager:
        job_id = await manager.create_job(JobType.FLUSH, {})
        assert (await wait_status(manager, job_id, S.RETRYING)).retry_count == 1
        job = await manager.wait_job(job_id)
    assert job.retry_count == 2 and [a for _, a in ex.attempts] == [1, 2, 3]


async def test_as27_max_retries_defaults_to_3(tmp_path: Path, vclock: object) -> None:
    ex = ScriptedExecutor(script=[JobDecision.retry("always")])
    async with open_job_manager(_jobs_path(tmp_path), executors=[ex]) as manager:
        job = await manager.wait_job(await manager.create_job(JobType.FLUSH, {}))
    assert job.max_retries == 3 and job.retry_count == 3 and len(ex.attempts) == 4


async def test_as28_exponential_backoff_100_200_400_ms(tmp_path: Path, vclock: object) -> None:
    ex = ScriptedExecutor(script=[JobDecision.retry("again")])
    delays = []
    async with open_job_manager(_jobs_path(tmp_path), executors=[ex]) as manager:
        job_id = await manager.create_job(JobType.FLUSH, {})
        async for job in manager.watch_job(job_id):
            if job.status is S.RETRYING:
                delays.append((job.run_after - job.updated_at) / ms)  # type: ignore[operator]
            final = job
    assert delays == [100, 200, 400]
    assert final.status is S.FAILED


async def test_as28_next_attempt_starts_when_due(tmp_path: Path, vclock: object) -> None:
    gaps: list[float] = []

    def record(ctx, job):  # type: ignore[no-untyped-def]
        if ctx.attempt > 1:
            gaps.append((job.started_at - job.run_after) / ms)
        return JobDecision.retry("again") if ctx.attempt < 4 else JobDecision.completed()

    ex = ScriptedExecutor(script=[record])
    # Commits run on the trio thread when not durable: virtual time cannot jump ahead while a
    # slow (loaded machine) fsync thread holds the loop, so the start time is exact.
    async with open_job_manager(_jobs_path(tmp_path), executors=[ex], durable=False) as manager:
        job = await manager.wait_job(await manager.create_job(JobType.FLUSH, {}))
    assert job.status is S.COMPLETED and len(gaps) == 3
    # Each retry starts the moment it is due (the timer wakes at the due time exactly).
    assert all(0 <= gap < 1 for gap in gaps), gaps


async def test_as29_fails_after_max_retries(tmp_path: Path, vclock: object) -> None:
    ex = ScriptedExecutor(script=[JobDecision.retry("disk full", exception_trace="ENOSPC")])
    async with open_job_manager(_jobs_path(tmp_path), executors=[ex]) as manager:
        job = await manager.wait_job(await manager.create_job(JobType.FLUSH, {}, max_retries=2))
    assert job.status is S.FAILED and job.retry_count == 2
    assert job.message == "Max retries exceeded: disk full"
    assert (job.exception_trace or "").count("ENOSPC") == 3


async def test_as30_custom_backoff_from_the_executor(tmp_path: Path, vclock: object) -> None:
    ex = ScriptedExecutor(script=[JobDecision.retry("later", backoff_ms=2_500),
                                  JobDecision.completed()])
    async with open_job_manager(_jobs_path(tmp_path), executors=[ex]) as manager:
        job_id = await manager.create_job(JobType.FLUSH, {})
        job = await wait_status(manager, job_id, S.RETRYING)
        assert job.run_after - job.updated_at == 2_500 * ms  # type: ignore[operator]
        start = trio.current_time()
        await manager.wait_job(job_id)
        assert trio.current_time() - start >= 2.5 - 0.001


# ---------------------------------------------------------------- parameters (AS31–AS33)


async def test_as31_parameters_are_stored_as_json_text(tmp_path: Path, vclock: object) -> None:
    async with open_job_manager(_jobs_path(tmp_path), executors=[ScriptedExecutor()]) as manager:
        job_id = await manager.create_job(JobType.FLUSH, FLUSH_PARAMS)
        job = await manager.wait_job(job_id)
    assert isinstance(job.parameters, str)
    assert job.parameters == '{"namespace_id":"default","table_name":"users","table_type":"User"}'


async def test_as32_parameters_come_back_as_an_object(tmp_path: Path, vclock: object) -> None:
    seen = []

    def body(ctx, job):  # type: ignore[no-untyped-def]
        seen.append((ctx.params, job.params))
        return JobDecision.completed()

    async with open_job_manager(_jobs_path(tmp_path),
                                executors=[ScriptedExecutor(script=[body])]) as manager:
        job = await manager.wait_job(await manager.create_job(JobType.FLUSH, '{"a": [1, 2]}'))
    assert job.params == {"a": [1, 2]} and seen == [({"a": [1, 2]}, {"a": [1, 2]})]


@pytest.mark.parametrize(
    ("params", "match"),
    [("{oops", "not valid JSON"), ("[]", "JSON object"), ({"bad": 1}, "field 'bad'")],
)
async def test_as33_invalid_parameters_are_rejected(
    tmp_path: Path, vclock: object, params: object, match: str
) -> None:
    async with open_job_manager(_jobs_path(tmp_path), executors=[ScriptedExecutor()]) as manager:
        with pytest.raises(InvalidParams, match=match):
            await manager.create_job(JobType.FLUSH, params)
        assert await manager.list_jobs() == []
