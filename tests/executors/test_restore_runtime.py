"""Restores through the runtime: a hostile archive fails its job on the first attempt (no
retries) and the runtime serves the next job; a transient fault mid-restore is retried to a
complete table; a table type that contradicts the table is refused at create_job.

These run on trio's real clock: nothing here is timed, every wait is on a job's state, and the
restores take real milliseconds in actor threads, during which an autojump clock would leap
to the wait's deadline."""

from __future__ import annotations

import copy
import itertools
from pathlib import Path
from typing import Any

import pytest
from archive_support import (
    gnu_sparse_member,
    header,
    identical_rows_parquet,
    manifest_member,
    member,
    read_backup,
    sha,
    write_archive,
    zeros,
)
from executor_support import run_job, table_params
from runtime_support import wait_status

from kalam_actors import InvalidParams, JobStatus, JobType, Outcome, open_job_manager
from kalam_actors.executors import BackupExecutor, FlushExecutor, RestoreExecutor
from kalam_actors.storage import Engine, TableType

NS = "default"
DATA = "data/000001.parquet"
ENDED = (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.RETRYING, JobStatus.CANCELLED,
         JobStatus.SKIPPED)


def backup_parts(engine: Engine) -> tuple[dict[str, Any], dict[str, bytes]]:
    engine.create_table(NS, "items", TableType.SHARED)
    engine.insert_many(NS, "items", [{"id": i} for i in range(10)])
    engine.flush_table(NS, "items")
    decision, _ = run_job(BackupExecutor(), table_params(
        "items", "Shared", backup_location=str(engine.path / "backups"), compression="none"),
        engine)
    assert decision.outcome is Outcome.COMPLETED, decision.message
    [archive] = (engine.path / "backups" / NS / "items").iterdir()
    return read_backup(archive)


def hostile_archives(engine: Engine, manifest: dict[str, Any], bodies: dict[str, bytes]
                     ) -> dict[str, Path]:
    """One archive of each kind a hostile operator hands over, under the backup root."""
    folder = engine.path / "backups" / "hostile"
    folder.mkdir(parents=True)
    body = bodies[DATA]
    no_bytes = copy.deepcopy(manifest)
    del no_bytes["files"][0]["bytes"]
    bad_ttl = copy.deepcopy(manifest)
    bad_ttl["table"].update(table_type="Stream", ttl_seconds=-5)
    lie = identical_rows_parquet(2_000_000)
    lying = copy.deepcopy(manifest)
    lying["files"][0].update(sha256=sha(lie), bytes=len(lie), rows=10)
    parts = {
        "zstd-bomb": itertools.chain([manifest_member(manifest), header(DATA, 1 << 30)],
                                     zeros(1 << 30)),
        "sparse": [manifest_member(manifest), gnu_sparse_member(DATA, body, 1 << 30)],
        "rows-lie": [manifest_member(lying), member(DATA, lie)],
        "no-bytes": [manifest_member(no_bytes), member(DATA, body)],
        "bad-ttl": [manifest_member(bad_ttl), member(DATA, body)],
    }
    return {name: write_archive(folder / f"{name}.tar.zst", p, compress=True)
            for name, p in parts.items()}


def restore_params(archive: Path, table: str) -> dict[str, Any]:
    return {"backup_location": str(archive), "target_namespace": NS,
            "target_table_name": table}


def runtime(tmp_path: Path, engine: Engine) -> Any:
    return open_job_manager(tmp_path / "jobs", storage=engine, durable=False,
                            poll_interval_s=3600,
                            executors=[RestoreExecutor(engine), FlushExecutor(engine)])


async def test_hostile_archives_fail_once_and_the_runtime_serves_the_next_job(
    tmp_path: Path, engine: Engine
) -> None:
    manifest, bodies = backup_parts(engine)
    bombs = hostile_archives(engine, manifest, bodies)
    good = write_archive(engine.path / "backups" / "good.tar", [manifest_member(manifest)] + [
        member(n, b) for n, b in sorted(bodies.items())], compress=False)
    async with runtime(tmp_path, engine) as manager:
        for name, archive in bombs.items():
            job_id = await manager.create_job(JobType.RESTORE, restore_params(archive, "copy"))
            job = await wait_status(manager, job_id, *ENDED)
            # Failed on the first attempt: a bad archive is no reason to try again
            assert (job.status, job.retry_count) == (JobStatus.FAILED, 0), (name, job.message)
            assert "is corrupt" in (job.message or "") and engine.table_info(NS, "copy") is None
        assert list((engine.path / "tmp").iterdir()) == []
        job_id = await manager.create_job(JobType.RESTORE, restore_params(good, "copy"))
        job = await wait_status(manager, job_id, *ENDED)
        assert job.status is JobStatus.COMPLETED, job.message
    assert engine.scan(NS, "copy") == engine.scan(NS, "items")


async def test_a_transient_fault_mid_restore_is_retried_to_a_complete_table(
    tmp_path: Path, engine: Engine
) -> None:
    manifest, bodies = backup_parts(engine)
    engine.create_table(NS, "copy", TableType.SHARED)
    engine.insert(NS, "copy", {"id": 1, "old": True})
    archive = write_archive(engine.path / "backups" / "good.tar", [manifest_member(manifest)] + [
        member(n, b) for n, b in sorted(bodies.items())], compress=False)
    faults = iter([OSError("disk full")])

    def once() -> None:
        fault = next(faults, None)
        if fault is not None:
            raise fault

    engine.faults.set("after_segment_write", once)
    async with runtime(tmp_path, engine) as manager:
        job_id = await manager.create_job(JobType.RESTORE,
                                          {**restore_params(archive, "copy"), "overwrite": True})
        job = await wait_status(manager, job_id, JobStatus.COMPLETED, JobStatus.FAILED)
    assert (job.status, job.retry_count) == (JobStatus.COMPLETED, 1), job.message
    assert engine.scan(NS, "copy") == engine.scan(NS, "items")
    root = engine.path / "segments" / NS / "copy"
    assert {p.name for p in root.rglob("*.parquet")} == {
        Path(s.relpath).name for s in engine.segments(NS, "copy")}


async def test_a_contradicting_table_type_is_refused_at_create_job(
    tmp_path: Path, engine: Engine
) -> None:
    engine.create_table(NS, "users", TableType.USER)
    async with runtime(tmp_path, engine) as manager:
        with pytest.raises(InvalidParams) as refused:
            await manager.create_job(JobType.FLUSH, table_params("users", "Stream"))
        assert refused.value.field == "table_type"
        assert str(refused.value) == ("parameter 'table_type' is Stream, but table "
                                      "default:users is a User table")
        assert await manager.list_jobs() == []
        job_id = await manager.create_job(JobType.FLUSH, table_params("users", "User"))
        assert (await wait_status(manager, job_id, *ENDED)).status is JobStatus.SKIPPED
