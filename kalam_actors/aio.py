"""The job manager for asyncio programs.

The runtime is a trio program; an asyncio program runs it on a thread of its own and talks to
it without blocking its event loop::

    import asyncio
    from kalam_actors import JobType, aio

    async def main() -> None:
        async with aio.open_job_manager("data/jobs", storage=engine) as manager:
            job_id = await manager.create_job(JobType.FLUSH, params)
            async for job in manager.watch_job(job_id):
                print(job.status.value, job.progress)

    asyncio.run(main())

Each call is handed to the runtime's thread (``TrioToken.run_sync_soon``) and its answer comes
back into the asyncio loop (``loop.call_soon_threadsafe``): no thread waits on another, and
no worker thread is held per call. Reads of the store (:meth:`AsyncJobManager.get_job`,
:meth:`AsyncJobManager.statistics`) are short snapshots taken in place.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Any, Final, TypeVar

from .blocking import RuntimeThread
from .errors import RuntimeStopped
from .ids import JobId, JobType
from .manager import JobManager, ManagerStatistics
from .model import Job, JobFilter, JobRow

__all__ = ["AsyncJobManager", "open_job_manager"]

T = TypeVar("T")
_END: Final = object()


class AsyncJobManager:
    """The methods of :class:`~kalam_actors.JobManager`, awaitable from asyncio. Made by
    :func:`open_job_manager`; use it from the event loop that opened it.

    Cancelling an asyncio task that awaits a call cancels the call in the runtime too (a
    job already created stays created). After the ``async with`` block ends, every call
    raises :class:`~kalam_actors.RuntimeStopped`.
    """

    def __init__(self, runtime: RuntimeThread, manager: JobManager,
                 loop: asyncio.AbstractEventLoop) -> None:
        self._runtime = runtime
        self._manager = manager
        self._loop = loop

    # ------------------------------------------------------------------ plumbing

    def _post(self, fn: Callable[..., object], *args: Any) -> None:
        """Schedule ``fn(*args)`` in the asyncio loop, from the runtime's thread."""
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits any more
            self._loop.call_soon_threadsafe(fn, *args)

    async def _call(self, async_fn: Callable[[], Awaitable[T]]) -> T:
        """Run ``async_fn()`` in the runtime and await its answer without blocking the loop."""
        future: asyncio.Future[T] = self._loop.create_future()

        def settle(result: Any, error: BaseException | None) -> None:
            if future.done():  # the caller was cancelled meanwhile
                return
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)

        def on_done(result: Any, error: BaseException | None) -> None:
            self._post(settle, result, error)

        scope = self._runtime.spawn(async_fn, on_done)
        try:
            return await future
        except asyncio.CancelledError:
            with contextlib.suppress(RuntimeStopped):
                self._runtime.call_soon(scope.cancel)
            raise

    # ------------------------------------------------------------------ the API

    async def create_job(
        self,
        job_type: JobType | str,
        params: Any,
        *,
        idempotency_key: str | None = None,
        max_retries: int = 3,
        timeout_s: float | None = None,
    ) -> JobId:
        """Create a job and return its id once it is durably stored.

        Args:
            job_type: a JobType, or its name or prefix.
            params: a dict or JSON object text, checked by the executor's ``validate_params``.
            idempotency_key: at most one active job may hold it.
            max_retries: retries allowed after the first attempt (default 3).
            timeout_s: fail an attempt that runs longer than this.

        Raises:
            UnknownJobType, InvalidParams: bad input, named; nothing is written.
            IdempotentConflict: an active job holds the key; it names that job.
            RuntimeStopped: the manager has stopped.
        """
        return await self._call(lambda: self._manager.create_job(
            job_type, params, idempotency_key=idempotency_key, max_retries=max_retries,
            timeout_s=timeout_s))

    async def create_jobs(
        self,
        jobs: Iterable[tuple[JobType | str, Any]],
        *,
        idempotency_keys: Sequence[str | None] | None = None,
        max_retries: int = 3,
        timeout_s: float | None = None,
        atomic: bool = True,
    ) -> list[JobId]:
        """Create many jobs in one write transaction; returns their ids in order (see
        :meth:`JobManager.create_jobs`).

        Raises:
            The errors of :meth:`create_job`, for the first job that fails.
        """
        specs = list(jobs)
        return await self._call(lambda: self._manager.create_jobs(
            specs, idempotency_keys=idempotency_keys, max_retries=max_retries,
            timeout_s=timeout_s, atomic=atomic))

    async def get_job(self, job_id: str) -> Job | None:
        """The job with this id, or None (a snapshot read of the store, in place).

        Raises:
            InvalidJobId: for a malformed id.
        """
        return self._manager.store.get_job(job_id)

    async def list_jobs(self, job_filter: JobFilter | None = None) -> list[Job]:
        """Jobs matching ``job_filter``, oldest first unless it says newest first (a long
        listing is read off the event loop's thread)."""
        return await self._call(lambda: self._manager.list_jobs(job_filter))

    async def system_jobs(self, job_filter: JobFilter | None = None) -> list[JobRow]:
        """The ``system.jobs`` view: rows with the columns of ``SYSTEM_JOBS_COLUMNS``."""
        jobs = await self.list_jobs(job_filter)
        return [JobRow.from_job(job) for job in jobs]

    async def cancel_job(self, job_id: str) -> Job:
        """Cancel a job and return it as it stands after the cancel (see
        :meth:`JobManager.cancel_job`).

        Raises:
            JobNotFound, InvalidTransition (already terminal), CancelNotAllowed.
        """
        return await self._call(lambda: self._manager.cancel_job(job_id))

    async def wait_job(self, job_id: str, *, timeout_s: float | None = None) -> Job:
        """Wait until the job is terminal and return it.

        Raises:
            JobNotFound: no such job.
            TimeoutError: ``timeout_s`` passed first.
        """
        return await self._call(lambda: self._manager.wait_job(job_id, timeout_s=timeout_s))

    async def watch_job(self, job_id: str) -> AsyncIterator[Job]:
        """Yield the job now and after each committed change (status, retry, progress),
        ending after its terminal status; for ``async for``.

        A consumer slower than the job sees its latest state, never a backlog: changes that
        pile up unseen are merged into the newest, and the terminal state always comes last.
        Leaving the loop early stops the watch in the runtime.

        Raises:
            JobNotFound: no such job.
            InvalidJobId: for a malformed id.
        """
        JobId.parse(job_id)
        feed = _LatestFeed()

        async def watch() -> None:
            async with contextlib.aclosing(self._manager.watch_job(job_id)) as changes:
                async for job in changes:
                    self._post(feed.put, job)

        def on_done(_: Any, error: BaseException | None) -> None:
            self._post(feed.close, error)

        scope = self._runtime.spawn(watch, on_done)
        try:
            while True:
                item = await feed.get()
                if item is _END:
                    return
                yield item
        finally:
            if not feed.closed:
                with contextlib.suppress(RuntimeStopped):
                    self._runtime.call_soon(scope.cancel)

    async def statistics(self) -> ManagerStatistics:
        """Counts by status and type, and the runtime's own figures (a snapshot)."""
        return self._manager.statistics()

    @property
    def manager(self) -> JobManager:
        """The trio manager underneath (use it only from the runtime's thread)."""
        return self._manager


class _LatestFeed:
    """Jobs handed from the runtime's thread to one asyncio consumer. Lives in the loop's
    thread (every method runs there). Unread job states collapse into the newest, so a slow
    consumer costs no memory; the end (or an error) is queued after the last state."""

    def __init__(self) -> None:
        self._items: collections.deque[object] = collections.deque()
        self._ready = asyncio.Event()
        self.closed = False
        self._error: BaseException | None = None

    def put(self, job: Job) -> None:
        if self._items and isinstance(self._items[-1], Job):
            self._items[-1] = job
        else:
            self._items.append(job)
        self._ready.set()

    def close(self, error: BaseException | None) -> None:
        self.closed = True
        self._error = error
        self._items.append(_END)
        self._ready.set()

    async def get(self) -> Any:
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        item = self._items.popleft()
        if item is _END and self._error is not None:
            raise self._error
        return item


@contextlib.asynccontextmanager
async def open_job_manager(path: str | os.PathLike[str], **options: Any
                           ) -> AsyncIterator[AsyncJobManager]:
    """Run the job runtime for an asyncio program, for the duration of the ``async with``.

    The runtime (:func:`kalam_actors.open_job_manager`, with the same keyword arguments and
    default executors) runs in ``trio.run`` on a thread of its own; the manager this yields
    answers through the asyncio loop without blocking it. Entering and leaving wait for the
    runtime to start and to shut down, also without blocking the loop.

    Args:
        path: the store's folder (created if missing).
        **options: as for :func:`kalam_actors.open_job_manager` (``storage``, ``executors``,
            ``max_concurrent``, ``retry_policy``, ``shutdown_timeout_s``, …).

    Raises:
        RuntimeError: not called from a running asyncio event loop (in trio, use
            :func:`kalam_actors.open_job_manager`).
        StoreLocked: another runtime owns the store.
        RuntimeFailed: the runtime had to stop; raised when the block ends.
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        raise RuntimeError(
            "kalam_actors.aio.open_job_manager needs a running asyncio event loop; in a trio "
            "program use kalam_actors.open_job_manager, and in code that is not async "
            "kalam_actors.start_job_manager"
        ) from None
    ready: asyncio.Future[None] = loop.create_future()
    ended: asyncio.Future[None] = loop.create_future()

    def resolve(future: asyncio.Future[None]) -> None:
        if not future.done():
            future.set_result(None)

    def tell(future: asyncio.Future[None]) -> Callable[[], None]:
        def hand_over() -> None:
            with contextlib.suppress(RuntimeError):  # the loop has closed
                loop.call_soon_threadsafe(resolve, future)
        return hand_over

    runtime = RuntimeThread(path, options, on_ready=tell(ready), on_exit=tell(ended))
    runtime.start()
    try:
        await asyncio.shield(ready)
    except asyncio.CancelledError:
        runtime.stop()
        await _wait_ended(ended, runtime)
        raise
    if runtime.manager is None:
        await _wait_ended(ended, runtime)
        assert runtime.error is not None
        raise runtime.error
    try:
        yield AsyncJobManager(runtime, runtime.manager, loop)
    finally:
        runtime.stop()
        await _wait_ended(ended, runtime)
        if runtime.error is not None:
            raise runtime.error


async def _wait_ended(ended: asyncio.Future[None], runtime: RuntimeThread) -> None:
    """Wait (without blocking the loop) for the runtime's thread to finish, even through a
    cancellation, which is raised afterwards: the thread must not outlive the block."""
    cancelled = False
    while not ended.done():
        try:
            await asyncio.shield(ended)
        except asyncio.CancelledError:
            cancelled = True
            runtime.stop()
    runtime.join()  # the thread has returned from trio.run: this does not wait
    if cancelled:
        raise asyncio.CancelledError
