"""The reference storage engine: hot rows in LMDB, cold rows in Parquet segments.

``Engine`` implements :class:`StorageEngine`, the interface the built-in executors use.
"""

from .engine import Engine as Engine
from .engine import FaultHooks as FaultHooks
from .errors import CorruptSegment as CorruptSegment
from .errors import InvalidName as InvalidName
from .errors import LimitExceeded as LimitExceeded
from .errors import OperationCancelled as OperationCancelled
from .errors import RowNotFound as RowNotFound
from .errors import SimulatedCrash as SimulatedCrash
from .errors import StorageError as StorageError
from .errors import TableExists as TableExists
from .errors import TableNotFound as TableNotFound
from .errors import UserExists as UserExists
from .errors import UserNotFound as UserNotFound
from .errors import UserStillOwnsData as UserStillOwnsData
from .errors import WrongTableType as WrongTableType
from .interface import CleanupResult as CleanupResult
from .interface import FlushResult as FlushResult
from .interface import HotSummary as HotSummary
from .interface import ImportFile as ImportFile
from .interface import ImportResult as ImportResult
from .interface import MergeResult as MergeResult
from .interface import PurgeResult as PurgeResult
from .interface import RestoreLimits as RestoreLimits
from .interface import SegmentInfo as SegmentInfo
from .interface import Snapshot as Snapshot
from .interface import SnapshotFile as SnapshotFile
from .interface import StorageEngine as StorageEngine
from .interface import TableInfo as TableInfo
from .interface import TableStats as TableStats
from .interface import TableType as TableType
from .interface import UserInfo as UserInfo
from .interface import UserPurgeResult as UserPurgeResult
from .interface import Version as Version
from .names import NAME_RE as NAME_RE
from .tables import check_table_spec as check_table_spec

__all__ = [
    "NAME_RE",
    "CleanupResult",
    "CorruptSegment",
    "Engine",
    "FaultHooks",
    "FlushResult",
    "HotSummary",
    "ImportFile",
    "ImportResult",
    "InvalidName",
    "LimitExceeded",
    "MergeResult",
    "OperationCancelled",
    "PurgeResult",
    "RestoreLimits",
    "RowNotFound",
    "SegmentInfo",
    "SimulatedCrash",
    "Snapshot",
    "SnapshotFile",
    "StorageEngine",
    "StorageError",
    "TableExists",
    "TableInfo",
    "TableNotFound",
    "TableStats",
    "TableType",
    "UserExists",
    "UserInfo",
    "UserNotFound",
    "UserPurgeResult",
    "UserStillOwnsData",
    "Version",
    "WrongTableType",
    "check_table_spec",
]
