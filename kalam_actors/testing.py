"""Helpers for tests: executors without a runtime, and pytest fixtures with one.

Executors alone: :func:`make_job` and :func:`make_context` call ``execute`` directly and
record its progress.

A running manager on a temporary store: these pytest fixtures. Add the module to the root
``conftest.py``::

    pytest_plugins = ["kalam_actors.testing"]

then

- ``job_manager`` (trio tests; needs pytest-trio): a :class:`~kalam_actors.JobManager`;
- ``blocking_job_manager``: a :class:`~kalam_actors.BlockingJobManager`, for plain tests;
- ``run_with_aio_manager``: runs ``async def f(manager)`` in ``asyncio.run`` with a
  :class:`~kalam_actors.aio.AsyncJobManager` and returns what it returns, for asyncio code
  tested from plain tests (``async with kalam_actors.aio.open_job_manager(...)`` works in
  an asyncio fixture of pytest-asyncio or anyio too);
- ``kalam_engine``: the reference storage engine they use (``ctx.storage``), in ``tmp_path``;
- ``kalam_options``: extra keyword arguments for ``open_job_manager`` (executors,
  retry_policy, …); override it in a ``conftest.py`` or with
  ``@pytest.mark.parametrize("kalam_options", [...])``.

The store and the engine skip fsync (``durable=False``): a test is not a power cut.

Example::

    async def test_flush(job_manager, kalam_engine):
        kalam_engine.create_table("app", "t", "Shared")
        kalam_engine.insert("app", "t", {"id": 1})
        job_id = await job_manager.create_job(
            "Flush", {"namespace_id": "app", "table_name": "t", "table_type": "Shared"})
        assert (await job_manager.wait_job(job_id)).status.value == "Completed"
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import orjson

from .context import JobContext
from .ids import JobId, JobType
from .model import Job, JobStatus, Progress

if TYPE_CHECKING:
    from .aio import AsyncJobManager
    from .blocking import BlockingJobManager
    from .manager import JobManager
    from .storage import Engine

try:
    import pytest
except ImportError:  # pragma: no cover - pytest is a test dependency, not a runtime one
    pytest = None  # type: ignore[assignment]

__all__ = [
    "ContextRecorder",
    "blocking_job_manager",
    "job_manager",
    "kalam_engine",
    "kalam_options",
    "make_context",
    "make_job",
    "manager_options",
    "run_with_aio_manager",
]

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


def make_job(job_type: JobType, params: dict[str, Any], **fields: Any) -> Job:
    """A Running job record of ``job_type`` with ``params``, as the runtime would hand it over."""
    now = datetime.now(UTC)
    job = Job(
        job_id=JobId.new(job_type),
        job_type=job_type,
        status=JobStatus.RUNNING,
        parameters=orjson.dumps(params).decode(),
        idempotency_key=None,
        retry_count=0,
        max_retries=3,
        message=None,
        exception_trace=None,
        progress=None,
        created_at=now,
        updated_at=now,
        started_at=now,
        finished_at=None,
        run_after=None,
    )
    return dataclasses.replace(job, **fields) if fields else job


@dataclasses.dataclass
class ContextRecorder:
    """What a test context saw: progress reports, and the switch that cancels it."""

    progress: list[Progress] = dataclasses.field(default_factory=list)
    cancel_event: threading.Event = dataclasses.field(default_factory=threading.Event)

    def cancel(self) -> None:
        """Cancel the job, as a user would: ``ctx.cancelled`` turns true."""
        self.cancel_event.set()


def make_context(
    job: Job, *, storage: Any = None, attempt: int = 1
) -> tuple[JobContext, ContextRecorder]:
    """A JobContext for ``job`` whose progress is recorded and whose cancel a test controls."""
    recorder = ContextRecorder()
    ctx = JobContext(
        job,
        storage=storage,
        attempt=attempt,
        progress_sink=lambda _job_id, progress: recorder.progress.append(progress),
        cancel_event=recorder.cancel_event,
    )
    return ctx, recorder


# --------------------------------------------------------------------------- pytest fixtures


def _fixture(fn: F) -> F:
    """``pytest.fixture`` when pytest is installed (the plain function otherwise, so that the
    helpers above need no test dependency)."""
    if pytest is None:  # pragma: no cover
        return fn
    return cast(F, pytest.fixture(fn))


def manager_options(engine: Any, options: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments the fixtures give ``open_job_manager``: the engine as storage,
    no fsync, a short shutdown; then ``options`` over them."""
    return {"storage": engine, "durable": False, "shutdown_timeout_s": 2.0, **options}


@_fixture
def kalam_options() -> dict[str, Any]:
    """Extra keyword arguments for ``open_job_manager`` in the manager fixtures (none by
    default): override this fixture to pass ``executors``, ``retry_policy``, …"""
    return {}


@_fixture
def kalam_engine(tmp_path: Path) -> Iterator[Engine]:
    """The reference storage engine in ``tmp_path / "engine"`` (no fsync), closed after the
    test; the manager fixtures hand it to jobs as ``ctx.storage``."""
    from .storage import Engine

    engine = Engine.open(tmp_path / "engine", durable=False)
    try:
        yield engine
    finally:
        engine.close()


@_fixture
async def job_manager(tmp_path: Path, kalam_engine: Engine,
                      kalam_options: dict[str, Any]) -> AsyncIterator[JobManager]:
    """A running :class:`~kalam_actors.JobManager` on a store in ``tmp_path / "jobs"``, for
    trio tests (pytest-trio); it shuts down after the test."""
    from .manager import open_job_manager

    async with open_job_manager(tmp_path / "jobs", **manager_options(
            kalam_engine, kalam_options)) as manager:
        yield manager


@_fixture
def blocking_job_manager(tmp_path: Path, kalam_engine: Engine,
                         kalam_options: dict[str, Any]) -> Iterator[BlockingJobManager]:
    """A running :class:`~kalam_actors.BlockingJobManager` on a store in
    ``tmp_path / "jobs"``, for tests that are not async; it shuts down after the test."""
    from .blocking import start_job_manager

    with start_job_manager(tmp_path / "jobs", **manager_options(
            kalam_engine, kalam_options)) as manager:
        yield manager


@_fixture
def run_with_aio_manager(
    tmp_path: Path, kalam_engine: Engine, kalam_options: dict[str, Any],
) -> Callable[[Callable[[AsyncJobManager], Awaitable[T]]], T]:
    """A function that runs ``async def f(manager)`` under ``asyncio.run`` with a running
    :class:`~kalam_actors.aio.AsyncJobManager` on a store in ``tmp_path / "jobs"``, and
    returns what ``f`` returns: asyncio code, tested from a plain test (which any pytest
    setup runs, pytest-trio's ``trio_mode`` included). Each call opens the store afresh."""
    from . import aio

    options = manager_options(kalam_engine, kalam_options)

    def run(fn: Callable[[AsyncJobManager], Awaitable[T]]) -> T:
        async def main() -> T:
            async with aio.open_job_manager(tmp_path / "jobs", **options) as manager:
                return await fn(manager)

        return asyncio.run(main())

    return run
