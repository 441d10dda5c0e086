"""The eight built-in executors, one a module, each doing its real work against a
:class:`~kalam_actors.storage.interface.StorageEngine`."""

from __future__ import annotations

from ..executor import JobExecutor
from ..storage.interface import StorageEngine
from .backup import BackupExecutor as BackupExecutor
from .cleanup import CleanupExecutor as CleanupExecutor
from .compact import CompactExecutor as CompactExecutor
from .flush import FlushExecutor as FlushExecutor
from .restore import RestoreExecutor as RestoreExecutor
from .retention import RetentionExecutor as RetentionExecutor
from .stream_eviction import StreamEvictionExecutor as StreamEvictionExecutor
from .user_cleanup import UserCleanupExecutor as UserCleanupExecutor

__all__ = [
    "BackupExecutor",
    "CleanupExecutor",
    "CompactExecutor",
    "FlushExecutor",
    "RestoreExecutor",
    "RetentionExecutor",
    "StreamEvictionExecutor",
    "UserCleanupExecutor",
    "builtin_executors",
]


def builtin_executors(engine: StorageEngine | None = None) -> list[JobExecutor]:
    """One instance of each built-in executor, in job-type order.

    Args:
        engine: when given, parameter validation also checks backup and restore locations
            against its allowed roots (jobs still run against ``ctx.storage``).
    """
    return [
        FlushExecutor(engine),
        CleanupExecutor(engine),
        RetentionExecutor(engine),
        StreamEvictionExecutor(engine),
        UserCleanupExecutor(engine),
        CompactExecutor(engine),
        BackupExecutor(engine),
        RestoreExecutor(engine),
    ]
