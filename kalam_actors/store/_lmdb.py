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
snapshots. :class:`JobStore` is the public face (read and submit from any process);
:class:`StoreTxn` is the write-side toolkit the runtime's supervisor uses for group commits.
"""

from __future__ import annotations

import contextlib
import heapq
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Final, TypeVar

import lmdb

from .._txngate import TxnGate
from ..errors import (
    CancelNotAllowed,
    InvalidParams,
    InvalidTransition,
    JobNotFound,
    StoreError,
)
from ..executor import JobExecutor
from ..ids import JobId, JobType
from ..model import (
    Job,
    JobFilter,
    JobRow,
    JobStatus,
    check_transition,
)
from . import verbs
from .door import prepare_job
from .records import (
    _ALLOWED_CODES,
    _CODE_OF_VALUE,
    _TERMINAL_CODES,
    ACTIVE_CODES,
    CODE,
    SCHEMA_VERSION,
    STATUS_OF,
    TYPE_OF_PREFIX,
    decode_record,
    encode_record,
    now_us,
    record_to_job,
)

__all__ = ["NOT_CANCELLABLE", "JobStore", "StoreTxn"]

T = TypeVar("T")


def _due_key(run_after_us: int, job_id: str) -> bytes:
    return run_after_us.to_bytes(8, "big") + job_id.encode()


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

    def due_ids(self, now: int, limit: int) -> list[tuple[int, str]]:
        """Up to ``limit`` Retrying jobs whose due time is at or before ``now``."""
        out: list[tuple[int, str]] = []
        cur = self.txn.cursor(db=self._s.due)
        if not cur.first():
            return out
        for key in cur.iternext(keys=True, values=False):
            due = int.from_bytes(key[:8], "big")
            if due > now or len(out) >= limit:
                break
            out.append((due, bytes(key[8:]).decode()))
        return out

    def next_due_after(self, now: int) -> int | None:
        """The first due time later than ``now``, if any."""
        cur = self.txn.cursor(db=self._s.due)
        if not cur.set_range((now + 1).to_bytes(8, "big")):
            return None
        return int.from_bytes(cur.key()[:8], "big")

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
        old_code = rec["s"]
        new_code = _CODE_OF_VALUE[new._value_]
        # Status codes are short strings: checking them is cheaper than hashing enums, and
        # this runs for every state change.
        if (old_code, new_code) not in _ALLOWED_CODES:
            check_transition(job_id, STATUS_OF[old_code], new)  # raises, naming both
        s = self._s
        txn = self.txn
        if old_code == "Y" and rec["ra"] is not None:
            txn.delete(_due_key(rec["ra"], job_id), db=s.due)
        rec.update(fields)
        rec["s"] = new_code
        rec["u"] = now
        if new_code in _TERMINAL_CODES:
            rec["f"] = now
            key = rec["k"]
            if key is not None and txn.get(key.encode(), db=s.keys) == job_id.encode():
                txn.delete(key.encode(), db=s.keys)
            if rec["cr"]:
                txn.delete(job_id.encode(), db=s.cancels)
        elif new_code == "R":
            rec["st"] = now
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


# --------------------------------------------------------------------------- the store


class JobStore:
    """Read and submit access to a job store, from any process, without running executors.

    Args:
        path: the store's folder (created if missing).
        executors: executors whose ``validate_params`` check new jobs and whose
            ``cancellable`` says whether their jobs may be cancelled (without one, the seed's
            rule: Cleanup and UserCleanup jobs cannot be cancelled once started).
        map_size: initial LMDB map size in bytes; it grows when full.
        durable: every commit is on disk before it returns (the default). ``False`` is for
            throwaway stores: a commit may be lost to a power cut, and one not yet flushed
            may corrupt the store. Stores on one path in one process share the environment,
            and with it the choice of the first one opened; a durable store on an
            environment opened non-durably still flushes each write it makes, after its
            commit.
        writer: open the store for writing at once (the runtime does). Otherwise a process
            that finds the store made opens it read-only, so reading never waits for another
            process's write transaction, and reopens it writable on its first write.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        executors: Iterable[JobExecutor] | None = None,
        map_size: int | None = None,
        durable: bool = True,
        writer: bool = False,
    ) -> None:
        self.path = Path(path).resolve()
        self._shared = _acquire_env(self.path, map_size, durable, write=writer)
        self._closed = False
        self._executors: dict[JobType, JobExecutor] = {
            e.job_type: e for e in (executors or ())
        }

    # -- lifecycle
    def close(self) -> None:
        """Release the environment (shared with other stores on this path in this process)."""
        if not self._closed:
            self._closed = True
            _release_env(self._shared)

    def __enter__(self) -> JobStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def env(self) -> lmdb.Environment:
        return self._shared.env

    # -- transactions
    def _retry_resized(self, fn: Callable[[], T]) -> T:
        """Run ``fn``, adopting a map size grown by another process, or growing it when full."""
        for _ in range(64):
            try:
                return fn()
            except lmdb.MapResizedError:
                self._shared.gate.exclusive(lambda: self.env.set_mapsize(0))
            except lmdb.MapFullError:
                self._shared.gate.exclusive(self._grow)
            except lmdb.Error as exc:
                raise StoreError(f"job store {self.path}: {exc}") from exc
        raise StoreError(f"job store {self.path}: could not grow the map")

    def _grow(self) -> None:
        self.env.set_mapsize(self.env.info()["map_size"] * 2)

    def write(self, fn: Callable[[StoreTxn], T], *, sync: bool = True) -> T:
        """Run ``fn`` in one write transaction and commit it (re-run whole if the map grows).

        ``fn`` must only touch the store through the StoreTxn it gets: it may run twice. On a
        durable store the commit is on disk when this returns, whatever ``sync`` says; on a
        store opened with ``durable=False``, ``sync`` flushes it afterwards.
        """

        self._shared.writable()

        def attempt() -> T:
            with self._shared.gate.txn(), self.env.begin(write=True) as txn:
                stxn = StoreTxn(self._shared, txn)
                result = fn(stxn)
                stxn._finish()
            if sync and not self._shared.durable:
                self.env.sync(True)
            return result

        return self._retry_resized(attempt)

    def sync(self) -> None:
        """Flush committed transactions to disk (fsync). A durable store's commits are on
        disk already; this is for a store opened with ``durable=False``."""
        try:
            self.env.sync(True)
        except lmdb.Error as exc:
            raise StoreError(f"job store {self.path}: sync failed: {exc}") from exc

    def _begin_read(self) -> lmdb.Transaction:
        """A read transaction, opened inside the gate (pair it with :meth:`_end_read`)."""
        return self._retry_resized(self._begin_read_once)

    def _begin_read_once(self) -> lmdb.Transaction:
        gate = self._shared.gate
        gate.enter()
        try:
            return self.env.begin(write=False, buffers=False)
        except BaseException:
            gate.leave()
            raise

    def _end_read(self, txn: lmdb.Transaction) -> None:
        txn.abort()
        self._shared.gate.leave()

    @contextlib.contextmanager
    def _read(self) -> Iterator[lmdb.Transaction]:
        txn = self._begin_read()
        try:
            yield txn
        finally:
            self._end_read(txn)

    # -- reads
    def get_record(self, job_id: str) -> dict[str, Any] | None:
        job_id = JobId.parse(job_id)
        # No context manager and no retry wrapper on the way in: this is the hot read
        # (get_job, watch_job), a few µs in all. A resized map takes the general path.
        try:
            txn = self._begin_read_once()
        except lmdb.Error:
            txn = self._begin_read()
        try:
            raw = txn.get(job_id.encode(), db=self._shared.jobs)
        finally:
            self._end_read(txn)
        if raw is None:
            return None
        known = self._shared.written.get(job_id)
        if known is not None and known[0] == raw:
            return dict(known[1])
        return decode_record(job_id, raw)

    def get_job(self, job_id: str) -> Job | None:
        """The job with this id, or None.

        Raises:
            InvalidJobId: for a malformed id.
            CorruptRecord: if its record cannot be read.
        """
        rec = self.get_record(job_id)
        return None if rec is None else record_to_job(rec)

    def list_jobs(self, job_filter: JobFilter | None = None) -> list[Job]:
        """Jobs matching ``job_filter`` in creation order (or newest first), read by index.

        A record that cannot be decoded raises CorruptRecord naming it.
        """
        return [record_to_job(r) for r in self.iter_records(job_filter or JobFilter())]

    def system_jobs(self, job_filter: JobFilter | None = None) -> Iterator[JobRow]:
        """The ``system.jobs`` view: one :class:`JobRow` per matching job."""
        for rec in self.iter_records(job_filter or JobFilter()):
            yield JobRow.from_job(record_to_job(rec))

    def iter_records(self, f: JobFilter) -> Iterator[dict[str, Any]]:
        limit = f.limit
        if limit is not None and (not isinstance(limit, int) or limit < 0):
            raise InvalidParams(f"limit must be a whole number >= 0, not {limit!r}", field="limit")
        prefixes = self._prefixes(f)
        statuses = f.statuses()
        records = self._iter_filtered(f, prefixes, statuses)
        for count, rec in enumerate(records):
            if limit is not None and count >= limit:
                return
            yield rec

    def _prefixes(self, f: JobFilter) -> list[str]:
        """The id prefixes to range over: one per job type (ids sort by type first, so a
        listing in creation order merges the types' ranges by the time-ordered suffix)."""
        types = f.job_types() or tuple(JobType)
        id_prefix = f.job_id_prefix or ""
        out = []
        for t in types:
            full = t.prefix + "-"
            if full.startswith(id_prefix):
                out.append(full)
            elif id_prefix.startswith(full):
                out.append(id_prefix)
        return sorted(out)

    def _iter_filtered(
        self, f: JobFilter, prefixes: list[str], statuses: tuple[JobStatus, ...] | None
    ) -> Iterator[dict[str, Any]]:
        shared = self._shared
        key = f.idempotency_key
        wanted_prefixes = tuple(prefixes)
        with self._read() as txn:
            if key is not None and statuses is not None and all(s.is_active for s in statuses):
                # The keys index answers this without a scan.
                holder = txn.get(key.encode(), db=shared.keys)
                ids: Iterable[bytes] = [] if holder is None else [bytes(holder)]
            elif statuses is None:
                ids = self._merge(
                    [self._range_ids(txn, shared.jobs, p.encode(), 0, f.newest_first)
                     for p in prefixes],
                    f.newest_first,
                )
            else:
                ids = self._merge(
                    [
                        self._range_ids(txn, shared.status, (CODE[s] + p).encode(), 1,
                                        f.newest_first)
                        for s in statuses
                        for p in prefixes
                    ],
                    f.newest_first,
                )
            for bid in ids:
                raw = txn.get(bid, db=shared.jobs)
                if raw is None:
                    continue
                rec = decode_record(bid.decode(), bytes(raw))
                if statuses is not None and STATUS_OF[rec["s"]] not in statuses:
                    continue
                if key is not None and rec["k"] != key:
                    continue
                if not rec["id"].startswith(wanted_prefixes):
                    continue
                yield rec

    @staticmethod
    def _merge(iters: list[Iterator[bytes]], reverse: bool) -> Iterator[bytes]:
        """Merge per-type id ranges into creation order (by the suffix after ``XX-``)."""
        if len(iters) == 1:
            return iters[0]
        return heapq.merge(*iters, key=_suffix, reverse=reverse)

    @staticmethod
    def _range_ids(
        txn: lmdb.Transaction, db: Any, start: bytes, strip: int, reverse: bool
    ) -> Iterator[bytes]:
        cur = txn.cursor(db=db)
        if reverse:
            # Position just past the prefix range, then walk back.
            end = _prefix_end(start)
            positioned = cur.set_range(end) if end is not None else cur.last()
            if positioned and end is not None:
                positioned = cur.prev()
            elif not positioned:
                positioned = cur.last()
            if not positioned:
                return
            for k in cur.iterprev(keys=True, values=False):
                if not bytes(k).startswith(start):
                    return
                yield bytes(k[strip:])
        else:
            if not cur.set_range(start):
                return
            for k in cur.iternext(keys=True, values=False):
                if not bytes(k).startswith(start):
                    return
                yield bytes(k[strip:])

    def counts(self) -> dict[tuple[JobStatus, JobType], int]:
        """How many jobs there are of each status and type (kept in step by every write)."""
        out: dict[tuple[JobStatus, JobType], int] = {}
        with self._read() as txn:
            for key, raw in txn.cursor(db=self._shared.counts):
                value = int.from_bytes(raw, "big", signed=True)
                code, prefix = bytes(key[:1]).decode(), bytes(key[1:]).decode()
                if value > 0 and code in STATUS_OF and prefix in TYPE_OF_PREFIX:
                    out[(STATUS_OF[code], TYPE_OF_PREFIX[prefix])] = value
        return out

    def last_slot(self, name: str) -> int | None:
        """The last slot the runtime created a job for, for the schedule ``name``."""
        with self._read() as txn:
            raw = txn.get(b"sched:" + name.encode(), db=self._shared.meta)
        return None if raw is None else int(raw)

    def has_status(self, status: JobStatus) -> bool:
        with self._read() as txn:
            cur = txn.cursor(db=self._shared.status)
            code = CODE[status].encode()
            return bool(cur.set_range(code)) and bytes(cur.key()).startswith(code)

    def has_cancel_requests(self) -> bool:
        with self._read() as txn:
            return bool(txn.cursor(db=self._shared.cancels).first())

    # -- submit
    def _executor(self, job_type: JobType) -> JobExecutor | None:
        return self._executors.get(job_type)

    def _cancellable(self, job_type: JobType) -> bool:
        executor = self._executors.get(job_type)
        if executor is not None:
            return bool(executor.cancellable)
        # No executor here to ask: the seed's rule for its job types.
        return job_type not in NOT_CANCELLABLE

    def create_job(
        self,
        job_type: JobType | str,
        params: Any,
        *,
        idempotency_key: str | None = None,
        max_retries: int = 3,
        timeout_s: float | None = None,
    ) -> JobId:
        """Submit a job (status New); a running runtime picks it up within its poll interval.

        Parameters are checked by the executor of its type given to this store, if any (the
        runtime checks them again before it runs the job).

        Raises:
            UnknownJobType, InvalidParams: for bad input, naming it; nothing is written.
            IdempotentConflict: when an active job holds ``idempotency_key``.
        """
        jt = JobType.parse(job_type)
        job = prepare_job(
            jt, params, idempotency_key=idempotency_key, max_retries=max_retries,
            timeout_s=timeout_s, executor=self._executor(jt),
        )
        job_id = JobId.new(jt)
        now = now_us()
        self.write(lambda txn: verbs.create_jobs(txn, [job], now, status=JobStatus.NEW,
                                                 ids=[job_id]))
        return job_id

    def cancel_job(self, job_id: str, *, wait_s: float = 5.0) -> Job:
        """Cancel a job. New, Queued and Retrying jobs end Cancelled at once. For a Running
        job a cancel request is recorded for the runtime, and this waits up to ``wait_s`` for
        its verdict.

        Raises:
            JobNotFound, InvalidTransition (terminal job), CancelNotAllowed (its type cannot
            be cancelled once started, the executor refused, or the runtime did not answer
            within ``wait_s``).
        """
        job_id = JobId.parse(job_id)
        cancellable = self._cancellable(job_id.job_type)
        now = now_us()

        def cancel(txn: StoreTxn) -> Job | None:
            job = verbs.cancel(txn, job_id, now, cancellable=cancellable)
            if job is None:
                verbs.request_cancel(txn, job_id, cancellable=cancellable)
            return job

        done = self.write(cancel)
        if done is not None:
            return done
        return self._await_cancel_verdict(job_id, wait_s)

    def _await_cancel_verdict(self, job_id: JobId, wait_s: float) -> Job:
        deadline = time.monotonic() + wait_s
        delay = 0.005
        while True:
            verdict = verbs.cancel_verdict(self.get_record(job_id), job_id)
            if isinstance(verdict, CancelNotAllowed):
                raise verdict
            if verdict is not None:
                return verdict
            if time.monotonic() >= deadline:
                raise CancelNotAllowed(
                    job_id, f"the runtime did not answer the cancel request within {wait_s} s "
                    "(is it running?); the request stays recorded"
                )
            time.sleep(delay)  # polling another process's verdict; there is no event to wait on
            delay = min(delay * 2, 0.1)

    # -- history
    def prune_history(
        self,
        before_us: int,
        *,
        batch_size: int = 1000,
        on_batch: Callable[[int], None] | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> int:
        """Delete terminal jobs that finished before ``before_us`` (µs since the epoch), in
        write transactions of at most ``batch_size`` records; return how many.
        See :func:`verbs.prune_history`."""
        return verbs.prune_history(self.write, before_us, batch_size=batch_size,
                                   on_batch=on_batch, cancelled=cancelled)


# The seed's rule, for a store that has no executor of the type to ask.
NOT_CANCELLABLE: Final = frozenset({JobType.CLEANUP, JobType.USER_CLEANUP})


def _suffix(job_id: bytes) -> bytes:
    return job_id[3:]


def _prefix_end(prefix: bytes) -> bytes | None:
    """The smallest key greater than every key starting with ``prefix``."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes([stripped[-1] + 1])


