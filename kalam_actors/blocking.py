"""The job manager for code that is not async: the runtime on a background thread.

:class:`RuntimeThread` runs :func:`~kalam_actors.open_job_manager` in ``trio.run`` on a thread
of its own; :func:`start_job_manager` (blocking calls) and :mod:`kalam_actors.aio` (asyncio)
are two faces of it.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any

import trio

from .errors import RuntimeStopped
from .ids import JobId, JobType
from .manager import JobManager, ManagerStatistics, open_job_manager
from .model import Job, JobFilter, JobRow

__all__ = ["BlockingJobManager", "RuntimeThread", "start_job_manager"]


class RuntimeThread:
    """:func:`open_job_manager` inside ``trio.run`` on a daemon thread, with a nursery in
    which other threads start calls into the manager.

    The thread calls ``on_ready()`` once the manager serves, or once starting it failed
    (``error`` then holds why), and ``on_exit()`` when ``trio.run`` has returned. Both run
    on the runtime's thread: they must only hand the news on (set an event, schedule a
    callback), never block.

    Args:
        path: the store's folder, as for :func:`open_job_manager`.
        options: its keyword arguments.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        options: Mapping[str, Any],
        *,
        on_ready: Callable[[], None] = lambda: None,
        on_exit: Callable[[], None] = lambda: None,
    ) -> None:
        self._path = path
        self._options = dict(options)
        self._on_ready = on_ready
        self._on_exit = on_exit
        self.manager: JobManager | None = None
        """The manager, once ready (use it only from the runtime's thread)."""
        self.token: trio.lowlevel.TrioToken | None = None
        """The runtime's TrioToken, once ready."""
        self.error: BaseException | None = None
        """Why the runtime could not start, or why it stopped, when it failed."""
        self._stop: trio.Event | None = None
        self._stop_requested = False
        self._calls: trio.Nursery | None = None
        self._thread = threading.Thread(target=self._run, name="kalam-actors-runtime",
                                        daemon=True)

    def start(self) -> None:
        """Start the thread (it calls ``on_ready`` soon)."""
        self._thread.start()

    def join(self) -> None:
        """Wait for the thread to end (after :meth:`stop`, or a failure)."""
        self._thread.join()

    def stop(self) -> None:
        """Ask the runtime to shut down (from any thread; harmless once it has ended). Asked
        before the runtime is ready, it shuts down as soon as it is."""
        self._stop_requested = True
        token, stop = self.token, self._stop
        if token is not None and stop is not None:
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(stop.set)

    def spawn(self, async_fn: Callable[[], Awaitable[Any]],
              on_done: Callable[[Any, BaseException | None], None]) -> trio.CancelScope:
        """Run ``async_fn()`` in the runtime's call nursery, from any thread; ``on_done(result,
        error)`` is called on the runtime's thread when it ends (``error`` is RuntimeStopped
        if the runtime stops first or has stopped). Returns a scope whose ``cancel()`` may be
        called through :meth:`call_soon`.

        Raises:
            RuntimeStopped: the runtime has stopped (``on_done`` is not called).
        """
        scope = trio.CancelScope()

        async def run_call() -> None:
            try:
                with scope:
                    result = await async_fn()
            except Exception as exc:
                on_done(None, exc)
                return
            except BaseException:  # the runtime is stopping: Cancelled, or worse
                on_done(None, RuntimeStopped("the job manager has stopped"))
                raise
            if scope.cancelled_caught:
                on_done(None, RuntimeStopped("the call was cancelled"))
            else:
                on_done(result, None)

        def begin() -> None:
            # In the trio thread, from run_sync_soon: this must not raise (trio would turn it
            # into a TrioInternalError), so a nursery already closing is an answer, not a crash.
            calls = self._calls
            try:
                if calls is None:
                    raise RuntimeError("no call nursery")
                calls.start_soon(run_call)
            except RuntimeError:
                on_done(None, RuntimeStopped("the job manager has stopped"))

        self.call_soon(begin)
        return scope

    def call_soon(self, fn: Callable[[], object]) -> None:
        """Run ``fn()`` on the runtime's thread soon (it must not raise).

        Raises:
            RuntimeStopped: the runtime has stopped.
        """
        if self.token is None:
            raise RuntimeStopped("the job manager is not running")
        try:
            self.token.run_sync_soon(fn)
        except trio.RunFinishedError as exc:
            raise RuntimeStopped("the job manager has stopped") from exc

    async def _main(self) -> None:
        async with open_job_manager(self._path, **self._options) as manager, \
                trio.open_nursery() as calls:
            stop = self._stop = trio.Event()
            self._calls = calls
            self.manager = manager
            self.token = trio.lowlevel.current_trio_token()
            if self._stop_requested:  # stop() came before there was a token to reach us by
                stop.set()
            self._on_ready()
            await stop.wait()
            calls.cancel_scope.cancel()

    def _run(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as exc:
            self.error = exc
        finally:
            if self.manager is None:
                self._on_ready()  # it never served: the waiter reads ``error``
            self._on_exit()


class BlockingJobManager:
    """The same methods as :class:`~kalam_actors.JobManager`, blocking, callable from any
    thread except the runtime's own. Made by :func:`start_job_manager`.

    Reads (:meth:`get_job`, :meth:`list_jobs`, :meth:`system_jobs`, :meth:`statistics`) go
    straight to the store; the other calls run in the runtime and wait for its answer.
    After the ``with`` block of :func:`start_job_manager` ends, every call raises
    :class:`~kalam_actors.RuntimeStopped`.
    """

    def __init__(self, manager: JobManager, token: trio.lowlevel.TrioToken) -> None:
        self._manager = manager
        self._token = token

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return trio.from_thread.run(lambda: fn(*args, **kwargs), trio_token=self._token)
        except (trio.RunFinishedError, trio.Cancelled) as exc:
            # Cancelled reaches this thread when the runtime shuts down under the call (it
            # failed, or the block ended in another thread): not this thread's cancellation.
            raise RuntimeStopped("the job manager has stopped") from exc

    def create_job(self, job_type: JobType | str, params: Any, **kwargs: Any) -> JobId:
        """Create a job and return its id once it is durably stored.

        Args:
            job_type: a JobType, or its name or prefix.
            params: a dict or JSON object text, checked by the executor's ``validate_params``.
            **kwargs: ``idempotency_key``, ``max_retries``, ``timeout_s``, as for
                :meth:`JobManager.create_job`.

        Raises:
            UnknownJobType, InvalidParams: bad input, named; nothing is written.
            IdempotentConflict: an active job holds the key; it names that job.
            RuntimeStopped: the manager has stopped.
        """
        result: JobId = self._call(self._manager.create_job, job_type, params, **kwargs)
        return result

    def create_jobs(self, jobs: Any, **kwargs: Any) -> list[JobId]:
        """Create many jobs in one write transaction; returns their ids in order.

        Args:
            jobs: ``(job_type, params)`` pairs.
            **kwargs: ``idempotency_keys``, ``max_retries``, ``timeout_s``, ``atomic``, as for
                :meth:`JobManager.create_jobs`.

        Raises:
            The errors of :meth:`create_job`, for the first job that fails.
        """
        result: list[JobId] = self._call(self._manager.create_jobs, jobs, **kwargs)
        return result

    def get_job(self, job_id: str) -> Job | None:
        """The job with this id, or None (a direct read of the store).

        Raises:
            InvalidJobId: for a malformed id.
        """
        return self._manager.store.get_job(job_id)

    def list_jobs(self, job_filter: JobFilter | None = None) -> list[Job]:
        """Jobs matching ``job_filter``, oldest first unless it says newest first (a direct
        read of the store)."""
        return self._manager.store.list_jobs(job_filter)

    def system_jobs(self, job_filter: JobFilter | None = None) -> list[JobRow]:
        """The ``system.jobs`` view: rows with the columns of ``SYSTEM_JOBS_COLUMNS``."""
        return self._manager.system_jobs(job_filter)

    def cancel_job(self, job_id: str) -> Job:
        """Cancel a job and return it as it stands after the cancel (see
        :meth:`JobManager.cancel_job`).

        Raises:
            JobNotFound, InvalidTransition (already terminal), CancelNotAllowed.
        """
        result: Job = self._call(self._manager.cancel_job, job_id)
        return result

    def wait_job(self, job_id: str, *, timeout_s: float | None = None) -> Job:
        """Block until the job is terminal and return it.

        Raises:
            JobNotFound: no such job.
            TimeoutError: ``timeout_s`` passed first.
        """
        result: Job = self._call(self._manager.wait_job, job_id, timeout_s=timeout_s)
        return result

    def statistics(self) -> ManagerStatistics:
        """Counts by status and type, and the runtime's own figures (a snapshot)."""
        return self._manager.statistics()

    @property
    def manager(self) -> JobManager:
        """The async manager underneath (use it only from the runtime's trio thread)."""
        return self._manager


@contextlib.contextmanager
def start_job_manager(path: str | os.PathLike[str], **options: Any) -> Iterator[BlockingJobManager]:
    """Run :func:`~kalam_actors.open_job_manager` on a background thread for the ``with``
    block, and give blocking access to it.

    Takes the same keyword arguments as :func:`~kalam_actors.open_job_manager` (and the same
    default executors). Errors from starting the runtime (StoreLocked, InvalidParams, …) are
    raised here; a runtime failure while the block runs is raised when it ends.

    Example::

        with start_job_manager("data/jobs", storage=engine) as manager:
            job_id = manager.create_job(JobType.FLUSH, params)
            print(manager.wait_job(job_id).status.value)
    """
    ready = threading.Event()
    runtime = RuntimeThread(path, options, on_ready=ready.set)
    runtime.start()
    ready.wait()
    if runtime.manager is None or runtime.token is None:
        runtime.join()
        assert runtime.error is not None
        raise runtime.error
    facade = BlockingJobManager(runtime.manager, runtime.token)
    try:
        yield facade
    finally:
        runtime.stop()
        runtime.join()
        if runtime.error is not None:
            raise runtime.error
