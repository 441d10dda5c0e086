"""JobStore: read and submit access to a job store from any process.

The public face of the store. It reads the LMDB environment in short snapshots and writes
through the store verbs, each inside one write transaction (:meth:`JobStore.write`).
"""

from __future__ import annotations

import contextlib
import heapq
import os
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Final, TypeVar

import lmdb

from ..errors import CancelNotAllowed, InvalidParams, StoreError
from ..executor import JobExecutor
from ..ids import JobId, JobType
from ..model import Job, JobFilter, JobRow, JobStatus
from . import verbs
from ._lmdb import StoreTxn, _acquire_env, _release_env
from .door import prepare_job
from .records import CODE, STATUS_OF, TYPE_OF_PREFIX, decode_record, now_us, record_to_job
from .values import check_idempotency_key

__all__ = ["NOT_CANCELLABLE", "JobStore"]

T = TypeVar("T")


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
        """The LMDB environment (shared by every JobStore on this path in this process)."""
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
        """The job's stored record (for the store package), or None.

        Raises:
            InvalidJobId: for a malformed id.
            CorruptRecord: if its record cannot be read.
        """
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
        """The stored records matching ``f``, read by index in one snapshot.

        Raises:
            InvalidParams: for a bad ``limit``.
        """
        limit = f.limit
        if limit is not None and (not isinstance(limit, int) or limit < 0):
            raise InvalidParams(f"limit must be a whole number >= 0, not {limit!r}", field="limit")
        if not _can_match(f):
            return
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

    def schedules(self) -> list[tuple[str, int]]:
        """Every schedule the runtime has fired, with the last slot it recorded, by name."""
        out: list[tuple[str, int]] = []
        head = b"sched:"
        with self._read() as txn:
            cur = txn.cursor(db=self._shared.meta)
            if not cur.set_range(head):
                return out
            for key, raw in cur:
                if not bytes(key).startswith(head):
                    break
                text = bytes(raw).decode(errors="replace")
                if text.lstrip("-").isdigit():
                    out.append((bytes(key[len(head):]).decode(errors="replace"), int(text)))
        return out

    def has_status(self, status: JobStatus) -> bool:
        """Whether any job has ``status`` (one index peek)."""
        with self._read() as txn:
            cur = txn.cursor(db=self._shared.status)
            code = CODE[status].encode()
            return bool(cur.set_range(code)) and bytes(cur.key()).startswith(code)

    def has_cancel_requests(self) -> bool:
        """Whether another process has asked to cancel a running job (one index peek)."""
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

    # -- operator actions
    def retry_job(self, job_id: str) -> JobId:
        """Run a finished job again: a new job (status New) with the same type, parameters,
        idempotency key, retries and time limit; returns its id.

        Raises:
            JobNotFound; InvalidTransition (the job is still active); IdempotentConflict.
        """
        job_id = JobId.parse(job_id)
        now = now_us()
        return self.write(lambda txn: verbs.resubmit(txn, job_id, now))

    def delete_job(self, job_id: str) -> None:
        """Delete a finished job's record.

        Raises:
            JobNotFound; InvalidTransition (the job is still active).
        """
        job_id = JobId.parse(job_id)
        self.write(lambda txn: verbs.delete(txn, job_id))

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


def _can_match(f: JobFilter) -> bool:
    """False for a filter no stored job can match: ids are ASCII, and a key the door would
    refuse is held by no job (and cannot be an index key)."""
    prefix = f.job_id_prefix
    if prefix is not None and not prefix.isascii():
        return False
    key = f.idempotency_key
    if key is not None:
        try:
            check_idempotency_key(key)
        except InvalidParams:
            return False
    return True


def _suffix(job_id: bytes) -> bytes:
    return job_id[3:]


def _prefix_end(prefix: bytes) -> bytes | None:
    """The smallest key greater than every key starting with ``prefix``."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes([stripped[-1] + 1])


