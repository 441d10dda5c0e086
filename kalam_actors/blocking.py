"""The job manager for code that is not async: the runtime on a background thread."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from typing import Any

import trio

from .errors import RuntimeStopped
from .ids import JobId
from .manager import JobManager, ManagerStatistics, open_job_manager
from .model import Job, JobFilter, JobRow

__all__ = ["BlockingJobManager", "start_job_manager"]


class BlockingJobManager:
    """The same methods as :class:`JobManager`, blocking, callable from any thread except the
    runtime's own. Made by :func:`start_job_manager`."""

    def __init__(self, manager: JobManager, token: trio.lowlevel.TrioToken) -> None:
        self._manager = manager
        self._token = token

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return trio.from_thread.run(lambda: fn(*args, **kwargs), trio_token=self._token)
        except trio.RunFinishedError as exc:
            raise RuntimeStopped("the job manager has stopped") from exc

    def create_job(self, job_type: Any, params: Any, **kwargs: Any) -> JobId:
        result: JobId = self._call(self._manager.create_job, job_type, params, **kwargs)
        return result

    def create_jobs(self, jobs: Any, **kwargs: Any) -> list[JobId]:
        result: list[JobId] = self._call(self._manager.create_jobs, jobs, **kwargs)
        return result

    def get_job(self, job_id: str) -> Job | None:
        return self._manager.store.get_job(job_id)

    def list_jobs(self, job_filter: JobFilter | None = None) -> list[Job]:
        return self._manager.store.list_jobs(job_filter)

    def system_jobs(self, job_filter: JobFilter | None = None) -> list[JobRow]:
        return self._manager.system_jobs(job_filter)

    def cancel_job(self, job_id: str) -> Job:
        result: Job = self._call(self._manager.cancel_job, job_id)
        return result

    def wait_job(self, job_id: str, *, timeout_s: float | None = None) -> Job:
        result: Job = self._call(self._manager.wait_job, job_id, timeout_s=timeout_s)
        return result

    def statistics(self) -> ManagerStatistics:
        return self._manager.statistics()

    @property
    def manager(self) -> JobManager:
        """The async manager underneath (use it only from the runtime's trio thread)."""
        return self._manager


@contextlib.contextmanager
def start_job_manager(path: str | os.PathLike[str], **options: Any) -> Iterator[BlockingJobManager]:
    """Run :func:`open_job_manager` on a background thread for the ``with`` block.

    Takes the same keyword arguments as :func:`open_job_manager`. Errors from starting the
    runtime (StoreLocked, InvalidParams, …) are raised here; a runtime failure while the block
    runs is raised when it ends.
    """
    ready = threading.Event()
    state: dict[str, Any] = {}

    async def main() -> None:
        stop = trio.Event()
        state["stop"] = stop
        async with open_job_manager(path, **options) as manager:
            state["facade"] = BlockingJobManager(manager, trio.lowlevel.current_trio_token())
            ready.set()
            await stop.wait()

    def run() -> None:
        try:
            trio.run(main)
        except BaseException as exc:
            state["error"] = exc
        finally:
            ready.set()

    thread = threading.Thread(target=run, name="kalam-actors-runtime", daemon=True)
    thread.start()
    ready.wait()
    if "facade" not in state:
        thread.join()
        raise state["error"]
    facade: BlockingJobManager = state["facade"]
    try:
        yield facade
    finally:
        with contextlib.suppress(trio.RunFinishedError):
            trio.from_thread.run_sync(state["stop"].set, trio_token=facade._token)
        thread.join()
        if "error" in state:
            raise state["error"]
