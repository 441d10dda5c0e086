"""What the built-in executors need from a storage engine, written down as a Protocol.

The reference :class:`~kalam_actors.storage.Engine` implements it; another engine can too, and
the executors in :mod:`kalam_actors.executors` will run against it unchanged. The records that
cross the boundary are frozen dataclasses defined here.

Vocabulary: a *key* is ``(user_id, pk)`` where ``user_id`` is ``""`` outside USER tables and
``pk`` is the primary key encoded as JSON text; a *version* is one stored write of a key,
identified by its engine-wide sequence number ``seq`` (a later write has a larger ``seq``).
Timestamps are integer microseconds since the epoch, from the engine's clock.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Final, Protocol, runtime_checkable

from .errors import InvalidName

__all__ = [
    "CleanupResult",
    "FlushResult",
    "HotSummary",
    "ImportFile",
    "ImportResult",
    "Key",
    "MergeResult",
    "PurgeResult",
    "RestoreLimits",
    "SegmentInfo",
    "Snapshot",
    "SnapshotFile",
    "StorageEngine",
    "TableInfo",
    "TableStats",
    "TableType",
    "UserInfo",
    "UserPurgeResult",
    "Version",
]

Key = tuple[str, str]
"""``(user_id, pk_json)``: ``user_id`` is ``""`` outside USER tables."""


class TableType(enum.Enum):
    """How a table's rows are owned and kept. Values are the names used in job parameters."""

    USER = "User"
    SHARED = "Shared"
    STREAM = "Stream"

    @classmethod
    def parse(cls, text: object) -> TableType:
        """Accept a TableType or its value/name, case-insensitive.

        Raises:
            ValueError: naming the text and the known types.
        """
        if isinstance(text, TableType):
            return text
        if isinstance(text, str):
            for member in cls:
                if text.lower() in (member.value.lower(), member.name.lower()):
                    return member
        known = ", ".join(m.value for m in cls)
        raise ValueError(f"unknown table type {text!r}; known types: {known}")


@dataclasses.dataclass(frozen=True, slots=True)
class TableInfo:
    """A table's metadata.

    Attributes:
        namespace: its namespace.
        name: its name.
        table_type: USER, SHARED or STREAM.
        primary_key: the row field that identifies a row.
        ttl_seconds: for STREAM tables, how long a row lives after its last write.
        created_us: when it was created.
        restored_from: for a table made by a restore, where from (archive checksum, job id).
        options: free-form per-table settings the engine stores for others (e.g. maintenance
            policy overrides); a JSON object.
    """

    namespace: str
    name: str
    table_type: TableType
    primary_key: str
    ttl_seconds: int | None = None
    created_us: int = 0
    restored_from: Mapping[str, Any] | None = None
    options: Mapping[str, Any] | None = None

    @property
    def table_id(self) -> str:
        """``"<namespace>:<name>"``."""
        return f"{self.namespace}:{self.name}"


@dataclasses.dataclass(frozen=True, slots=True)
class TableStats:
    """Where a table's data lives right now.

    Attributes:
        hot_rows: stored versions in the hot (LMDB) store, soft-deleted ones included.
        segments: Parquet segment files in the manifest.
        cold_rows: stored versions in those segments.
        bytes: total size of those segment files.
    """

    hot_rows: int
    segments: int
    cold_rows: int
    bytes: int

    def to_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)

    def __getitem__(self, field: str) -> int:
        """``stats["hot_rows"]`` as well as ``stats.hot_rows``."""
        if field not in _STATS_FIELDS:
            raise KeyError(field)
        value: int = getattr(self, field)
        return value


_STATS_FIELDS: Final = frozenset({"hot_rows", "segments", "cold_rows", "bytes"})


@dataclasses.dataclass(frozen=True, slots=True)
class HotSummary:
    """A table's hot rows at a glance: how many versions, the oldest ``seq`` and write time
    (µs; None when there are none)."""

    rows: int
    min_seq: int | None
    min_ts: int | None


@dataclasses.dataclass(frozen=True, slots=True)
class SegmentInfo:
    """One Parquet segment named by a table's manifest.

    Attributes:
        segment_id: its id (time-ordered text, also its file name stem).
        user_id: its owner in a USER table, else ``""``.
        rows: stored versions in it.
        bytes: its file size.
        min_seq: smallest version number in it.
        max_seq: largest version number in it.
        min_ts: oldest write time in it (µs).
        relpath: its path under the engine's segment root.
    """

    segment_id: str
    user_id: str
    rows: int
    bytes: int
    min_seq: int
    max_seq: int
    min_ts: int
    relpath: str


@dataclasses.dataclass(frozen=True, slots=True)
class Version:
    """One stored version of a key, without its payload.

    Attributes:
        user_id: the key's owner (``""`` outside USER tables).
        pk: the primary key as JSON text.
        seq: its version number.
        deleted: whether it is a soft-delete marker.
        ts: when it was written (µs); for a soft delete, when the row was deleted.
        segment_id: the segment holding it, or None while it is hot.
        created_us: when the key's current row was created (its first write since it was
            last deleted), the same on every version of the key; None when the engine has
            no record (a soft-deleted row, or rows an import brought in).
    """

    user_id: str
    pk: str
    seq: int
    deleted: bool
    ts: int
    segment_id: str | None
    created_us: int | None = None

    @property
    def key(self) -> Key:
        return (self.user_id, self.pk)


@dataclasses.dataclass(frozen=True, slots=True)
class UserInfo:
    """A user record. ``deleted_us`` is set once the user is soft-deleted."""

    user_id: str
    username: str
    created_us: int
    deleted_us: int | None = None

    @property
    def deleted(self) -> bool:
        return self.deleted_us is not None


@dataclasses.dataclass(frozen=True, slots=True)
class FlushResult:
    """What one flush moved: ``rows`` versions into ``files`` new segments of ``bytes`` bytes."""

    rows: int
    files: int
    bytes: int


@dataclasses.dataclass(frozen=True, slots=True)
class CleanupResult:
    """What a cleanup removed: segment ``files``, ``bytes`` of them, and ``hot_rows``."""

    files: int
    bytes: int
    hot_rows: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class PurgeResult:
    """What one purge removed for good.

    Attributes:
        hot_rows: versions deleted from the hot store.
        cold_rows: versions dropped from segments.
        segments_rewritten: segments replaced by a smaller copy (or by nothing).
        bytes_freed: size of the replaced files minus size of their replacements.
        hot_bytes: size of the hot values deleted (keys and row JSON).
    """

    hot_rows: int
    cold_rows: int
    segments_rewritten: int
    bytes_freed: int
    hot_bytes: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class MergeResult:
    """What a compaction did: ``files_in`` segments (``rows_in`` versions, ``bytes_in``) became
    ``files_out`` segments (``rows_out`` versions, ``bytes_out``)."""

    files_in: int
    files_out: int
    rows_in: int
    rows_out: int
    bytes_in: int
    bytes_out: int


@dataclasses.dataclass(frozen=True, slots=True)
class UserPurgeResult:
    """What removing a user took with it."""

    tables: tuple[str, ...]
    hot_rows: int
    segments: int
    bytes: int
    acl_entries: int
    tokens: int


@dataclasses.dataclass(frozen=True, slots=True)
class SnapshotFile:
    """One data file of a snapshot, in the segment format.

    Attributes:
        path: where it is (inside the snapshot's scratch folder).
        user_id: its owner in a USER table, else ``""``.
        rows: stored versions in it.
        kind: ``"hot"`` (rows that were hot) or ``"segment"``.
    """

    path: Path
    user_id: str
    rows: int
    kind: str


@dataclasses.dataclass(frozen=True, slots=True)
class Snapshot:
    """A consistent, immutable copy of one table, taken in one read transaction."""

    table: TableInfo
    files: tuple[SnapshotFile, ...]
    hot_rows: int
    cold_rows: int
    visible_rows: int
    segment_schema: tuple[tuple[str, str], ...]


@dataclasses.dataclass(frozen=True, slots=True)
class ImportFile:
    """A data file, in the segment format, to become one segment of an imported table."""

    path: Path
    user_id: str


@dataclasses.dataclass(frozen=True, slots=True)
class RestoreLimits:
    """How much one restore (an import of a backup) may bring in. An archive is read as
    hostile: these bound what a small file can make the engine write and hold in memory, and
    are checked against the manifest before anything is unpacked, and against each data file's
    Parquet metadata before its rows are read. An engine holds one (``Engine.open(...,
    restore_limits=...)``); raise them for tables bigger than the defaults.

    Attributes:
        max_file_rows: stored versions in one data file (a file's rows are read whole).
        max_total_rows: stored versions in the whole archive.
        max_total_bytes: bytes of data files in the whole archive, as unpacked on disk.
    """

    max_file_rows: int = 1_000_000
    max_total_rows: int = 20_000_000
    max_total_bytes: int = 32 << 30

    def __post_init__(self) -> None:
        """Raises InvalidName naming a limit that is not a whole number > 0."""
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise InvalidName(f"RestoreLimits.{field.name} must be a whole number > 0, "
                                  f"not {value!r}", field=field.name)


@dataclasses.dataclass(frozen=True, slots=True)
class ImportResult:
    """What an import installed, and what it replaced."""

    rows: int
    files: int
    replaced: bool


@runtime_checkable
class StorageEngine(Protocol):
    """The operations the built-in executors use. Names are validated by the engine; every
    method that changes data is atomic (one commit), and raises
    :class:`~kalam_actors.storage.errors.StorageError` subclasses for expected failures."""

    @property
    def backup_roots(self) -> tuple[Path, ...]:
        """Folders under which backups may be written and restored from."""
        ...

    def now_us(self) -> int:
        """The engine clock, in µs."""
        ...

    def table_info(self, namespace: str, table: str) -> TableInfo | None: ...

    def scan(self, namespace: str, table: str, *, user_id: str | None = None
             ) -> list[dict[str, Any]]: ...

    def flush_table(
        self, namespace: str, table: str, *, on_file: Callable[[int, int], None] | None = None
    ) -> FlushResult:
        """Move every hot version into new segments (one per user in USER tables).

        Segments are written, fsynced and renamed first; then one transaction adds them to the
        manifest and deletes exactly the hot versions they hold (a version rewritten meanwhile
        stays hot). ``on_file(done, total)`` is called after each segment file is written."""
        ...

    def drop_table_data(self, namespace: str, table: str, *, keep_metadata: bool
                        ) -> CleanupResult:
        """Remove hot rows, manifest and segment files (and the table unless
        ``keep_metadata``); a missing table only has its leftover files removed."""
        ...

    def remove_orphaned_files(self, namespace: str, table: str) -> CleanupResult:
        """Delete files under the table's segment folder that its manifest does not name."""
        ...

    def segments(self, namespace: str, table: str) -> list[SegmentInfo]: ...

    def versions(self, namespace: str, table: str) -> list[Version]:
        """Every stored version (hot and cold), read from one consistent snapshot; an engine
        that records when rows were created fills in ``created_us``."""
        ...

    def purge(self, namespace: str, table: str, victims: Mapping[Key, int], *,
              older_than_us: int | None = None) -> PurgeResult:
        """Remove for good every version of each victim key with ``seq <= victims[key]``,
        from hot rows and segments, in one manifest/hot transaction. ``older_than_us`` is a
        hint: no victim version is that recent, so younger segments need not be read."""
        ...

    def merge_segments(self, namespace: str, table: str, groups: Sequence[Sequence[str]], *,
                       cancelled: Callable[[], bool] | None = None) -> MergeResult:
        """Merge each group of one user's segments into one, keeping the latest version per
        key; all groups swap in one transaction, old files are deleted after it."""
        ...

    def get_user(self, user_id: str) -> UserInfo | None: ...

    def user_data_tables(self, user_id: str) -> list[str]:
        """``"ns:table"`` of every USER table holding rows (hot or cold) of ``user_id``."""
        ...

    def purge_user(self, user_id: str, *, cascade: bool) -> UserPurgeResult:
        """Remove a soft-deleted user: with ``cascade`` its rows in every USER table first;
        then its ACL entries, tokens and record, all in one transaction."""
        ...

    def scratch_dir(self, label: str) -> AbstractContextManager[Path]:
        """A private folder on the engine's filesystem, removed on exit."""
        ...

    def snapshot(self, namespace: str, table: str, into: Path) -> Snapshot:
        """Write a consistent copy of the table's data files into ``into``."""
        ...

    def import_table(self, namespace: str, table: str, *, like: TableInfo,
                     files: Sequence[ImportFile], overwrite: bool,
                     restored_from: Mapping[str, Any] | None = None) -> ImportResult:
        """Install ``files`` as the whole content of a table shaped ``like``, atomically
        replacing an existing table only when ``overwrite``. An engine with
        ``restore_limits`` (a :class:`RestoreLimits`) enforces them here too."""
        ...

