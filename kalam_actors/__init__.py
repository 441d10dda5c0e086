"""kalam-actors: a durable, actor-based job runtime that a storage engine embeds in its process.

It runs an engine's maintenance work (flush, cleanup, retention, stream eviction, user
cleanup, compaction, backup, restore, and pruning its own history) as jobs that survive
crashes, never run twice by accident, retry with backoff, and can be listed, watched and
cancelled from any process.

Running it
    ``open_job_manager(path, storage=engine)``: an async context manager for trio programs;
    it yields a :class:`JobManager`. ``path`` is the job store's folder (made if missing; one
    runtime per store). By default it runs the eight built-in executors and JobCleanup;
    pass ``executors=[...]`` for your own (subclasses of :class:`JobExecutor`).
    ``start_job_manager(path, ...)``: the same for code that is not async, as a ``with``
    block yielding a :class:`BlockingJobManager`.
    ``kalam_actors.aio.open_job_manager(path, ...)``: the same for asyncio programs.

Jobs
    ``job_id = await manager.create_job(JobType.FLUSH, {"namespace_id": "app",
    "table_name": "events", "table_type": "Shared"}, idempotency_key="FL:app:events")``
    returns once the job is durably stored. Then ``get_job``, ``list_jobs(JobFilter(...))``,
    ``watch_job`` (every change), ``wait_job`` (the end), ``cancel_job`` and
    ``statistics()``. A :class:`Job` carries its :class:`JobStatus` (New, Queued, Running,
    Retrying, then Completed, Failed, Cancelled or Skipped: ``job.status.value`` is the
    name), message, retries, :class:`Progress` and trace. ``JobId`` values are typed:
    ``FL-…`` is a Flush.

Other processes
    :class:`JobStore` reads and submits while a runtime serves the store (``system_jobs()``
    is the ``system.jobs`` view, :data:`SYSTEM_JOBS_COLUMNS`). The ``kalam-actors`` command
    does the same from a shell: ``kalam-actors --help``; ``kalam-actors demo`` shows every
    job type at work.

Writing an executor
    Subclass :class:`JobExecutor`, set ``job_type``, implement ``validate_params`` and
    ``execute(ctx, job)``, which runs in its own actor thread and returns a
    :class:`JobDecision` (``completed``, ``failed``, ``retry``, ``skipped``). ``ctx`` is a
    :class:`JobContext`: ``ctx.params``, ``ctx.storage``, ``ctx.report_progress``,
    ``ctx.cancelled``, ``ctx.log_info``. ``kalam_actors.testing`` runs executors without a
    runtime and has pytest fixtures with one.

Errors
    All derive from :class:`KalamError`: bad input raises :class:`InvalidParams`,
    :class:`UnknownJobType` or :class:`InvalidJobId` and writes nothing;
    :class:`IdempotentConflict` names the job holding a key; :class:`StoreLocked` means
    another runtime serves the store.

Logs
    A library is quiet: importing it turns its loguru logger off. Turn it on with
    ``logger.enable("kalam_actors")``, or pass ``log_file=`` to ``open_job_manager``. Every
    line about a job starts with ``[<job_id>]``.

The version is ``kalam_actors.__version__``.
"""

from importlib import metadata as _metadata

from loguru import logger as _logger

from .blocking import BlockingJobManager as BlockingJobManager
from .blocking import start_job_manager as start_job_manager
from .context import JobContext as JobContext
from .errors import CancelNotAllowed as CancelNotAllowed
from .errors import CorruptRecord as CorruptRecord
from .errors import IdempotentConflict as IdempotentConflict
from .errors import InvalidJobId as InvalidJobId
from .errors import InvalidParams as InvalidParams
from .errors import InvalidTransition as InvalidTransition
from .errors import JobNotFound as JobNotFound
from .errors import KalamError as KalamError
from .errors import RuntimeFailed as RuntimeFailed
from .errors import RuntimeStopped as RuntimeStopped
from .errors import StoreError as StoreError
from .errors import StoreLocked as StoreLocked
from .errors import UnknownJobType as UnknownJobType
from .executor import JobExecutor as JobExecutor
from .ids import JobId as JobId
from .ids import JobType as JobType
from .manager import JobManager as JobManager
from .manager import ManagerStatistics as ManagerStatistics
from .manager import open_job_manager as open_job_manager
from .model import SYSTEM_JOBS_COLUMNS as SYSTEM_JOBS_COLUMNS
from .model import Job as Job
from .model import JobDecision as JobDecision
from .model import JobFilter as JobFilter
from .model import JobRow as JobRow
from .model import JobStatus as JobStatus
from .model import Outcome as Outcome
from .model import Progress as Progress
from .model import RetryPolicy as RetryPolicy
from .store import JobStore as JobStore

__all__ = [
    "SYSTEM_JOBS_COLUMNS",
    "BlockingJobManager",
    "CancelNotAllowed",
    "CorruptRecord",
    "IdempotentConflict",
    "InvalidJobId",
    "InvalidParams",
    "InvalidTransition",
    "Job",
    "JobContext",
    "JobDecision",
    "JobExecutor",
    "JobFilter",
    "JobId",
    "JobManager",
    "JobNotFound",
    "JobRow",
    "JobStatus",
    "JobStore",
    "JobType",
    "KalamError",
    "ManagerStatistics",
    "Outcome",
    "Progress",
    "RetryPolicy",
    "RuntimeFailed",
    "RuntimeStopped",
    "StoreError",
    "StoreLocked",
    "UnknownJobType",
    "open_job_manager",
    "start_job_manager",
]

_VERSION = "0.1.0"
"""The version when the package's metadata cannot be read (run from a source tree)."""

try:
    __version__: str = _metadata.version("kalam-actors")
except _metadata.PackageNotFoundError:  # pragma: no cover - a source tree, not installed
    __version__ = _VERSION

_logger.disable("kalam_actors")
