"""The reference storage engine: hot rows in LMDB, cold rows in immutable Parquet segments.

Layout of the folder an :class:`Engine` owns::

    engine.lmdb/                      LMDB environment; named DBs below
    segments/<ns>/<table>/[<user>/]<segment_id>.parquet
    tmp/                              scratch folders (backups, restores), removed after use
    backups/                          the default allowed backup root
    engine.lock                       flock: shared by every process with the engine open

LMDB databases (keys are UTF-8, parts separated by NUL, which no valid name contains):

    tables    ns␀table                  -> table metadata (JSON)
    hot       ns␀table␀user␀pk_json     -> header (seq, deleted, ts) + row JSON
    manifest  ns␀table␀segment_id       -> segment entry (JSON)
    created   ns␀table␀user␀pk_json     -> when the key's current row was created (µs); kept
                                         apart from the versions, which updates, flushes
                                         and compactions replace
    users     user_id                   -> user record (JSON)
    acls      user_id␀ns␀table          -> ACL entry (JSON)
    tokens    user_id␀token_id          -> token record (JSON)
    meta      b"seq"                    -> the last version number handed out

Every write allocates fresh, engine-wide increasing version numbers (``seq``), so "the latest
version of a key" is simply its largest ``seq``, wherever it lives. Maintenance operations that
change a table's segments (flush, purge, merge, cleanup, import, snapshot) hold that table's
lock; ordinary reads and writes never wait for them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import secrets
import shutil
import struct
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar, cast

import lmdb
import orjson
import pyarrow as pa
import pyarrow.compute as pc
from loguru import logger

from .._process import process_alive
from .._txngate import TxnGate
from .errors import (
    CorruptSegment,
    InvalidName,
    LimitExceeded,
    OperationCancelled,
    RowNotFound,
    SegmentsChanged,
    StorageError,
    TableExists,
    TableNotFound,
    UserExists,
    UserNotFound,
    UserStillOwnsData,
    WrongTableType,
)
from .interface import (
    CleanupResult,
    FlushResult,
    HotSummary,
    ImportFile,
    ImportResult,
    Key,
    MergeResult,
    PurgeResult,
    RestoreLimits,
    SegmentInfo,
    Snapshot,
    SnapshotFile,
    StorageEngine,
    TableInfo,
    TableStats,
    TableType,
    UserInfo,
    UserPurgeResult,
    Version,
)
from .names import check_name
from .segments import (
    build_segment,
    check_segment_file,
    fsync_dir,
    iter_segment,
    latest_per_key,
    read_segment,
    schema_pairs,
    write_segment,
)
from .tables import check_table_spec

__all__ = ["Engine", "FaultHooks"]

T = TypeVar("T")

_DBS: Final = ("tables", "hot", "manifest", "users", "acls", "tokens", "meta", "created")
_SEQ_KEY: Final = b"seq"
_HEADER: Final = struct.Struct(">qBq")  # seq, deleted, ts: the hot value's fixed prefix
_MAX_PK_BYTES: Final = 256
_READ_RETRIES: Final = 8
_DEFAULT_MAP_SIZE: Final = 1 << 30
# Rows an import decodes at once while checking a file: memory stays bounded by this, not by
# the file's row count.
_CHECK_BATCH_ROWS: Final = 65_536


class FaultHooks:
    """Test-only callables the engine runs at named points of its multi-step operations.

    A hook may write through the engine (to race an operation) or raise
    :class:`~kalam_actors.storage.errors.SimulatedCrash` (to stop it dead, as a crash would).

    Points:
        ``after_snapshot``: flush has read the hot rows it will move, nothing written yet.
        ``after_file_move``: an import moved one more file into the segment folder (fired
            after each); the manifest is not committed.
        ``after_segment_write``: new segment files are durable, the manifest is not committed.
        ``after_commit``: the manifest is committed, replaced files are not yet deleted.
    """

    POINTS: Final = ("after_snapshot", "after_file_move", "after_segment_write", "after_commit")

    def __init__(self) -> None:
        self._hooks: dict[str, Callable[[], None]] = {}

    def set(self, point: str, hook: Callable[[], None] | None) -> None:
        """Install (or with None remove) the hook run at ``point``."""
        if point not in self.POINTS:
            raise ValueError(f"unknown fault point {point!r}; known: {', '.join(self.POINTS)}")
        if hook is None:
            self._hooks.pop(point, None)
        else:
            self._hooks[point] = hook

    def clear(self) -> None:
        """Remove every hook."""
        self._hooks.clear()

    def fire(self, point: str) -> None:
        hook = self._hooks.get(point)
        if hook is not None:
            hook()


class _Shared:
    """What every Engine on one path in this process shares: LMDB allows one Environment per
    path per process, and table locks only work if everyone takes the same ones."""

    def __init__(self, root: Path, map_size: int, durable: bool) -> None:
        self.root = root
        self.durable = durable
        self.env = lmdb.open(
            str(root / "engine.lmdb"), subdir=True, map_size=map_size, max_dbs=len(_DBS) + 2,
            max_readers=512, sync=durable, metasync=durable,
        )
        self.dbs = {name: self.env.open_db(name.encode()) for name in _DBS}
        self.refs = 0
        self.gate = TxnGate()
        self._locks: dict[bytes, threading.RLock] = {}
        self._locks_guard = threading.Lock()
        self._lock_fd: int | None = None

    def claim(self) -> None:
        """Take the engine folder's shared lock, first tidying what crashed processes left
        when no other process holds it: then no one can be between a segment write and its
        manifest commit, so a file no manifest names is garbage, never work in progress."""
        self._lock_fd = os.open(self.root / "engine.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logger.debug(f"storage engine {self.root}: in use by another process; "
                         f"unreferenced segment files are left to it")
        else:
            self._remove_unreferenced_segments()
        fcntl.flock(self._lock_fd, fcntl.LOCK_SH)

    def release(self) -> None:
        self.env.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # drops the flock
            self._lock_fd = None

    def _remove_unreferenced_segments(self) -> None:
        """Delete segment files (and ``.tmp-`` files) that no table's manifest names: left by
        a crash between writing or moving them and the commit that adopts them, or between
        a commit and the deletion of the files it replaced."""
        segments = self.root / "segments"
        with self.env.begin(buffers=False) as txn:
            keep = {segments / orjson.loads(v)["relpath"]
                    for _, v in _iter_prefix(txn, self.dbs["manifest"], b"")}
        files, size = _remove_files(segments, keep=keep, remove_root=False)
        if files:
            logger.info(f"storage engine {self.root}: removed {files} segment files "
                        f"({size} bytes) that no table references")

    def table_lock(self, key: bytes) -> threading.RLock:
        with self._locks_guard:
            lock = self._locks.get(key)
            if lock is None:
                lock = self._locks[key] = threading.RLock()
            return lock

    def grow(self) -> None:
        def double() -> None:
            size = int(self.env.info()["map_size"]) * 2
            self.env.set_mapsize(size)
            logger.info(f"storage engine {self.root}: LMDB map size grown to {size} bytes")

        self.gate.exclusive(double)


_REGISTRY: dict[Path, _Shared] = {}
_REGISTRY_LOCK = threading.Lock()


def _open_shared(root: Path, map_size: int, durable: bool) -> _Shared:
    shared = _Shared(root, map_size, durable)
    try:
        shared.claim()
    except BaseException:
        shared.release()
        raise
    return shared


# --- key and value encoding ---

def _table_key(ns: str, table: str) -> bytes:
    return f"{ns}\x00{table}".encode()


def _table_prefix(ns: str, table: str) -> bytes:
    return f"{ns}\x00{table}\x00".encode()


def _delete_prefix(txn: lmdb.Transaction, db: Any, prefix: bytes) -> int:
    keys = [k for k, _ in _iter_prefix(txn, db, prefix)]
    for k in keys:
        txn.delete(k, db=db)
    return len(keys)


def _hot_key(ns: str, table: str, user: str, pk: str) -> bytes:
    return f"{ns}\x00{table}\x00{user}\x00{pk}".encode()


def _split_hot_key(key: bytes, prefix_len: int) -> tuple[str, str]:
    user, _, pk = key[prefix_len:].decode().partition("\x00")
    return user, pk


def _hot_value(seq: int, deleted: bool, ts: int, data: bytes) -> bytes:
    return _HEADER.pack(seq, deleted, ts) + data


def _hot_header(value: bytes) -> tuple[int, bool, int]:
    seq, deleted, ts = _HEADER.unpack_from(value)
    return seq, bool(deleted), ts


def _get(txn: lmdb.Transaction, key: bytes, db: Any) -> bytes | None:
    # Transactions are opened with buffers=False, so values are bytes, never memoryviews.
    return cast("bytes | None", txn.get(key, db=db))


def _iter_prefix(
    txn: lmdb.Transaction, db: Any, prefix: bytes
) -> Iterator[tuple[bytes, bytes]]:
    cursor = txn.cursor(db=db)
    if not cursor.set_range(prefix):
        return
    for key, value in cast("Iterator[tuple[bytes, bytes]]", cursor.iternext()):
        if not key.startswith(prefix):
            return
        yield key, value


def _pk_sort_key(pk_json: str) -> tuple[bool, Any]:
    value = orjson.loads(pk_json)
    return (isinstance(value, str), value)


def _info_from(raw: bytes) -> TableInfo:
    d = orjson.loads(raw)
    return TableInfo(
        namespace=d["namespace"], name=d["name"], table_type=TableType(d["table_type"]),
        primary_key=d["primary_key"], ttl_seconds=d.get("ttl_seconds"),
        created_us=d.get("created_us", 0), restored_from=d.get("restored_from"),
        options=d.get("options"),
    )


def _info_to(info: TableInfo) -> bytes:
    return orjson.dumps({
        "namespace": info.namespace, "name": info.name, "table_type": info.table_type.value,
        "primary_key": info.primary_key, "ttl_seconds": info.ttl_seconds,
        "created_us": info.created_us,
        "restored_from": dict(info.restored_from) if info.restored_from else None,
        "options": dict(info.options) if info.options else None,
    })


def _segment_from(raw: bytes) -> SegmentInfo:
    return SegmentInfo(**orjson.loads(raw))


def _segment_to(seg: SegmentInfo) -> bytes:
    return orjson.dumps({
        "segment_id": seg.segment_id, "user_id": seg.user_id, "rows": seg.rows,
        "bytes": seg.bytes, "min_seq": seg.min_seq, "max_seq": seg.max_seq,
        "min_ts": seg.min_ts, "relpath": seg.relpath,
    })


def _new_segment_id() -> str:
    # Time first so that ids sort by creation; the random tail keeps two in one ns apart.
    return f"{time.time_ns():020d}_{secrets.token_hex(4)}"


class _HotRow:
    __slots__ = ("data", "deleted", "key", "pk", "seq", "ts", "user")

    def __init__(self, key: bytes, value: bytes, prefix_len: int) -> None:
        self.key = key
        self.user, self.pk = _split_hot_key(key, prefix_len)
        self.seq, self.deleted, self.ts = _hot_header(value)
        self.data = value[_HEADER.size:]


# --- the engine ---

class Engine:
    """A small, real storage engine: the reference host for the built-in executors.

    Open it with :meth:`open`; it is safe to use from several threads at once. It implements
    :class:`~kalam_actors.storage.interface.StorageEngine`.

    Attributes:
        path: the folder it owns.
        faults: test-only hooks run at named points (see :class:`FaultHooks`).
    """

    def __init__(
        self, shared: _Shared, *, backup_roots: tuple[Path, ...], clock: Callable[[], float],
        restore_limits: RestoreLimits,
    ) -> None:
        self._shared = shared
        self._env = shared.env
        self._db = shared.dbs
        self.path = shared.root
        self._segments_root = shared.root / "segments"
        self._backup_roots = backup_roots
        self._clock = clock
        self._restore_limits = restore_limits
        self._closed = False
        self.faults = FaultHooks()

    # -- lifecycle --

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        backup_roots: Iterable[str | os.PathLike[str]] | None = None,
        clock: Callable[[], float] = time.time,
        map_size: int = _DEFAULT_MAP_SIZE,
        durable: bool = True,
        restore_limits: RestoreLimits | None = None,
    ) -> Engine:
        """Open (creating if needed) the engine whose data lives in the folder ``path``.

        Opening a path already open in this process shares its LMDB environment. The first
        open in a process removes scratch folders of dead processes and, when no other process
        has the engine open, segment files that no table references (a crash's leftovers).

        Args:
            path: the engine's folder.
            backup_roots: folders backups may be written under and restored from; default
                ``<path>/backups``.
            clock: seconds since the epoch; tests inject one to control row ages.
            map_size: initial LMDB map size in bytes (sparse; grown when full).
            durable: fsync every commit and segment file before relying on it. Only tests and
                throwaway data should turn it off. The first open of a path decides.
            restore_limits: how much one restore may bring in (default ``RestoreLimits()``:
                1,000,000 rows per file, 20,000,000 rows and 32 GiB per archive).
        """
        root = Path(path).resolve()
        (root / "segments").mkdir(parents=True, exist_ok=True)
        limits = restore_limits if restore_limits is not None else RestoreLimits()
        if not isinstance(limits, RestoreLimits):
            raise InvalidName(f"restore_limits must be a RestoreLimits, not "
                              f"{type(limits).__name__}", field="restore_limits")
        with _REGISTRY_LOCK:
            shared = _REGISTRY.get(root)
            if shared is None:
                shared = _open_shared(root, map_size, durable)
                _REGISTRY[root] = shared
                _remove_dead_scratch(root / "tmp")
            shared.refs += 1
        roots = (
            tuple(Path(r).resolve() for r in backup_roots)
            if backup_roots is not None
            else (root / "backups",)
        )
        return cls(shared, backup_roots=roots, clock=clock, restore_limits=limits)

    def close(self) -> None:
        """Release this handle; the environment closes with the last handle on its path."""
        if self._closed:
            return
        self._closed = True
        with _REGISTRY_LOCK:
            self._shared.refs -= 1
            if self._shared.refs == 0:
                _REGISTRY.pop(self._shared.root, None)
                self._shared.release()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Engine {self.path}>"

    @property
    def backup_roots(self) -> tuple[Path, ...]:
        """Resolved folders under which backups may be written and restored from."""
        return self._backup_roots

    @property
    def restore_limits(self) -> RestoreLimits:
        """How much one restore (:meth:`import_table`) may bring in."""
        return self._restore_limits

    def now_us(self) -> int:
        """The engine clock in µs."""
        return int(self._clock() * 1_000_000)

    # -- transactions --

    def _read(self, fn: Callable[[lmdb.Transaction], T]) -> T:
        with self._shared.gate.txn(), self._env.begin(buffers=False) as txn:
            return fn(txn)

    def _write(self, fn: Callable[[lmdb.Transaction], T]) -> T:
        """Run ``fn`` in one write transaction; on a full map, grow it and run ``fn`` again."""
        while True:
            try:
                with self._shared.gate.txn(), self._env.begin(write=True) as txn:
                    return fn(txn)
            except lmdb.MapFullError:
                self._shared.grow()

    def _alloc_seq(self, txn: lmdb.Transaction, count: int) -> int:
        raw = _get(txn, _SEQ_KEY, self._db["meta"])
        last = int.from_bytes(raw, "big") if raw else 0
        txn.put(_SEQ_KEY, (last + count).to_bytes(8, "big"), db=self._db["meta"])
        return last + 1

    def _table_lock(self, ns: str, table: str) -> threading.RLock:
        return self._shared.table_lock(_table_key(ns, table))

    # -- tables --

    def create_table(
        self,
        namespace: str,
        table: str,
        table_type: TableType | str,
        *,
        primary_key: str = "id",
        ttl_seconds: int | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> TableInfo:
        """Create a table.

        Args:
            options: a JSON object kept with the table for others to read (e.g. maintenance
                policy overrides); the engine does not interpret it.

        Raises:
            InvalidName: a bad name, table type, primary key, ttl or options (see
                :func:`~kalam_actors.storage.tables.check_table_spec`).
            TableExists: the table exists.
        """
        info = dataclasses.replace(
            check_table_spec(namespace, table, table_type, primary_key=primary_key,
                             ttl_seconds=ttl_seconds, options=options),
            created_us=self.now_us())
        kind = info.table_type

        def txn_fn(txn: lmdb.Transaction) -> None:
            if not txn.put(_table_key(namespace, table), _info_to(info), db=self._db["tables"],
                           overwrite=False):
                raise TableExists(info.table_id)

        self._write(txn_fn)
        logger.debug(f"storage: created {kind.value} table {info.table_id}")
        return info

    def table_info(self, namespace: str, table: str) -> TableInfo | None:
        """The table's metadata, or None if it does not exist."""
        check_name(namespace, "namespace")
        check_name(table, "table name")
        raw = self._read(lambda txn: _get(txn, _table_key(namespace, table), self._db["tables"]))
        return None if raw is None else _info_from(raw)

    def list_tables(self, namespace: str | None = None) -> list[TableInfo]:
        """Every table (of ``namespace`` if given), sorted by namespace then name."""
        prefix = b"" if namespace is None else check_name(namespace, "namespace").encode() + b"\0"

        def txn_fn(txn: lmdb.Transaction) -> list[TableInfo]:
            return [_info_from(v) for _, v in _iter_prefix(txn, self._db["tables"], prefix)]

        return self._read(txn_fn)

    def _require_table(self, namespace: str, table: str) -> TableInfo:
        info = self.table_info(namespace, table)
        if info is None:
            raise TableNotFound(f"{namespace}:{table}")
        return info

    def _owner(self, info: TableInfo, user_id: str | None) -> str:
        if info.table_type is TableType.USER:
            if user_id is None:
                raise WrongTableType(f"{info.table_id} is a User table: pass user_id")
            return check_name(user_id, "user id")
        if user_id is not None:
            raise WrongTableType(
                f"{info.table_id} is a {info.table_type.value} table: user_id applies to User "
                f"tables only"
            )
        return ""

    # -- rows --

    def _pk_json(self, info: TableInfo, pk: object) -> str:
        if isinstance(pk, bool) or not isinstance(pk, (int, str)):
            raise InvalidName(
                f"primary key {info.primary_key!r} of {info.table_id} must be an int or a str, "
                f"not {type(pk).__name__}", field=info.primary_key)
        text = orjson.dumps(pk).decode()
        if len(text.encode()) > _MAX_PK_BYTES:
            raise InvalidName(f"primary key of {info.table_id} is longer than {_MAX_PK_BYTES} "
                              f"bytes", field=info.primary_key)
        return text

    def _encode_row(self, info: TableInfo, row: Mapping[str, Any]) -> tuple[str, bytes]:
        if not isinstance(row, Mapping):
            raise InvalidName(f"a row of {info.table_id} must be a dict, not {type(row).__name__}")
        if info.primary_key not in row:
            raise InvalidName(f"row of {info.table_id} has no primary key "
                              f"{info.primary_key!r}", field=info.primary_key)
        try:
            data = orjson.dumps(dict(row))
        except TypeError as exc:
            raise InvalidName(f"row of {info.table_id} is not JSON-serialisable: {exc}") from exc
        return self._pk_json(info, row[info.primary_key]), data

    def _put_versions(
        self, info: TableInfo, owner: str, items: Sequence[tuple[str, bytes]], deleted: bool
    ) -> int:
        ts = self.now_us()
        ns, table = info.namespace, info.name

        def txn_fn(txn: lmdb.Transaction) -> int:
            if _get(txn, _table_key(ns, table), self._db["tables"]) is None:
                raise TableNotFound(info.table_id)
            seq = self._alloc_seq(txn, len(items))
            hot, created = self._db["hot"], self._db["created"]
            for i, (pk, data) in enumerate(items):
                key = _hot_key(ns, table, owner, pk)
                txn.put(key, _hot_value(seq + i, deleted, ts, data), db=hot)
                if deleted:  # the row ends here; writing the key again creates it anew
                    txn.delete(key, db=created)
                else:  # an update or a replacing insert keeps the creation time
                    txn.put(key, ts.to_bytes(8, "big"), db=created, overwrite=False)
            return seq + len(items) - 1

        return self._write(txn_fn)

    def insert(
        self, namespace: str, table: str, row: Mapping[str, Any], *, user_id: str | None = None
    ) -> int:
        """Write ``row`` as the newest version of its key (an existing row is replaced).

        Args:
            user_id: the row's owner; required for USER tables, refused for the others.

        Returns:
            The version number of the write.
        """
        info = self._require_table(namespace, table)
        owner = self._owner(info, user_id)
        return self._put_versions(info, owner, [self._encode_row(info, row)], deleted=False)

    def insert_many(
        self, namespace: str, table: str, rows: Iterable[Mapping[str, Any]], *,
        user_id: str | None = None,
    ) -> int:
        """Write many rows in one transaction (as :meth:`insert` each). Returns how many."""
        info = self._require_table(namespace, table)
        owner = self._owner(info, user_id)
        items = [self._encode_row(info, row) for row in rows]
        if items:
            self._put_versions(info, owner, items, deleted=False)
        return len(items)

    def update(
        self, namespace: str, table: str, row: Mapping[str, Any] | int | str,
        changes: Mapping[str, Any] | None = None, *, user_id: str | None = None,
    ) -> int:
        """Merge changes over the current row as a new version: either ``update(ns, t, row)``
        where ``row`` names the primary key, or ``update(ns, t, pk, changes)``.

        Raises:
            RowNotFound: no live row has that key.
        """
        info = self._require_table(namespace, table)
        owner = self._owner(info, user_id)
        if not isinstance(row, Mapping):
            row = {**(changes or {}), info.primary_key: row}
        elif changes is not None:
            raise InvalidName("pass either a row or a primary key and its changes, not both")
        pk, _ = self._encode_row(info, row)
        current = self._current(info, owner, pk)
        if current is None or current[1]:
            raise RowNotFound(f"{info.table_id} has no row {info.primary_key}={pk}")
        merged = {**orjson.loads(current[2]), **row}
        return self._put_versions(info, owner, [(pk, orjson.dumps(merged))], deleted=False)

    def delete(
        self, namespace: str, table: str, pk: object, *, user_id: str | None = None
    ) -> bool:
        """Soft-delete the row with primary key ``pk``: it disappears from :meth:`scan` and is
        removed for good by retention. Returns False if there was no live row."""
        info = self._require_table(namespace, table)
        owner = self._owner(info, user_id)
        pk_json = self._pk_json(info, pk)
        current = self._current(info, owner, pk_json)
        if current is None or current[1]:
            return False
        self._put_versions(info, owner, [(pk_json, current[2])], deleted=True)
        return True

    def get(
        self, namespace: str, table: str, pk: object, *, user_id: str | None = None
    ) -> dict[str, Any] | None:
        """The live row with primary key ``pk``, or None."""
        info = self._require_table(namespace, table)
        owner = self._owner(info, user_id)
        current = self._current(info, owner, self._pk_json(info, pk))
        if current is None or current[1]:
            return None
        row: dict[str, Any] = orjson.loads(current[2])
        return row

    def _current(self, info: TableInfo, owner: str, pk: str) -> tuple[int, bool, bytes] | None:
        """The latest stored version of one key: (seq, deleted, data), hot or cold."""
        ns, table = info.namespace, info.name

        def txn_fn(txn: lmdb.Transaction) -> tuple[bytes | None, list[SegmentInfo]]:
            hot = _get(txn, _hot_key(ns, table, owner, pk), self._db["hot"])
            return hot, self._manifest(txn, ns, table, owner)

        for _ in range(_READ_RETRIES):
            hot, segments = self._read(txn_fn)
            if hot is not None:  # a hot version is always newer than any cold one
                seq, deleted, _ts = _hot_header(hot)
                return seq, deleted, hot[_HEADER.size:]
            try:
                return self._cold_lookup(segments, pk)
            except FileNotFoundError:
                continue  # a compaction swapped segments under us: read the new manifest
        raise StorageError(f"{info.table_id}: segments kept changing while reading key {pk}")

    def _cold_lookup(
        self, segments: list[SegmentInfo], pk: str
    ) -> tuple[int, bool, bytes] | None:
        best: tuple[int, bool, bytes] | None = None
        for seg in segments:
            t = read_segment(self._segments_root / seg.relpath)
            hits = t.filter(pc.equal(t["pk"], pk))
            for seq, deleted, data in zip(hits["seq"].to_pylist(), hits["deleted"].to_pylist(),
                                          hits["data"].to_pylist(), strict=True):
                if best is None or seq > best[0]:
                    best = (seq, deleted, data.encode())
        return best

    def _manifest(
        self, txn: lmdb.Transaction, ns: str, table: str, owner: str | None = None
    ) -> list[SegmentInfo]:
        segs = [_segment_from(v) for _, v in
                _iter_prefix(txn, self._db["manifest"], _table_prefix(ns, table))]
        return segs if owner is None else [s for s in segs if s.user_id == owner]

    def _hot_rows(
        self, txn: lmdb.Transaction, ns: str, table: str, owner: str | None = None
    ) -> list[_HotRow]:
        prefix = _table_prefix(ns, table)
        scan_prefix = prefix if owner is None else prefix + owner.encode() + b"\0"
        return [_HotRow(k, v, len(prefix))
                for k, v in _iter_prefix(txn, self._db["hot"], scan_prefix)]

    def scan(
        self, namespace: str, table: str, *, user_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Every live row (hot and cold; latest version per key; soft-deleted rows hidden),
        as the dicts that were written, sorted by primary key (then owner).

        Args:
            user_id: in a USER table, only this user's rows; None for every user's.
        """
        info = self._require_table(namespace, table)
        owner = None if user_id is None else self._owner(info, user_id)
        latest = self._latest(info, owner)
        live = sorted(
            ((_pk_sort_key(pk), user, data) for (user, pk), (_seq, deleted, data) in latest.items()
             if not deleted),
        )
        return [orjson.loads(data) for _key, _user, data in live]

    def _latest(
        self, info: TableInfo, owner: str | None
    ) -> dict[Key, tuple[int, bool, bytes | str]]:
        ns, table = info.namespace, info.name

        def txn_fn(txn: lmdb.Transaction) -> tuple[list[_HotRow], list[SegmentInfo]]:
            return self._hot_rows(txn, ns, table, owner), self._manifest(txn, ns, table, owner)

        for _ in range(_READ_RETRIES):
            hot, segments = self._read(txn_fn)
            try:
                return self._merge_latest(hot, [self._segments_root / s.relpath
                                                for s in segments])
            except FileNotFoundError:
                continue
        raise StorageError(f"{info.table_id}: segments kept changing during a scan")

    def _merge_latest(
        self, hot: Sequence[_HotRow], paths: Sequence[Path]
    ) -> dict[Key, tuple[int, bool, bytes | str]]:
        latest: dict[Key, tuple[int, bool, bytes | str]] = {}
        for path in paths:
            t = read_segment(path)
            cols = [t[c].to_pylist() for c in ("user_id", "pk", "seq", "deleted", "data")]
            for user, pk, seq, deleted, data in zip(*cols, strict=True):
                key = (user, pk)
                old = latest.get(key)
                if old is None or seq > old[0]:
                    latest[key] = (seq, deleted, data)
        for row in hot:
            key = (row.user, row.pk)
            old = latest.get(key)
            if old is None or row.seq > old[0]:
                latest[key] = (row.seq, row.deleted, row.data)
        return latest

    def hot_summary(self, namespace: str, table: str) -> HotSummary:
        """How many versions are hot, and the oldest ``seq`` and write time among them, from
        one read transaction that decodes only the fixed header of each value."""
        info = self._require_table(namespace, table)
        prefix = _table_prefix(info.namespace, info.name)

        def txn_fn(txn: lmdb.Transaction) -> HotSummary:
            rows = 0
            min_seq: int | None = None
            min_ts: int | None = None
            for _, value in _iter_prefix(txn, self._db["hot"], prefix):
                seq, _deleted, ts = _hot_header(value)
                rows += 1
                min_seq = seq if min_seq is None else min(min_seq, seq)
                min_ts = ts if min_ts is None else min(min_ts, ts)
            return HotSummary(rows, min_seq, min_ts)

        return self._read(txn_fn)

    def table_stats(self, namespace: str, table: str) -> TableStats:
        """How many versions are hot and cold, and how many segment files and bytes."""
        info = self._require_table(namespace, table)

        def txn_fn(txn: lmdb.Transaction) -> TableStats:
            prefix = _table_prefix(info.namespace, info.name)
            hot = sum(1 for _ in _iter_prefix(txn, self._db["hot"], prefix))
            segs = self._manifest(txn, info.namespace, info.name)
            return TableStats(hot, len(segs), sum(s.rows for s in segs),
                              sum(s.bytes for s in segs))

        return self._read(txn_fn)

    # -- users, ACLs, tokens --

    def create_user(self, user_id: str, username: str) -> UserInfo:
        """Create a user.

        Raises:
            InvalidName: a bad id or an empty username.
            UserExists: the id is taken (even by a soft-deleted user).
        """
        check_name(user_id, "user id")
        if not isinstance(username, str) or not username.strip():
            raise InvalidName(f"username must be a non-empty string, not {username!r}",
                              field="username")
        user = UserInfo(user_id, username, self.now_us())

        def txn_fn(txn: lmdb.Transaction) -> None:
            if not txn.put(user_id.encode(), orjson.dumps(_user_dict(user)),
                           db=self._db["users"], overwrite=False):
                raise UserExists(f"user {user_id} already exists")

        self._write(txn_fn)
        return user

    def get_user(self, user_id: str) -> UserInfo | None:
        """The user record (soft-deleted or not), or None."""
        check_name(user_id, "user id")
        raw = self._read(lambda txn: _get(txn, user_id.encode(), self._db["users"]))
        return None if raw is None else UserInfo(**orjson.loads(raw))

    def delete_user(self, user_id: str) -> UserInfo:
        """Soft-delete a user, its ACL entries and its tokens; UserCleanup removes them later.

        Raises:
            UserNotFound: no such user.
        """
        check_name(user_id, "user id")
        now = self.now_us()

        def txn_fn(txn: lmdb.Transaction) -> UserInfo:
            raw = _get(txn, user_id.encode(), self._db["users"])
            if raw is None:
                raise UserNotFound(f"user {user_id} does not exist")
            user = UserInfo(**orjson.loads(raw))
            if user.deleted:
                return user
            user = UserInfo(user.user_id, user.username, user.created_us, now)
            txn.put(user_id.encode(), orjson.dumps(_user_dict(user)), db=self._db["users"])
            for db in ("acls", "tokens"):
                for k, v in _iter_prefix(txn, self._db[db], user_id.encode() + b"\0"):
                    txn.put(k, orjson.dumps({**orjson.loads(v), "deleted_us": now}),
                            db=self._db[db])
            return user

        return self._write(txn_fn)

    def grant(
        self, user_id: str, namespace: str, table: str, permission: str = "read"
    ) -> None:
        """Record an ACL entry giving ``user_id`` ``permission`` on a table."""
        for value, what in ((user_id, "user id"), (namespace, "namespace"), (table, "table name")):
            check_name(value, what)
        key = f"{user_id}\x00{namespace}\x00{table}".encode()
        entry = {"namespace": namespace, "table": table, "permission": permission,
                 "deleted_us": None}
        self._write(lambda txn: txn.put(key, orjson.dumps(entry), db=self._db["acls"]))

    def acl_entries(self, user_id: str) -> list[dict[str, Any]]:
        """The ACL entries of a user (soft-deleted ones included)."""
        return self._user_records("acls", user_id)

    def create_token(self, user_id: str) -> str:
        """Issue an auth token record for a user; returns its id."""
        check_name(user_id, "user id")
        token_id = secrets.token_hex(8)
        record = {"token_id": token_id, "created_us": self.now_us(), "deleted_us": None}
        key = f"{user_id}\x00{token_id}".encode()
        self._write(lambda txn: txn.put(key, orjson.dumps(record), db=self._db["tokens"]))
        return token_id

    def tokens(self, user_id: str) -> list[dict[str, Any]]:
        """The token records of a user (revoked ones included)."""
        return self._user_records("tokens", user_id)

    def _user_records(self, db: str, user_id: str) -> list[dict[str, Any]]:
        check_name(user_id, "user id")
        prefix = user_id.encode() + b"\0"
        return self._read(lambda txn: [orjson.loads(v) for _, v in
                                       _iter_prefix(txn, self._db[db], prefix)])

    # -- maintenance: flush --

    def _segment_path(self, ns: str, table: str, user: str, segment_id: str) -> tuple[Path, str]:
        parts = [ns, table, user, f"{segment_id}.parquet"] if user else \
            [ns, table, f"{segment_id}.parquet"]
        relpath = "/".join(parts)
        return self._segments_root / relpath, relpath

    def _write_new_segment(
        self, ns: str, table: str, user: str, data: pa.Table
    ) -> tuple[SegmentInfo, Path]:
        segment_id = _new_segment_id()
        path, relpath = self._segment_path(ns, table, user, segment_id)
        size = write_segment(path, data, durable=self._shared.durable)
        return self._segment_info(segment_id, user, relpath, size, data), path

    @staticmethod
    def _segment_info(
        segment_id: str, user: str, relpath: str, size: int, data: pa.Table
    ) -> SegmentInfo:
        seq = data["seq"]
        return SegmentInfo(
            segment_id=segment_id, user_id=user, rows=data.num_rows, bytes=size,
            min_seq=pc.min(seq).as_py() or 0, max_seq=pc.max(seq).as_py() or 0,
            min_ts=pc.min(data["ts"]).as_py() or 0, relpath=relpath,
        )

    def flush_table(
        self, namespace: str, table: str, *, on_file: Callable[[int, int], None] | None = None
    ) -> FlushResult:
        """Move every hot version of a table into new Parquet segments (one per user in USER
        tables). See :meth:`StorageEngine.flush_table`.

        Raises:
            TableNotFound: the table does not exist.
        """
        info = self._require_table(namespace, table)
        ns, name = info.namespace, info.name
        with self._table_lock(ns, name):
            rows = self._read(lambda txn: self._hot_rows(txn, ns, name))
            if not rows:
                return FlushResult(0, 0, 0)
            self.faults.fire("after_snapshot")
            by_user: dict[str, list[_HotRow]] = {}
            for row in rows:
                by_user.setdefault(row.user, []).append(row)
            written: list[tuple[SegmentInfo, Path]] = []
            try:
                for i, (user, group) in enumerate(sorted(by_user.items()), start=1):
                    data = build_segment(
                        [r.user for r in group], [r.pk for r in group], [r.seq for r in group],
                        [r.deleted for r in group], [r.ts for r in group],
                        [r.data.decode() for r in group])
                    written.append(self._write_new_segment(ns, name, user, data))
                    if on_file is not None:
                        on_file(i, len(by_user))
                self.faults.fire("after_segment_write")
                self._write(lambda txn: self._commit_flush(txn, info, rows, written))
            except Exception:
                _unlink_all(path for _, path in written)
                raise
            self.faults.fire("after_commit")
        total = sum(seg.bytes for seg, _ in written)
        return FlushResult(len(rows), len(written), total)

    def _commit_flush(
        self, txn: lmdb.Transaction, info: TableInfo, rows: Sequence[_HotRow],
        written: Sequence[tuple[SegmentInfo, Path]],
    ) -> None:
        if _get(txn, _table_key(info.namespace, info.name), self._db["tables"]) is None:
            raise TableNotFound(info.table_id)
        hot = self._db["hot"]
        for row in rows:
            current = _get(txn, row.key, hot)
            # Only the version we copied may go: one rewritten meanwhile has a new seq and stays.
            if current is not None and _hot_header(current)[0] == row.seq:
                txn.delete(row.key, db=hot)
        prefix = _table_prefix(info.namespace, info.name)
        for seg, _ in written:
            txn.put(prefix + seg.segment_id.encode(), _segment_to(seg), db=self._db["manifest"])

    # -- maintenance: cleanup --

    def _table_dir(self, ns: str, table: str) -> Path:
        return self._segments_root / check_name(ns, "namespace") / check_name(table, "table name")

    def drop_table_data(
        self, namespace: str, table: str, *, keep_metadata: bool
    ) -> CleanupResult:
        """Remove a table's hot rows, manifest and every file in its segment folder; with
        ``keep_metadata=False`` the table itself too. Safe to repeat."""
        table_dir = self._table_dir(namespace, table)
        prefix = _table_prefix(namespace, table)

        def txn_fn(txn: lmdb.Transaction) -> int:
            hot = _delete_prefix(txn, self._db["hot"], prefix)
            for db in ("manifest", "created"):
                _delete_prefix(txn, self._db[db], prefix)
            if not keep_metadata:
                txn.delete(_table_key(namespace, table), db=self._db["tables"])
            return hot

        with self._table_lock(namespace, table):
            hot_rows = self._write(txn_fn)
            files, size = _remove_files(table_dir, keep=set(), remove_root=not keep_metadata)
        return CleanupResult(files, size, hot_rows)

    def remove_orphaned_files(self, namespace: str, table: str) -> CleanupResult:
        """Delete the files in a table's segment folder that its manifest does not name
        (left by a crash between a segment write and its manifest commit)."""
        table_dir = self._table_dir(namespace, table)
        with self._table_lock(namespace, table):
            named = self._read(lambda txn: {
                (self._segments_root / s.relpath) for s in self._manifest(txn, namespace, table)})
            exists = self.table_info(namespace, table) is not None
            files, size = _remove_files(table_dir, keep=named, remove_root=not exists)
        return CleanupResult(files, size)

    # -- maintenance: versions, purge, merge --

    def segments(self, namespace: str, table: str) -> list[SegmentInfo]:
        """The table's manifest, in segment id (creation) order."""
        info = self._require_table(namespace, table)
        return self._read(lambda txn: self._manifest(txn, info.namespace, info.name))

    def versions(self, namespace: str, table: str) -> list[Version]:
        """Every stored version of the table, hot and cold, from one snapshot, each with its
        row's creation time when the engine recorded one."""
        info = self._require_table(namespace, table)
        ns, name = info.namespace, info.name

        def txn_fn(txn: lmdb.Transaction
                   ) -> tuple[list[_HotRow], list[SegmentInfo], dict[Key, int]]:
            return (self._hot_rows(txn, ns, name), self._manifest(txn, ns, name),
                    self._created(txn, ns, name))

        for _ in range(_READ_RETRIES):
            hot, segments, born = self._read(txn_fn)
            try:
                out = [Version(r.user, r.pk, r.seq, r.deleted, r.ts, None,
                               born.get((r.user, r.pk))) for r in hot]
                for seg in segments:
                    t = read_segment(self._segments_root / seg.relpath,
                                     ["user_id", "pk", "seq", "deleted", "ts"])
                    cols = [t[c].to_pylist() for c in ("user_id", "pk", "seq", "deleted", "ts")]
                    out.extend(Version(u, p, s, d, ts, seg.segment_id, born.get((u, p)))
                               for u, p, s, d, ts in zip(*cols, strict=True))
                return out
            except FileNotFoundError:
                continue
        raise StorageError(f"{info.table_id}: segments kept changing while listing versions")

    def _created(self, txn: lmdb.Transaction, ns: str, table: str) -> dict[Key, int]:
        prefix = _table_prefix(ns, table)
        return {_split_hot_key(k, len(prefix)): int.from_bytes(v, "big")
                for k, v in _iter_prefix(txn, self._db["created"], prefix)}

    def purge(
        self, namespace: str, table: str, victims: Mapping[Key, int], *,
        older_than_us: int | None = None,
    ) -> PurgeResult:
        """Remove for good every version of each victim key with ``seq <= victims[key]``.

        Affected segments are rewritten without those versions (or dropped when empty); the
        manifest swap and the hot deletions are one transaction; replaced files are deleted
        after it. Removing all of a key's versions at once is what keeps an older version from
        resurfacing.
        """
        info = self._require_table(namespace, table)
        if not victims:
            return PurgeResult(0, 0, 0, 0)
        ns, name = info.namespace, info.name
        users = {user for user, _ in victims}
        with self._table_lock(ns, name):
            manifest = self._read(lambda txn: self._manifest(txn, ns, name))
            swaps: list[tuple[SegmentInfo, SegmentInfo | None]] = []
            new_paths: list[Path] = []
            cold = 0
            try:
                for seg in manifest:
                    if seg.user_id not in users or (
                            older_than_us is not None and seg.min_ts >= older_than_us):
                        continue
                    rewritten = self._without(ns, name, seg, victims)
                    if rewritten is None:
                        continue
                    new, removed = rewritten
                    cold += removed
                    swaps.append((seg, new[0] if new else None))
                    if new:
                        new_paths.append(new[1])
                self.faults.fire("after_segment_write")
                hot, hot_bytes = self._write(
                    lambda txn: self._commit_purge(txn, info, victims, swaps))
            except Exception:
                _unlink_all(new_paths)
                raise
            self.faults.fire("after_commit")
            freed = self._unlink_segments(old for old, _ in swaps)
        freed -= sum(new.bytes for _, new in swaps if new is not None)
        return PurgeResult(hot, cold, len(swaps), freed, hot_bytes)

    def _without(
        self, ns: str, table: str, seg: SegmentInfo, victims: Mapping[Key, int]
    ) -> tuple[tuple[SegmentInfo, Path] | None, int] | None:
        """``seg`` rewritten without the victims' versions: (new segment or None, removed),
        or None when it holds none of them."""
        data = read_segment(self._segments_root / seg.relpath)
        keep = [
            not (bound is not None and seq <= bound)
            for user, pk, seq in zip(data["user_id"].to_pylist(), data["pk"].to_pylist(),
                                     data["seq"].to_pylist(), strict=True)
            for bound in (victims.get((user, pk)),)
        ]
        removed = keep.count(False)
        if removed == 0:
            return None
        kept = data.filter(pa.array(keep, pa.bool_()))
        if kept.num_rows == 0:
            return None, removed
        return self._write_new_segment(ns, table, seg.user_id, kept), removed

    def _commit_purge(
        self, txn: lmdb.Transaction, info: TableInfo, victims: Mapping[Key, int],
        swaps: Sequence[tuple[SegmentInfo, SegmentInfo | None]],
    ) -> tuple[int, int]:
        """Delete the victims' hot versions and swap the manifest; returns (hot versions
        deleted, their bytes)."""
        ns, name = info.namespace, info.name
        hot_db = self._db["hot"]
        removed = size = 0
        for (user, pk), bound in victims.items():
            key = _hot_key(ns, name, user, pk)
            current = _get(txn, key, hot_db)
            if current is not None and _hot_header(current)[0] <= bound:
                txn.delete(key, db=hot_db)
                removed += 1
                size += len(key) + len(current)
            if _get(txn, key, hot_db) is None:  # no write since the caller looked: row gone
                txn.delete(key, db=self._db["created"])
        self._swap_manifest(txn, ns, name, [old for old, _ in swaps],
                            [new for _, new in swaps if new is not None])
        return removed, size

    def _swap_manifest(
        self, txn: lmdb.Transaction, ns: str, table: str, old: Iterable[SegmentInfo],
        new: Iterable[SegmentInfo],
    ) -> None:
        prefix = _table_prefix(ns, table)
        db = self._db["manifest"]
        for seg in old:
            if not txn.delete(prefix + seg.segment_id.encode(), db=db):
                # Table locks make this impossible inside one process; another process may not
                # hold them, so refuse rather than lose its change.
                raise StorageError(f"{ns}:{table}: segment {seg.segment_id} vanished from the "
                                   f"manifest during the operation")
        for seg in new:
            txn.put(prefix + seg.segment_id.encode(), _segment_to(seg), db=db)

    def _unlink_segments(self, segments: Iterable[SegmentInfo]) -> int:
        freed = 0
        for seg in segments:
            with contextlib.suppress(FileNotFoundError):
                (self._segments_root / seg.relpath).unlink()
                freed += seg.bytes
        return freed

    def merge_segments(
        self, namespace: str, table: str, groups: Sequence[Sequence[str]], *,
        cancelled: Callable[[], bool] | None = None,
    ) -> MergeResult:
        """Merge each group of one user's segments into one segment keeping only the latest
        version per key. All groups swap in one transaction; old files go after it.

        Raises:
            StorageError: a group names an unknown segment, mixes users or repeats one.
            OperationCancelled: ``cancelled()`` turned true before the swap (nothing changed).
        """
        info = self._require_table(namespace, table)
        ns, name = info.namespace, info.name
        with self._table_lock(ns, name):
            manifest = {s.segment_id: s for s in
                        self._read(lambda txn: self._manifest(txn, ns, name))}
            plan = self._check_groups(info, manifest, groups)
            made: list[tuple[SegmentInfo, Path]] = []
            try:
                for group in plan:
                    if cancelled is not None and cancelled():
                        raise OperationCancelled(f"{info.table_id}: compaction cancelled")
                    merged = pa.concat_tables(
                        [read_segment(self._segments_root / s.relpath) for s in group])
                    merged = latest_per_key(merged).sort_by([("user_id", "ascending"),
                                                             ("pk", "ascending")])
                    made.append(self._write_new_segment(ns, name, group[0].user_id, merged))
                if cancelled is not None and cancelled():
                    raise OperationCancelled(f"{info.table_id}: compaction cancelled")
                self.faults.fire("after_segment_write")
                olds = [s for group in plan for s in group]
                self._write(lambda txn: self._swap_manifest(txn, ns, name, olds,
                                                            [seg for seg, _ in made]))
            except Exception:
                _unlink_all(path for _, path in made)
                raise
            self.faults.fire("after_commit")
            self._unlink_segments(olds)
        return MergeResult(
            files_in=len(olds), files_out=len(made), rows_in=sum(s.rows for s in olds),
            rows_out=sum(s.rows for s, _ in made), bytes_in=sum(s.bytes for s in olds),
            bytes_out=sum(s.bytes for s, _ in made))

    @staticmethod
    def _check_groups(
        info: TableInfo, manifest: Mapping[str, SegmentInfo], groups: Sequence[Sequence[str]]
    ) -> list[list[SegmentInfo]]:
        seen: set[str] = set()
        plan: list[list[SegmentInfo]] = []
        for group in groups:
            segs = []
            for sid in group:
                if sid not in manifest:
                    raise SegmentsChanged(f"{info.table_id} has no segment {sid!r}")
                if sid in seen:
                    raise StorageError(f"segment {sid} appears in two merge groups")
                seen.add(sid)
                segs.append(manifest[sid])
            if len({s.user_id for s in segs}) > 1:
                raise StorageError(f"{info.table_id}: a merge group mixes users' segments")
            if len(segs) >= 2:
                plan.append(segs)
        return plan

    # -- maintenance: users --

    def user_data_tables(self, user_id: str) -> list[str]:
        """``"ns:table"`` of every USER table holding rows (hot or cold) of ``user_id``."""
        check_name(user_id, "user id")

        def txn_fn(txn: lmdb.Transaction) -> list[str]:
            return [t.table_id for t in self._user_tables(txn)
                    if self._user_hot_keys(txn, t, user_id, limit=1)
                    or self._manifest(txn, t.namespace, t.name, user_id)]

        return self._read(txn_fn)

    def _user_tables(self, txn: lmdb.Transaction) -> list[TableInfo]:
        infos = [_info_from(v) for _, v in _iter_prefix(txn, self._db["tables"], b"")]
        return [t for t in infos if t.table_type is TableType.USER]

    def _user_hot_keys(
        self, txn: lmdb.Transaction, info: TableInfo, user_id: str, limit: int | None = None
    ) -> list[bytes]:
        prefix = _table_prefix(info.namespace, info.name) + user_id.encode() + b"\0"
        keys = []
        for k, _ in _iter_prefix(txn, self._db["hot"], prefix):
            keys.append(k)
            if limit is not None and len(keys) >= limit:
                break
        return keys

    def purge_user(self, user_id: str, *, cascade: bool) -> UserPurgeResult:
        """Remove a soft-deleted user for good; see :meth:`StorageEngine.purge_user`.

        Raises:
            UserNotFound: no such user.
            StorageError: the user is not soft-deleted.
            UserStillOwnsData: without ``cascade``, naming the tables that hold its rows.
        """
        check_name(user_id, "user id")
        tables = self._read(self._user_tables)
        with contextlib.ExitStack() as stack:
            # Sorted, so two purges never wait on each other's locks in opposite orders.
            for t in sorted(tables, key=lambda t: t.table_id):
                stack.enter_context(self._table_lock(t.namespace, t.name))
            result, doomed = self._write(lambda txn: self._commit_user_purge(txn, user_id,
                                                                             cascade))
            self._unlink_segments(doomed)
            for table_id in result.tables:
                ns, name = table_id.split(":")
                with contextlib.suppress(OSError):
                    shutil.rmtree(self._table_dir(ns, name) / user_id)
        return result

    def _commit_user_purge(
        self, txn: lmdb.Transaction, user_id: str, cascade: bool
    ) -> tuple[UserPurgeResult, list[SegmentInfo]]:
        raw = _get(txn, user_id.encode(), self._db["users"])
        if raw is None:
            raise UserNotFound(f"user {user_id} does not exist")
        if UserInfo(**orjson.loads(raw)).deleted_us is None:
            raise StorageError(f"user {user_id} is not deleted; delete the user first")
        owned: list[str] = []
        hot_rows = 0
        doomed: list[SegmentInfo] = []
        for info in self._user_tables(txn):
            keys = self._user_hot_keys(txn, info, user_id)
            segs = self._manifest(txn, info.namespace, info.name, user_id)
            if not keys and not segs:
                continue
            owned.append(info.table_id)
            if not cascade:
                continue
            for k in keys:
                txn.delete(k, db=self._db["hot"])
            _delete_prefix(txn, self._db["created"],
                           _table_prefix(info.namespace, info.name) + user_id.encode() + b"\0")
            self._swap_manifest(txn, info.namespace, info.name, segs, [])
            hot_rows += len(keys)
            doomed.extend(segs)
        if owned and not cascade:
            raise UserStillOwnsData(user_id, owned)
        counts = {}
        for db in ("acls", "tokens"):
            keys = [k for k, _ in _iter_prefix(txn, self._db[db], user_id.encode() + b"\0")]
            for k in keys:
                txn.delete(k, db=self._db[db])
            counts[db] = len(keys)
        txn.delete(user_id.encode(), db=self._db["users"])
        result = UserPurgeResult(tuple(owned), hot_rows, len(doomed), sum(s.bytes for s in doomed),
                                 counts["acls"], counts["tokens"])
        return result, doomed

    # -- maintenance: snapshot and import --

    @contextlib.contextmanager
    def scratch_dir(self, label: str) -> Iterator[Path]:
        """A private folder under ``<path>/tmp`` (same filesystem as the segments), removed on
        exit."""
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in label)[:80]
        # The pid lets a later open tell a crashed process's leftovers from live work.
        folder = self.path / "tmp" / f"{safe}.{os.getpid()}.{secrets.token_hex(6)}"
        folder.mkdir(parents=True)
        try:
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def snapshot(self, namespace: str, table: str, into: Path) -> Snapshot:
        """Copy a consistent image of a table into ``into``: its hot rows (one read
        transaction, written as segment-format files, one per user) and its manifest's
        segments (hard links: segments are immutable). Files are ``data/NNNNNN.parquet``.

        Raises:
            TableNotFound: the table does not exist.
        """
        check_name(namespace, "namespace")
        check_name(table, "table name")

        def txn_fn(txn: lmdb.Transaction
                   ) -> tuple[bytes | None, list[_HotRow], list[SegmentInfo]]:
            return (_get(txn, _table_key(namespace, table), self._db["tables"]),
                    self._hot_rows(txn, namespace, table), self._manifest(txn, namespace, table))

        # The table lock keeps maintenance from deleting the segments before they are linked.
        with self._table_lock(namespace, table):
            raw, hot, segments = self._read(txn_fn)
            if raw is None:
                raise TableNotFound(f"{namespace}:{table}")
            (into / "data").mkdir(parents=True, exist_ok=True)
            files = self._snapshot_hot(hot, into)
            for seg in segments:
                target = into / "data" / f"{len(files) + 1:06d}.parquet"
                _link_or_copy(self._segments_root / seg.relpath, target)
                files.append(SnapshotFile(target, seg.user_id, seg.rows, "segment"))
        visible = sum(1 for _, deleted, _ in self._merge_latest([], [f.path for f in files])
                      .values() if not deleted)
        return Snapshot(_info_from(raw), tuple(files), len(hot),
                        sum(s.rows for s in segments), visible, schema_pairs())

    @staticmethod
    def _snapshot_hot(hot: Sequence[_HotRow], into: Path) -> list[SnapshotFile]:
        by_user: dict[str, list[_HotRow]] = {}
        for row in hot:
            by_user.setdefault(row.user, []).append(row)
        files: list[SnapshotFile] = []
        for user, group in sorted(by_user.items()):
            target = into / "data" / f"{len(files) + 1:06d}.parquet"
            # Scratch for an archive that gets its own fsync: no need to sync it twice.
            write_segment(target, durable=False, table=build_segment(
                [r.user for r in group], [r.pk for r in group], [r.seq for r in group],
                [r.deleted for r in group], [r.ts for r in group],
                [r.data.decode() for r in group]))
            files.append(SnapshotFile(target, user, len(group), "hot"))
        return files

    def import_table(
        self, namespace: str, table: str, *, like: TableInfo, files: Sequence[ImportFile],
        overwrite: bool, restored_from: Mapping[str, Any] | None = None,
    ) -> ImportResult:
        """Install ``files`` (segment format, on this engine's filesystem; they are moved) as
        the whole content of table ``namespace:table`` shaped ``like``. An existing table is
        replaced, in the same transaction, only when ``overwrite``.

        ``like`` passes the checks ``create_table`` makes; row counts are checked against
        :attr:`restore_limits` from each file's metadata before any row is decoded.

        Raises:
            InvalidName: ``like`` is a table ``create_table`` would refuse.
            TableExists: the table exists and ``overwrite`` is false.
            CorruptSegment: a file is not a segment, or holds another user's rows.
            LimitExceeded: the files hold more rows than :attr:`restore_limits` allow.
        """
        info = dataclasses.replace(
            check_table_spec(namespace, table, like.table_type, primary_key=like.primary_key,
                             ttl_seconds=like.ttl_seconds, options=like.options),
            created_us=self.now_us(), restored_from=restored_from)
        self._check_import_files(info, files)
        with self._table_lock(namespace, table):
            if not overwrite and self.table_info(namespace, table) is not None:
                raise TableExists(info.table_id, "; pass overwrite=true to replace it")
            moved: list[tuple[SegmentInfo, Path]] = []
            try:
                for f in files:
                    self._move_in(info, f, moved)
                    self.faults.fire("after_file_move")
                self.faults.fire("after_segment_write")
                replaced, old = self._write(
                    lambda txn: self._commit_import(txn, info, [s for s, _ in moved], overwrite))
            except Exception:
                _unlink_all(path for _, path in moved)
                raise
            self.faults.fire("after_commit")
            self._unlink_segments(old)
        return ImportResult(sum(s.rows for s, _ in moved), len(moved), replaced)

    def _move_in(self, info: TableInfo, f: ImportFile,
                 moved: list[tuple[SegmentInfo, Path]]) -> None:
        """Move one checked file into the table's segment folder, recording it in ``moved``
        before anything else can fail, so that a failure removes it again."""
        data = read_segment(f.path, ["seq", "ts"])
        segment_id = _new_segment_id()
        path, relpath = self._segment_path(info.namespace, info.name, f.user_id, segment_id)
        segment = self._segment_info(segment_id, f.user_id, relpath, f.path.stat().st_size, data)
        path.parent.mkdir(parents=True, exist_ok=True)
        os.replace(f.path, path)
        moved.append((segment, path))
        if self._shared.durable:
            fsync_dir(path.parent)

    def _check_import_files(self, info: TableInfo, files: Sequence[ImportFile]) -> None:
        limits = self._restore_limits
        total = 0
        for f in files:
            total += self._check_import_file(info, f, limits)
            if total > limits.max_total_rows:
                raise LimitExceeded(f"the files hold more than {limits.max_total_rows} rows, "
                                    f"this engine's restore limit (max_total_rows)")

    def _check_import_file(self, info: TableInfo, f: ImportFile, limits: RestoreLimits
                           ) -> int:
        """Check one file, decoding it a batch at a time only once its metadata shows a row
        count within the limits; returns that count."""
        if info.table_type is TableType.USER:
            check_name(f.user_id, "user id")
        elif f.user_id != "":
            raise CorruptSegment(f"{f.path.name}: a {info.table_type.value} table has no users")
        rows = int(check_segment_file(f.path).num_rows)
        if rows > limits.max_file_rows:
            raise LimitExceeded(f"{f.path.name} holds {rows} rows, more than this engine's "
                                f"restore limit of {limits.max_file_rows} rows per file "
                                f"(max_file_rows)")
        for batch in iter_segment(f.path, ["user_id", "pk", "data"], _CHECK_BATCH_ROWS):
            self._check_import_batch(f, batch)
        return rows

    @staticmethod
    def _check_import_batch(f: ImportFile, batch: pa.RecordBatch) -> None:
        users = pc.unique(batch.column("user_id")).to_pylist()
        if any(u != f.user_id for u in users):
            raise CorruptSegment(f"{f.path.name} holds rows of users {users}, "
                                 f"expected only {f.user_id!r}")
        # Checksums prove integrity, not good faith: what scans will parse must parse.
        try:
            for pk, row in zip(batch.column("pk").to_pylist(), batch.column("data").to_pylist(),
                               strict=True):
                key = orjson.loads(pk)
                if isinstance(key, bool) or not isinstance(key, (int, str)):
                    raise CorruptSegment(f"{f.path.name} holds a bad primary key {pk!r}")
                if not isinstance(orjson.loads(row), dict):
                    raise CorruptSegment(f"{f.path.name} holds a row that is not an object")
        except orjson.JSONDecodeError as exc:
            raise CorruptSegment(f"{f.path.name} holds invalid JSON: {exc}") from None

    def _commit_import(
        self, txn: lmdb.Transaction, info: TableInfo, segments: Sequence[SegmentInfo],
        overwrite: bool,
    ) -> tuple[bool, list[SegmentInfo]]:
        ns, name = info.namespace, info.name
        exists = _get(txn, _table_key(ns, name), self._db["tables"]) is not None
        if exists and not overwrite:
            raise TableExists(info.table_id, "; pass overwrite=true to replace it")
        old = self._manifest(txn, ns, name)
        for db in ("hot", "created"):
            _delete_prefix(txn, self._db[db], _table_prefix(ns, name))
        self._swap_manifest(txn, ns, name, old, segments)
        txn.put(_table_key(ns, name), _info_to(info), db=self._db["tables"])
        # Versions from another engine may be ahead of ours; later writes must still win.
        top = max((s.max_seq for s in segments), default=0)
        raw = _get(txn, _SEQ_KEY, self._db["meta"])
        if top > (int.from_bytes(raw, "big") if raw else 0):
            txn.put(_SEQ_KEY, top.to_bytes(8, "big"), db=self._db["meta"])
        return exists, old


def _user_dict(user: UserInfo) -> dict[str, Any]:
    return {"user_id": user.user_id, "username": user.username, "created_us": user.created_us,
            "deleted_us": user.deleted_us}


def _unlink_all(paths: Iterable[Path]) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _remove_dead_scratch(tmp: Path) -> None:
    """Remove scratch folders left by processes that no longer run (a crash mid-backup or
    mid-restore); folders of live processes are someone's work in progress."""
    if not tmp.is_dir():
        return
    for folder in tmp.iterdir():
        parts = folder.name.split(".")
        if len(parts) != 3 or not parts[1].isdigit():
            continue
        pid = int(parts[1])
        if pid == os.getpid() or process_alive(pid):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        logger.info(f"storage engine: removed scratch folder {folder.name} of dead process {pid}")


def _remove_files(root: Path, *, keep: set[Path], remove_root: bool) -> tuple[int, int]:
    """Delete every file under ``root`` not in ``keep``, then empty folders. Returns (files,
    bytes)."""
    if not root.is_dir():
        return 0, 0
    files = size = 0
    for folder, _dirs, names in os.walk(root, topdown=False):
        for n in names:
            path = Path(folder) / n
            if path in keep:
                continue
            with contextlib.suppress(FileNotFoundError):
                size += path.stat().st_size
                path.unlink()
                files += 1
        if Path(folder) != root or remove_root:
            with contextlib.suppress(OSError):
                Path(folder).rmdir()  # only succeeds when empty
    return files, size


if TYPE_CHECKING:
    # mypy proves here that the reference engine implements the executors' interface.
    _IMPLEMENTS: type[StorageEngine] = Engine
