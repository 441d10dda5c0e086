"""A store written by the previous version opens with today's code (issue #11).

``data/v1`` was made by the code at 6a81b4e (see ``data/make_v1_store.py``), schema version 1.
The schema has not changed since, so today's code must read that store as it is, recover it,
and run its jobs; a store of a schema newer than this code knows is refused.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import lmdb
import pytest
from runtime_support import Gate, ScriptedExecutor
from store_support import assert_counts_in_step

from kalam_actors import (
    IdempotentConflict,
    Job,
    JobFilter,
    JobStatus,
    JobStore,
    JobType,
    StoreError,
    open_job_manager,
)
from kalam_actors.store import SCHEMA_VERSION

DATA = Path(__file__).parent / "data" / "v1"
MANIFEST: dict[str, Any] = json.loads((DATA / "manifest.json").read_text())
JOBS: dict[str, dict[str, Any]] = MANIFEST["jobs"]
IDS = {role: job["job_id"] for role, job in JOBS.items()}
HELD_KEY: str = MANIFEST["held_key"]
TERMINAL_ROLES = ("completed", "failed", "cancelled", "skipped")


def as_made(job: Job | None) -> dict[str, Any]:
    """A job in the form the generating script recorded it (``job_json`` there)."""
    assert job is not None

    def when(dt: Any) -> str | None:
        return None if dt is None else dt.isoformat()

    return {
        "job_id": job.job_id, "job_type": job.job_type.value, "status": job.status.value,
        "parameters": job.parameters, "idempotency_key": job.idempotency_key,
        "retry_count": job.retry_count, "max_retries": job.max_retries,
        "message": job.message, "exception_trace": job.exception_trace,
        "progress": None if job.progress is None else [job.progress.done, job.progress.total,
                                                       job.progress.note],
        "created_at": when(job.created_at), "updated_at": when(job.updated_at),
        "started_at": when(job.started_at), "finished_at": when(job.finished_at),
        "run_after": when(job.run_after), "timeout_s": job.timeout_s,
    }


def in_creation_order(roles: Any) -> list[str]:
    return sorted((IDS[role] for role in roles), key=lambda job_id: job_id[3:])


@pytest.fixture
def v1_store(tmp_path: Path) -> Path:
    """A copy of the schema-1 store (data.mdb only, as a store is copied when it is closed)."""
    path = tmp_path / "jobs"
    shutil.copytree(DATA / "jobs.lmdb", path / "jobs.lmdb")
    return path


def test_the_stored_schema_is_the_one_this_code_reads() -> None:
    # When SCHEMA_VERSION moves on, this store is no longer "read as is": give records._upgrade
    # its first step and test that it brings these records up.
    assert MANIFEST["schema_version"] == SCHEMA_VERSION == 1
    env = lmdb.open(str(DATA / "jobs.lmdb"), max_dbs=8, readonly=True, lock=False)
    try:
        with env.begin() as txn:
            assert txn.get(b"schema", db=env.open_db(b"meta", txn=txn, create=False)) == b"1"
    finally:
        env.close()


def test_a_v1_store_is_read_as_it_is(v1_store: Path) -> None:
    data = v1_store / "jobs.lmdb" / "data.mdb"
    made_by_v1 = data.read_bytes()
    with JobStore(v1_store) as store:
        for role, job_id in IDS.items():
            assert as_made(store.get_job(job_id)) == JOBS[role], role
        assert [j.job_id for j in store.list_jobs()] == in_creation_order(IDS)
        for status in JobStatus:
            expected = in_creation_order(r for r, j in JOBS.items() if j["status"] == status.value)
            assert [j.job_id for j in store.list_jobs(JobFilter(status=status))] == expected
            assert store.has_status(status) is bool(expected)
        counts = sorted([s.value, t.value, n] for (s, t), n in store.counts().items())
        assert counts == MANIFEST["counts"]
        assert_counts_in_step(store)
        active = [JobStatus.NEW, JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.RETRYING]
        by_key = store.list_jobs(JobFilter(idempotency_key=HELD_KEY, status=active))
        assert [j.job_id for j in by_key] == [IDS["new_held"]]
        by_key = store.list_jobs(JobFilter(idempotency_key=HELD_KEY))
        assert [j.job_id for j in by_key] == in_creation_order(["completed", "new_held"])
        assert store.has_cancel_requests() is MANIFEST["has_cancel_requests"] is True
        assert store.last_slot(MANIFEST["slot"][0]) == MANIFEST["slot"][1]
    assert data.read_bytes() == made_by_v1, "reading must not rewrite the store"


def test_todays_job_store_writes_to_a_v1_store(v1_store: Path) -> None:
    with JobStore(v1_store) as store:
        with pytest.raises(IdempotentConflict) as info:
            store.create_job(JobType.COMPACT, {}, idempotency_key=HELD_KEY)
        assert info.value.existing_job_id == IDS["new_held"]
        added = store.create_job(JobType.FLUSH, {"namespace_id": "ns2"})
        assert store.cancel_job(IDS["new_timeout"]).status is JobStatus.CANCELLED
        assert store.cancel_job(IDS["retrying"]).status is JobStatus.CANCELLED
        assert store.prune_history(1 << 62) == 6  # the four old terminal jobs and these two
        assert {j.job_id for j in store.list_jobs()} == {
            added, IDS["new_held"], IDS["queued"], IDS["running_rerun"], IDS["running_failed"],
            IDS["running_cancel_requested"]}
        assert_counts_in_step(store)


async def test_a_runtime_recovers_a_v1_store_and_runs_its_jobs(v1_store: Path) -> None:
    gate = Gate()  # holds the job that holds the key, so the key can be tried while it runs
    flush = ScriptedExecutor(JobType.FLUSH, rerun_on_recovery=True)
    compact = ScriptedExecutor(JobType.COMPACT, [gate])
    eviction = ScriptedExecutor(JobType.STREAM_EVICTION)
    others = [ScriptedExecutor(t) for t in (JobType.RETENTION, JobType.BACKUP,
                                            JobType.USER_CLEANUP, JobType.CLEANUP,
                                            JobType.JOB_CLEANUP)]
    async with open_job_manager(v1_store, executors=[flush, compact, eviction, *others],
                                durable=False) as manager:
        # Recovery ran before the runtime was handed over.
        failed = await manager.get_job(IDS["running_failed"])
        assert failed is not None and failed.status is JobStatus.FAILED
        assert failed.message == "Server restarted"
        cancelled = await manager.get_job(IDS["running_cancel_requested"])
        assert cancelled is not None and cancelled.status is JobStatus.CANCELLED
        assert cancelled.message == "Cancelled by user"
        rerun = await manager.get_job(IDS["running_rerun"])
        assert rerun is not None and rerun.retry_count == 1  # made Retrying, maybe started since

        # The key held by the v1 New job blocks a duplicate until that job ends.
        await gate.wait_entered()
        with pytest.raises(IdempotentConflict) as info:
            await manager.create_job(JobType.COMPACT, {}, idempotency_key=HELD_KEY)
        assert info.value.existing_job_id == IDS["new_held"]
        gate.opened.set()
        held = await manager.wait_job(IDS["new_held"], timeout_s=10)
        assert held.status is JobStatus.COMPLETED
        again = await manager.create_job(JobType.COMPACT, {}, idempotency_key=HELD_KEY)
        assert (await manager.wait_job(again, timeout_s=10)).status is JobStatus.COMPLETED

        for role in ("new_timeout", "queued", "running_rerun", "retrying"):
            job = await manager.wait_job(IDS[role], timeout_s=10)
            assert job.status is JobStatus.COMPLETED, (role, job.message)
        rerun = await manager.get_job(IDS["running_rerun"])
        assert rerun is not None and rerun.retry_count == 1
        assert "Job was running when server shut down" in (rerun.exception_trace or "")
        assert (IDS["running_rerun"], 2) in flush.attempts  # its second attempt
        assert eviction.attempts == [(IDS["retrying"], 2)]
        for role in TERMINAL_ROLES:
            assert as_made(await manager.get_job(IDS[role])) == JOBS[role], role
        assert await manager.list_jobs(JobFilter(status=JobStatus.RUNNING)) == []
    with JobStore(v1_store) as store:
        assert not store.has_cancel_requests()
        assert not any(store.has_status(s) for s in JobStatus if s.is_active)
        assert_counts_in_step(store)


@pytest.fixture
def v99_store(v1_store: Path) -> Path:
    env = lmdb.open(str(v1_store / "jobs.lmdb"), max_dbs=8)
    try:
        with env.begin(write=True) as txn:
            txn.put(b"schema", b"99", db=env.open_db(b"meta", txn=txn, create=False))
    finally:
        env.close()
    return v1_store


@pytest.mark.parametrize("writer", [False, True], ids=["reader", "writer"])
def test_a_store_of_a_newer_schema_is_refused(v99_store: Path, writer: bool) -> None:
    with pytest.raises(StoreError, match="schema version 99; this kalam-actors reads versions"):
        JobStore(v99_store, writer=writer)


async def test_a_runtime_refuses_a_store_of_a_newer_schema(v99_store: Path) -> None:
    with pytest.raises(StoreError, match="schema version 99"):
        async with open_job_manager(v99_store, executors=[ScriptedExecutor()], durable=False):
            pass  # pragma: no cover
