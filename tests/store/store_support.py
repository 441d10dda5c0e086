"""The backends the store contract suite runs on, and helpers written against the contract.

A backend is a :class:`Backend`: how to open an empty store in a folder, plus the two things
the contract cannot do through its own API — damage one stored record, and take a snapshot of
everything stored (to show that a refused change wrote nothing, indexes included). Adding a
backend is one entry in :data:`BACKENDS`.

Every helper drives the store through the contract only: the verbs and :class:`StoreTxn`
methods inside ``store.write``, and :class:`JobStore`'s reads.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Final

from kalam_actors import JobDecision, JobExecutor, JobFilter, JobId, JobStatus, JobStore, JobType
from kalam_actors.model import RetryPolicy
from kalam_actors.store import NewJob, StoreTxn, prepare_job, verbs

# Wall-clock values handed to the verbs: fixed, in microseconds since the epoch.
NOW = 1_800_000_000_000_000
MS = 1_000
SECOND = 1_000_000
# The backoff of the jobs that reach() makes Retrying (see due_at).
RETRY_IN = 10 * SECOND


@dataclasses.dataclass(frozen=True)
class Backend:
    """One implementation of the store contract.

    Attributes:
        name: the test id.
        open: a store in the (empty or missing) folder given, checking new jobs with the
            executors given and asking them whether their jobs may be cancelled.
        corrupt: replace the stored form of a job's record with these bytes.
        snapshot: everything the store holds, comparable with ``==``.
    """

    name: str
    open: Callable[[Path, Iterable[JobExecutor]], JobStore]
    corrupt: Callable[[JobStore, str, bytes], None]
    snapshot: Callable[[JobStore], object]


# --------------------------------------------------------------------------- LMDB


def _lmdb_open(path: Path, executors: Iterable[JobExecutor] = ()) -> JobStore:
    # Not durable: these stores are thrown away, and an fsync per commit only costs time.
    return JobStore(path, executors=executors, durable=False)


def _lmdb_corrupt(store: JobStore, job_id: str, raw: bytes) -> None:
    env = store.env
    with env.begin(write=True) as txn:
        txn.put(job_id.encode(), raw, db=env.open_db(b"jobs", txn=txn, create=False))


def _lmdb_snapshot(store: JobStore) -> dict[bytes, list[tuple[bytes, bytes]]]:
    env = store.env
    with env.begin() as txn:
        names = [bytes(name) for name, _ in txn.cursor()]
        return {
            name: [(bytes(k), bytes(v))
                   for k, v in txn.cursor(db=env.open_db(name, txn=txn, create=False))]
            for name in names
        }


LMDB = Backend("lmdb", _lmdb_open, _lmdb_corrupt, _lmdb_snapshot)

BACKENDS: Sequence[Backend] = [LMDB]


# --------------------------------------------------------------------------- helpers


def new_job(
    job_type: JobType = JobType.FLUSH, params: Any = None, *, key: str | None = None,
    max_retries: int = 3, timeout_s: float | None = None,
) -> NewJob:
    """A job checked at the door, ready for :func:`verbs.create_jobs`."""
    return prepare_job(job_type, {} if params is None else params, idempotency_key=key,
                       max_retries=max_retries, timeout_s=timeout_s)


def create(store: JobStore, *jobs: NewJob, status: JobStatus = JobStatus.QUEUED,
           now: int = NOW) -> list[JobId]:
    """Create ``jobs`` in one write transaction (Queued, as the runtime does)."""
    return store.write(lambda txn: verbs.create_jobs(txn, list(jobs), now, status=status))


def move(store: JobStore, job_id: str, new: JobStatus, now: int, **fields: Any) -> None:
    """One status change through StoreTxn.move, in its own write transaction."""
    store.write(lambda txn: txn.move(txn.require(job_id), new, now, **fields))


def reach(
    store: JobStore, status: JobStatus, job_type: JobType = JobType.FLUSH, *,
    key: str | None = None, max_retries: int = 3, now: int = NOW,
) -> JobId:
    """A job that reached ``status`` the way the runtime takes it there, one transaction a
    step: created at ``now`` (New or Queued), Running from ``now + 1``, then finished (or
    cancelled) at ``now + 2``; a Retrying job is due at :func:`due_at` ``(now)``.
    """
    start = JobStatus.NEW if status is JobStatus.NEW else JobStatus.QUEUED
    (job_id,) = create(store, new_job(job_type, key=key, max_retries=max_retries),
                       status=start, now=now)
    if status in (JobStatus.NEW, JobStatus.QUEUED):
        return job_id
    if status is JobStatus.CANCELLED:
        store.write(lambda txn: verbs.cancel(txn, job_id, now + 2, cancellable=True))
        return job_id
    move(store, job_id, JobStatus.RUNNING, now + 1)
    decision = _DECISIONS.get(status)
    if decision is not None:
        store.write(lambda txn: verbs.finish(txn, job_id, decision, now + 2, cancelled=False,
                                             retry_policy=RetryPolicy()))
    return job_id


def due_at(now: int = NOW) -> int:
    """When a job that :func:`reach` made Retrying at ``now`` is due."""
    return now + 2 + RETRY_IN


_DECISIONS: Final = {
    JobStatus.RETRYING: JobDecision.retry("attempt 1 failed", backoff_ms=RETRY_IN // MS),
    JobStatus.COMPLETED: JobDecision.completed("done"),
    JobStatus.FAILED: JobDecision.failed("failed", "Traceback: failed"),
    JobStatus.SKIPPED: JobDecision.skipped("nothing to do"),
}


def status_of(store: JobStore, job_id: str) -> JobStatus | None:
    job = store.get_job(job_id)
    return None if job is None else job.status


def listed(store: JobStore, job_filter: JobFilter | None = None) -> list[str]:
    return [job.job_id for job in store.list_jobs(job_filter)]


def in_txn(store: JobStore, fn: Callable[[StoreTxn], Any]) -> Any:
    """``fn``'s answer from a write transaction (the contract's reads inside one)."""
    return store.write(fn)


def assert_counts_in_step(store: JobStore) -> None:
    """The kept counts equal what a listing of every job finds."""
    seen = collections.Counter((job.status, job.job_type) for job in store.list_jobs())
    assert store.counts() == dict(seen)
