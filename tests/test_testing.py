# ruff: noqa: F811 - the fixtures imported below are parameters of the tests, as pytest wants
"""The pytest fixtures of ``kalam_actors.testing``: a running manager on a temporary store, for
trio tests, plain tests and asyncio code (a plain test that runs ``asyncio.run``: this suite's
``trio_mode`` makes every ``async def`` test a trio test)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kalam_actors import JobManager, JobStatus, JobType, RetryPolicy
from kalam_actors.aio import AsyncJobManager
from kalam_actors.blocking import BlockingJobManager
from kalam_actors.storage import Engine

# A user's root conftest.py says ``pytest_plugins = ["kalam_actors.testing"]``; this module,
# inside a suite that imports kalam_actors.testing already, imports the fixtures instead.
from kalam_actors.testing import (  # noqa: F401
    blocking_job_manager,
    job_manager,
    kalam_engine,
    kalam_options,
    run_with_aio_manager,
)

FLUSH = {"namespace_id": "app", "table_name": "t", "table_type": "Shared"}


def _table(engine: Engine, rows: int = 10) -> None:
    engine.create_table("app", "t", "Shared")
    engine.insert_many("app", "t", [{"id": i} for i in range(rows)])


async def test_job_manager_fixture_runs_jobs_in_a_trio_test(
    job_manager: JobManager, kalam_engine: Engine, tmp_path: Path,
) -> None:
    _table(kalam_engine)
    job_id = await job_manager.create_job(JobType.FLUSH, FLUSH)
    job = await job_manager.wait_job(job_id, timeout_s=30)
    assert job.status is JobStatus.COMPLETED, job.message
    assert kalam_engine.table_stats("app", "t").hot_rows == 0
    assert job_manager.store.path == (tmp_path / "jobs").resolve()
    assert JobType.JOB_CLEANUP in job_manager.executors, "the default executors, JobCleanup too"


def test_blocking_job_manager_fixture(blocking_job_manager: BlockingJobManager,
                                      kalam_engine: Engine) -> None:
    _table(kalam_engine)
    job_id = blocking_job_manager.create_job(JobType.FLUSH, FLUSH)
    assert blocking_job_manager.wait_job(job_id, timeout_s=30).status is JobStatus.COMPLETED


def test_run_with_aio_manager_runs_asyncio_code(run_with_aio_manager: Any,
                                                kalam_engine: Engine) -> None:
    _table(kalam_engine)

    async def scenario(manager: AsyncJobManager) -> list[str]:
        job_id = await manager.create_job(JobType.FLUSH, FLUSH)
        return [job.status.value async for job in manager.watch_job(job_id)]

    seen = run_with_aio_manager(scenario)
    assert seen[-1] == "Completed"
    # A second run opens the same store again: the first shut down cleanly.
    assert run_with_aio_manager(lambda m: m.list_jobs()) and True


@pytest.mark.parametrize("kalam_options", [{"retry_policy": RetryPolicy(base_ms=5)}])
def test_kalam_options_reach_open_job_manager(blocking_job_manager: BlockingJobManager) -> None:
    assert blocking_job_manager.manager.retry_policy == RetryPolicy(base_ms=5)
    assert blocking_job_manager.manager.durable is False, "a test store skips fsync"


def test_a_user_suite_loads_the_fixtures_from_its_conftest(tmp_path: Path) -> None:
    """As the module documentation says: ``pytest_plugins`` in the root conftest.py, then
    the fixtures in trio tests and plain tests alike."""
    import subprocess
    import sys

    (tmp_path / "pytest.ini").write_text("[pytest]\ntrio_mode = true\n")
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["kalam_actors.testing"]\n')
    (tmp_path / "test_user.py").write_text(
        "FLUSH = {'namespace_id': 'app', 'table_name': 't', 'table_type': 'Shared'}\n"
        "async def test_trio(job_manager, kalam_engine):\n"
        "    kalam_engine.create_table('app', 't', 'Shared')\n"
        "    job_id = await job_manager.create_job('Flush', FLUSH)\n"
        "    assert (await job_manager.wait_job(job_id)).status.value == 'Skipped'\n"
        "def test_asyncio(run_with_aio_manager):\n"
        "    async def scenario(manager):\n"
        "        return (await manager.wait_job(await manager.create_job('Flush', FLUSH)))\n"
        "    assert run_with_aio_manager(scenario).status.value == 'Skipped'\n")
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "-W", "error"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout
