"""kalam-actors: a durable, actor-based job runtime that a storage engine embeds in its process.

A library is quiet: importing it turns its loguru logger off. Turn it on with
``logger.enable("kalam_actors")`` (every line about a job starts with ``[<job_id>]``).
"""

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

_logger.disable("kalam_actors")
