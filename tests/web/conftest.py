"""Fixtures for the web's tests: a store filled with a known set of jobs by a real runtime, and
small stores of New jobs for actions."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
from web_support import Filled, fill

from kalam_actors import JobId, JobStore, JobType


@pytest.fixture(scope="session")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Filled:
    """Nine jobs: Flush 3 Completed and 1 Failed; Compact 1 Completed (its message holds
    markup) and 1 Skipped; Backup 2 New and 1 Cancelled. Read it; do not change it."""
    root = tmp_path_factory.mktemp("filled")
    log = root / "jobs.log"
    ids = trio.run(fill, root, log)
    return Filled(root, log, ids)


@pytest.fixture
def small(tmp_path: Path) -> tuple[Path, dict[str, JobId]]:
    """A store with two New Flush jobs and one Cancelled one, for actions."""
    path = tmp_path / "jobs"
    with JobStore(path, durable=False) as store:
        ids = {
            "new": store.create_job(JobType.FLUSH, {"n": 1}, idempotency_key="K1"),
            "other": store.create_job(JobType.FLUSH, {"n": 2}),
            "done": store.create_job(JobType.FLUSH, {"n": 3}, idempotency_key="K3"),
        }
        store.cancel_job(ids["done"])
    return path, ids
