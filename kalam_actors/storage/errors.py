"""Errors the reference storage engine raises on purpose.

All derive from :class:`StorageError` (itself a :class:`~kalam_actors.errors.KalamError`), so an
executor can turn any expected storage failure into a job decision with one ``except``.
"""

from __future__ import annotations

from ..errors import InvalidParams, KalamError

__all__ = [
    "CorruptSegment",
    "InvalidName",
    "LimitExceeded",
    "OperationCancelled",
    "RowNotFound",
    "SegmentsChanged",
    "SimulatedCrash",
    "StorageError",
    "TableExists",
    "TableNotFound",
    "UserExists",
    "UserNotFound",
    "UserStillOwnsData",
    "WrongTableType",
]


class StorageError(KalamError):
    """Base class of the storage engine's expected failures."""


class InvalidName(StorageError, InvalidParams):
    """Raised when a namespace, table or user name does not match
    ``^[A-Za-z_][A-Za-z0-9_]{0,63}$``, or a row or key is not acceptable."""


class TableNotFound(StorageError, LookupError):
    """Raised when a table does not exist. Attributes: ``table_id``."""

    def __init__(self, table_id: str) -> None:
        super().__init__(f"table {table_id} does not exist")
        self.table_id = table_id


class TableExists(StorageError):
    """Raised when creating (or restoring over) a table that already exists."""

    def __init__(self, table_id: str, hint: str = "") -> None:
        super().__init__(f"table {table_id} already exists{hint}")
        self.table_id = table_id


class WrongTableType(StorageError):
    """Raised when an operation needs another table type (e.g. ``user_id`` on a SHARED table)."""


class RowNotFound(StorageError, LookupError):
    """Raised when updating a row that does not exist (or is soft-deleted)."""


class UserExists(StorageError):
    """Raised when creating a user whose id is taken."""


class UserNotFound(StorageError, LookupError):
    """Raised when a user id names no user."""


class UserStillOwnsData(StorageError):
    """Raised when removing a user without cascade while USER tables hold its rows.

    Attributes:
        tables: ``"ns:table"`` of those tables.
    """

    def __init__(self, user_id: str, tables: list[str]) -> None:
        super().__init__(
            f"user {user_id} still owns data in {', '.join(tables)}; "
            f"run with cascade=true to delete it"
        )
        self.tables = tables


class CorruptSegment(StorageError):
    """Raised when a data file is not a readable segment of the expected schema."""


class LimitExceeded(StorageError):
    """Raised when an import (a restore) would bring in more than the engine's
    :class:`~kalam_actors.storage.interface.RestoreLimits` allow; nothing was changed."""


class SegmentsChanged(StorageError):
    """Raised when an operation names segments the manifest no longer holds: another job
    (retention, eviction, a compaction) rewrote them since the caller listed them. Nothing was
    changed; list the segments again and re-plan."""


class OperationCancelled(StorageError):
    """Raised out of a long engine operation whose ``cancelled`` callback said stop; nothing
    it did is visible."""


class SimulatedCrash(BaseException):
    """Raised by a test's fault hook to simulate the process dying at that point.

    A BaseException on purpose: the engine's ``except Exception`` tidy-ups must not run, just
    as they would not in a real crash.
    """
