"""The durable job store: job records and their indexes in one LMDB environment.

Layout (named databases in ``<path>/jobs.lmdb``):

``jobs``      job id -> record (orjson; short keys, see :func:`encode_record`)
``status``    status code (1 byte) + job id -> b"" — every listing by status, in creation order;
              because ids start with their type prefix, status + type is a range too
``keys``      idempotency key -> job id, for active jobs only (the uniqueness check)
``due``       run_after µs (8 bytes, big-endian) + job id -> b"" — Retrying jobs by due time
``cancels``   job id -> b"" — cancel requests for running jobs, from other processes
``counts``    status code + type prefix -> count (8 bytes) — statistics without a scan
``meta``      schema version

Every write is one LMDB write transaction: the idempotency check and the insert happen in the
same transaction, which LMDB serialises across threads and processes. Reads are short MVCC
snapshots. :class:`StoreTxn` is the write side: every store verb works through one, and the
runtime's group commit applies a whole batch of verbs in one. :class:`JobStore` (in
``jobstore.py``) is the public face, for any process.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final, TypeVar

import lmdb

from .._txngate import TxnGate
from ..errors import (
    InvalidTransition,
    JobNotFound,
    StoreError,
)
from ..ids import JobType
from ..model import (
    JobStatus,
)
from .records import (
    _TERMINAL_CODES,
    ACTIVE_CODES,
    SCHEMA_VERSION,
    STATUS_OF,
    apply_move,
    decode_record,
    encode_record,
)

__all__ = ["StoreTxn"]

T = TypeVar("T")


def _due_key(run_after_us: int, job_id: str) -> bytes:
    # By type first, then due time: a type with no free actor cannot hide another type's
    # due retries behind its own (each type's due range is read on its own).
    return job_id[:2].encode() + run_after_us.to_bytes(8, "big") + job_id.encode()


# The due index's key layout: 1 was due time + id; 2 is type prefix + due time + id.
_DUE_LAYOUT: Final = b"2"
_PREFIXES: Final = tuple(sorted(t.prefix for t in JobType))


# --------------------------------------------------------------------------- environments


class _SharedEnv:
    """One lmdb.Environment per path per process, shared by every JobStore on that path.

    A process that finds the store already made opens it read-only: opening named databases
    in a writable environment takes LMDB's write lock, so a reader would wait for any other
    process's write transaction. The first write reopens it writable (:meth:`writable`).
    """

    def __init__(self, path: Path, map_size: int | None, durable: bool, *, write: bool) -> None:
        self.path = path
        self.map_size = map_size
        self.durable = durable
        self.users = 0
        self.gate = TxnGate()
        self.readonly = True
        # The last active records this process wrote, as (stored bytes, decoded copy): the
        # runtime reads back nearly every record it writes (a job it created, to start it; a
        # job it started, to finish it). A read whose bytes equal the cached bytes takes a copy
        # of the dict instead of decoding; any other writer's change shows as different bytes.
        self.written: dict[str, tuple[bytes, dict[str, Any]]] = {}
        db_path = path / "jobs.lmdb"
        if not write and (db_path / "data.mdb").is_file():
            with contextlib.suppress(lmdb.Error, StoreError):
                self._open(readonly=True)
                return
        self._open(readonly=False)

    def _open(self, *, readonly: bool) -> None:
        db_path = self.path / "jobs.lmdb"
        try:
            if not readonly:
                db_path.mkdir(parents=True, exist_ok=True)
            env = lmdb.open(
                str(db_path),
                map_size=self.map_size or _INITIAL_MAP_SIZE,
                max_dbs=8,
                max_readers=1024,
                readonly=readonly,
                # Durable: every commit flushes its data pages, then its meta page, before
                # it returns. Committing unsynced and calling env.sync() afterwards is NOT
                # the same: the kernel may write the new meta page before the pages it
                # points to, and a power loss in between corrupts the store instead of
                # losing one transaction.
                sync=self.durable,
                metasync=self.durable,
            )
        except (OSError, lmdb.Error) as exc:
            raise StoreError(f"cannot open job store at {self.path}: {exc}") from exc
        try:
            for _ in range(64):
                try:
                    self._open_dbs(env, create=not readonly)
                    break
                except lmdb.MapResizedError:
                    env.set_mapsize(0)  # another process grew the map: adopt its size
            else:
                raise StoreError(f"job store {self.path}: the map kept changing size")
            _check_schema(self.path, env, self.meta, write=not readonly)
            if not readonly:
                _migrate_due(env, self.due, self.meta)
        except BaseException as exc:
            env.close()
            if isinstance(exc, lmdb.Error):
                raise StoreError(f"cannot open job store at {self.path}: {exc}") from exc
            raise
        self.env = env
        self.readonly = readonly

    def _open_dbs(self, env: lmdb.Environment, *, create: bool) -> None:
        self.jobs = env.open_db(b"jobs", create=create)
        self.status = env.open_db(b"status", create=create)
        self.keys = env.open_db(b"keys", create=create)
        self.due = env.open_db(b"due", create=create)
        self.cancels = env.open_db(b"cancels", create=create)
        self.counts = env.open_db(b"counts", create=create)
        self.meta = env.open_db(b"meta", create=create)

    def writable(self) -> None:
        """Reopen a read-only environment writable, once no transaction of ours is open."""
        if self.readonly:
            self.gate.exclusive(self._reopen_writable)

    def _reopen_writable(self) -> None:
        if self.readonly:
            self.env.close()
            self._open(readonly=False)


_ENVS: dict[Path, _SharedEnv] = {}
_ENVS_LOCK = threading.Lock()
_INITIAL_MAP_SIZE: Final = 256 << 20
_WRITTEN_CACHE: Final = 4096  # records; about 1 KB each


def _acquire_env(path: Path, map_size: int | None, durable: bool, *, write: bool) -> _SharedEnv:
    with _ENVS_LOCK:
        shared = _ENVS.get(path)
        if shared is None:
            shared = _SharedEnv(path, map_size, durable, write=write)
            _ENVS[path] = shared
        shared.users += 1
    if write:
        shared.writable()
    return shared


def _release_env(shared: _SharedEnv) -> None:
    with _ENVS_LOCK:
        shared.users -= 1
        if shared.users == 0:
            _ENVS.pop(shared.path, None)
            shared.env.close()


def _migrate_due(env: lmdb.Environment, due: Any, meta: Any) -> None:
    """Rewrite a due index of layout 1 (due time + id) in layout 2 (type + due time + id),
    in one write transaction; a new store is marked layout 2 at once."""
    with env.begin(db=meta) as txn:
        if txn.get(b"due_layout") == _DUE_LAYOUT:
            return
    with env.begin(write=True) as txn:
        if txn.get(b"due_layout", db=meta) == _DUE_LAYOUT:
            return
        old = [bytes(k) for k in txn.cursor(db=due).iternext(keys=True, values=False)]
        for key in old:
            txn.delete(key, db=due)
        for key in old:
            job_id = key[8:]
            txn.put(job_id[:2] + key[:8] + job_id, b"", db=due)
        txn.put(b"due_layout", _DUE_LAYOUT, db=meta)
    env.sync(True)


def _check_schema(path: Path, env: lmdb.Environment, meta: Any, *, write: bool) -> None:
    """Refuse a store written by a newer version; record the version in a new store (the
    only write, and only when it is missing)."""
    with env.begin(db=meta) as txn:
        raw = txn.get(b"schema")
    if raw is None:
        if not write:
            raise StoreError(f"job store at {path} has no schema version yet")
        with env.begin(write=True, db=meta) as txn:
            raw = txn.get(b"schema")
            if raw is None:
                txn.put(b"schema", str(SCHEMA_VERSION).encode())
                raw = str(SCHEMA_VERSION).encode()
        env.sync(True)
    try:
        version = int(raw)
    except ValueError:
        version = -1
    if version > SCHEMA_VERSION or version < 1:
        raise StoreError(
            f"job store at {path} has schema version {raw.decode(errors='replace')}; "
            f"this kalam-actors reads versions 1 to {SCHEMA_VERSION}"
        )


# --------------------------------------------------------------------------- write side


class StoreTxn:
    """The state changes of one write transaction. Made by :meth:`JobStore.write`.

    Keeps the indexes and counters in step with every record it writes.
    """

    def __init__(self, shared: _SharedEnv, txn: lmdb.Transaction) -> None:
        self._s = shared
        self.txn = txn
        self._counts: dict[str, int] = {}
        # Records read or written in this transaction, by id: a job created and started in
        # one group commit, or touched twice, is decoded at most once...
        self._recs: dict[str, dict[str, Any]] = {}
        # ...and the records written are encoded and put once, when the transaction ends.
        self._dirty: dict[str, dict[str, Any]] = {}
        self._new: set[str] = set()
        # Records inserted in this transaction, by id, with their status code now: their
        # status-index entry is written once, at the end. A job created and started in one
        # group commit is indexed Running only (not Queued, then deleted, then Running);
        # first_ids and ids_after merge these in, so the transaction sees them all along.
        self._unindexed: dict[str, str] = {}

    # -- reads inside the transaction
    def get(self, job_id: str) -> dict[str, Any] | None:
        """The record, as this transaction has it. The dict is the transaction's own: change
        it only to write it back (``put`` or ``move``)."""
        rec = self._recs.get(job_id)
        if rec is not None:
            return rec
        raw = self.txn.get(job_id.encode(), db=self._s.jobs)
        if raw is None:
            return None
        known = self._s.written.get(job_id)
        if known is not None and known[0] == raw:
            rec = self._recs[job_id] = dict(known[1])
        else:
            rec = self._recs[job_id] = decode_record(job_id, raw)
        return rec

    def require(self, job_id: str) -> dict[str, Any]:
        rec = self.get(job_id)
        if rec is None:
            raise JobNotFound(job_id)
        return rec

    def active_holder(self, key: str) -> str | None:
        raw = self.txn.get(key.encode(), db=self._s.keys)
        return None if raw is None else bytes(raw).decode()

    def first_ids(self, code: str, prefix: str, limit: int) -> list[str]:
        """Up to ``limit`` ids with status ``code`` and id prefix ``prefix``, oldest first."""
        start = (code + prefix).encode()
        out: list[str] = []
        cur = self.txn.cursor(db=self._s.status)
        if cur.set_range(start):
            for key in cur.iternext(keys=True, values=False):
                if not bytes(key).startswith(start) or len(out) >= limit:
                    break
                out.append(bytes(key[1:]).decode())
        return self._with_unindexed(out, code, prefix, None, limit)

    def _with_unindexed(
        self, stored: list[str], code: str, prefix: str, after: str | None, limit: int
    ) -> list[str]:
        """``stored`` (ids read from the status index, in order) merged with the records this
        transaction inserted whose index entries are still to be written."""
        if not self._unindexed:
            return stored
        fresh = [job_id for job_id, c in self._unindexed.items()
                 if c == code and job_id.startswith(prefix) and (after is None or job_id > after)]
        if not fresh:
            return stored
        return heapq.nsmallest(limit, stored + fresh)

    def ids_after(
        self, code: str, after: str | None, limit: int, *, id_prefix: str = ""
    ) -> list[str]:
        """Up to ``limit`` ids with status ``code`` (and ids starting with ``id_prefix``) that
        sort after ``after`` (from the start when None): a resumable walk of one status range,
        for batched work such as job-history pruning. Ids sort by type first; walk one type
        (``id_prefix="FL-"``) to walk in creation order."""
        prefix = (code + id_prefix).encode()
        start = code.encode() + (after or id_prefix).encode()
        out: list[str] = []
        cur = self.txn.cursor(db=self._s.status)
        if cur.set_range(start):
            for key in cur.iternext(keys=True, values=False):
                if not bytes(key).startswith(prefix) or len(out) >= limit:
                    break
                job_id = bytes(key[1:]).decode()
                if after is not None and job_id <= after:
                    continue
                out.append(job_id)
        return self._with_unindexed(out, code, id_prefix, after, limit)

    def due_ids(self, now: int, limit: int, *, prefix: str | None = None
                ) -> list[tuple[int, str]]:
        """Up to ``limit`` Retrying jobs whose due time is at or before ``now``, earliest
        first: of the type with id prefix ``prefix`` (``"FL"``), or of every type."""
        if prefix is None:
            merged = heapq.merge(*(self.due_ids(now, limit, prefix=p) for p in _PREFIXES))
            return list(itertools.islice(merged, limit))
        out: list[tuple[int, str]] = []
        head = prefix.encode()
        cur = self.txn.cursor(db=self._s.due)
        if not cur.set_range(head):
            return out
        for key in cur.iternext(keys=True, values=False):
            if key[:2] != head:
                break
            due = int.from_bytes(key[2:10], "big")
            if due > now or len(out) >= limit:
                break
            out.append((due, bytes(key[10:]).decode()))
        return out

    def next_due_after(self, now: int) -> int | None:
        """The first due time later than ``now``, if any (one peek per type)."""
        cur = self.txn.cursor(db=self._s.due)
        first: int | None = None
        after = (now + 1).to_bytes(8, "big")
        for p in _PREFIXES:
            head = p.encode()
            if cur.set_range(head + after) and cur.key()[:2] == head:
                due = int.from_bytes(cur.key()[2:10], "big")
                if first is None or due < first:
                    first = due
        return first

    # -- writes
    def _count(self, code: str, job_id: str, delta: int) -> None:
        key = code + job_id[:2]
        counts = self._counts
        counts[key] = counts.get(key, 0) + delta

    def insert(self, rec: dict[str, Any]) -> None:
        """Store a new record (the caller has checked its idempotency key)."""
        job_id = rec["id"]
        bid = job_id.encode()
        txn = self.txn
        s = self._s
        if job_id in self._recs:
            raise StoreError(f"[{job_id}] a job with this id already exists")
        self._recs[job_id] = self._dirty[job_id] = rec
        self._new.add(job_id)  # _finish refuses it if the id is taken in the store
        code = self._unindexed[job_id] = rec["s"]
        if rec["k"] is not None and code in ACTIVE_CODES:
            txn.put(rec["k"].encode(), bid, db=s.keys)
        if code == "Y" and rec["ra"] is not None:
            txn.put(_due_key(rec["ra"], job_id), b"", db=s.due)
        key = code + job_id[:2]
        counts = self._counts
        counts[key] = counts.get(key, 0) + 1

    def put(self, rec: dict[str, Any]) -> None:
        """Rewrite a record whose status did not change (progress, cancel flags)."""
        self._recs[rec["id"]] = self._dirty[rec["id"]] = rec

    def move(self, rec: dict[str, Any], new: JobStatus, now: int, **fields: Any) -> None:
        """Move a record to ``new`` (checked against the transition table), set ``fields``,
        and keep every index in step. Raises InvalidTransition and writes nothing if refused."""
        job_id = rec["id"]
        old_due = rec["ra"]
        old_code = apply_move(rec, new, now, fields)  # raises before anything is written
        new_code = rec["s"]
        s = self._s
        txn = self.txn
        if old_code == "Y" and old_due is not None:
            txn.delete(_due_key(old_due, job_id), db=s.due)
        if new_code in _TERMINAL_CODES:
            key = rec["k"]
            if key is not None and txn.get(key.encode(), db=s.keys) == job_id.encode():
                txn.delete(key.encode(), db=s.keys)
            if rec["cr"]:
                txn.delete(job_id.encode(), db=s.cancels)
        if new_code == "Y" and rec["ra"] is not None:
            txn.put(_due_key(rec["ra"], job_id), b"", db=s.due)
        unindexed = self._unindexed
        if job_id in unindexed:
            unindexed[job_id] = new_code
        else:
            txn.delete((old_code + job_id).encode(), db=s.status)
            txn.put((new_code + job_id).encode(), b"", db=s.status)
        self._recs[job_id] = self._dirty[job_id] = rec
        prefix = job_id[:2]
        counts = self._counts
        old_key = old_code + prefix
        new_key = new_code + prefix
        counts[old_key] = counts.get(old_key, 0) - 1
        counts[new_key] = counts.get(new_key, 0) + 1

    def delete(self, rec: dict[str, Any]) -> None:
        """Remove a terminal record and its index entries (job history pruning)."""
        job_id = rec["id"]
        if rec["s"] in ACTIVE_CODES:
            raise InvalidTransition(
                job_id, STATUS_OF[rec["s"]], None, "cannot delete an active job"
            )
        self._recs.pop(job_id, None)
        self._dirty.pop(job_id, None)
        self._s.written.pop(job_id, None)
        self.txn.delete(job_id.encode(), db=self._s.jobs)
        if self._unindexed.pop(job_id, None) is None:
            self.txn.delete((rec["s"] + job_id).encode(), db=self._s.status)
        self._count(rec["s"], job_id, -1)

    def get_slot(self, name: str) -> int | None:
        """The last schedule slot recorded for ``name``."""
        raw = self.txn.get(b"sched:" + name.encode(), db=self._s.meta)
        return None if raw is None else int(raw)

    def put_slot(self, name: str, slot: int) -> None:
        self.txn.put(b"sched:" + name.encode(), str(slot).encode(), db=self._s.meta)

    def quarantine(self, job_id: str, code: str, due: int | None = None) -> None:
        """Take an unreadable record out of the status (and due) index so work goes on; the
        record stays, and ``meta`` remembers it under ``quarantine:<id>``."""
        if self._unindexed.pop(job_id, None) is None:
            self.txn.delete((code + job_id).encode(), db=self._s.status)
        if due is not None:
            self.txn.delete(_due_key(due, job_id), db=self._s.due)
        self.txn.put(b"quarantine:" + job_id.encode(), code.encode(), db=self._s.meta)
        self._count(code, job_id, -1)

    def cancel_requests(self, limit: int) -> list[str]:
        cur = self.txn.cursor(db=self._s.cancels)
        out: list[str] = []
        for key in cur.iternext(keys=True, values=False):
            if len(out) >= limit:
                break
            out.append(bytes(key).decode())
        return out

    def request_cancel(self, job_id: str) -> None:
        self.txn.put(job_id.encode(), b"", db=self._s.cancels)

    def clear_cancel_request(self, job_id: str) -> None:
        self.txn.delete(job_id.encode(), db=self._s.cancels)

    def _finish(self) -> None:
        """Write what the transaction deferred: each changed record once, then the counters."""
        dirty = self._dirty
        if dirty:
            self._put_records(dirty)
            dirty.clear()
            self._new.clear()
        unindexed = self._unindexed
        if unindexed:
            self.txn.cursor(db=self._s.status).putmulti(
                (code.encode() + job_id.encode(), b"") for job_id, code in unindexed.items()
            )
            unindexed.clear()
        self._flush_counts()

    def _put_records(self, dirty: dict[str, dict[str, Any]]) -> None:
        new = self._new
        written = self._s.written
        if len(written) + len(dirty) > _WRITTEN_CACHE:
            written.clear()
        remember = len(dirty) <= _WRITTEN_CACHE  # a bulk create would only churn it

        def pairs(fresh: bool) -> Iterator[tuple[bytes, bytes]]:
            # A generator, not a list: 100,000 live tuples would wake the cyclic GC for
            # nothing, several times over.
            for job_id, rec in dirty.items():
                if (job_id in new) is fresh:
                    raw = encode_record(rec)
                    if remember and rec["s"] in ACTIVE_CODES:
                        written[job_id] = (raw, dict(rec))
                    else:
                        written.pop(job_id, None)
                    yield job_id.encode(), raw

        # putmulti loops in C: about half the cost of one txn.put call per record.
        cur = self.txn.cursor(db=self._s.jobs)
        cur.putmulti(pairs(False))
        if new:
            consumed, added = cur.putmulti(pairs(True), overwrite=False)
            if added != consumed:  # an id collision: the whole transaction is refused
                get = self.txn.get
                jobs = self._s.jobs
                ours = {job_id.encode(): encode_record(dirty[job_id])
                        for job_id in new if job_id in dirty}
                # A stored record that differs from ours is surely one that was there before.
                taken = next((k for k, v in ours.items() if get(k, db=jobs) != v),
                             next(iter(ours)))
                raise StoreError(f"[{taken.decode()}] a job with this id already exists "
                                 f"({consumed - added} of the {consumed} new ids)")

    def _flush_counts(self) -> None:
        for name, delta in self._counts.items():
            if delta:
                key = name.encode()
                raw = self.txn.get(key, db=self._s.counts)
                value = (int.from_bytes(raw, "big", signed=True) if raw else 0) + delta
                self.txn.put(key, value.to_bytes(8, "big", signed=True), db=self._s.counts)
        self._counts.clear()
