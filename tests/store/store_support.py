"""The backends the store contract suite runs on, and helpers written against the contract.

A backend is a :class:`Backend`: how to open an empty store in a folder, plus the two things
the contract cannot do through its own API — damage one stored record, and take a snapshot of
everything stored (to show that a refused change wrote nothing, indexes included). Adding a
backend is one entry in :data:`BACKENDS`. A backend that needs a server says why it cannot run
here (``skip_reason``) and its tests skip with that reason.

Every helper drives the store through the contract only: the verbs and :class:`StoreTxn`
methods inside ``store.write``, and :class:`JobStore`'s reads.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Final

import orjson

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
        skip_reason: why the backend cannot run here (no server), or None.
    """

    name: str
    open: Callable[[Path, Iterable[JobExecutor]], JobStore]
    corrupt: Callable[[JobStore, str, bytes], None]
    snapshot: Callable[[JobStore], object]
    skip_reason: str | None = None


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


# --------------------------------------------------------------------------- PostgreSQL

#: The server the PostgreSQL tests use: this machine's (socket, trust auth) unless told.
POSTGRES_URL: Final = os.environ.get("KALAM_TEST_POSTGRES_URL", "postgresql:///test")
#: Schemas the tests made, dropped at the end of the session (conftest.py).
PG_SCHEMAS: set[str] = set()


def postgres_unavailable() -> str | None:
    """Why the PostgreSQL tests cannot run here, or None when the server answers."""
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install 'psycopg[binary]')"
    try:
        with psycopg.connect(POSTGRES_URL, connect_timeout=3):
            pass
    except psycopg.Error as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return (f"no PostgreSQL server at {POSTGRES_URL} ({first_line}); set "
                "KALAM_TEST_POSTGRES_URL to use another")
    return None


def pg_schema(path: Path) -> str:
    """The schema of the store "in" ``path``: one per test folder, so tests never meet (one
    left by an earlier session that was killed is dropped on first use)."""
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:16]
    schema = f"kalam_test_{digest}"
    if schema not in PG_SCHEMAS:
        import psycopg

        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        PG_SCHEMAS.add(schema)
    return schema


def _pg_open(path: Path, executors: Iterable[JobExecutor] = ()) -> JobStore:
    from kalam_actors.store._postgres import open_pg_store

    # Not durable (asynchronous commits), as the LMDB stores here: they are thrown away.
    return open_pg_store(POSTGRES_URL, schema=pg_schema(path), executors=executors,
                         durable=False)


def _pg_schema_of(store: JobStore) -> str:
    schema: str = store.schema  # type: ignore[attr-defined]
    return schema


def _pg_corrupt(store: JobStore, job_id: str, raw: bytes) -> None:
    """A row is not bytes: its damage is a record layout version no code writes (the
    version the bytes name, for a record "from a newer version"; -1 for garbage)."""
    import psycopg

    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError:
        payload = None
    version = payload.get("v") if isinstance(payload, dict) else None
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f'UPDATE "{_pg_schema_of(store)}".jobs SET v = %s WHERE id = %s',
                     (version if isinstance(version, int) else -1, job_id))


def _pg_snapshot(store: JobStore) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table of the store's schema, sorted; the counts as their sums."""
    import psycopg

    schema = _pg_schema_of(store)
    out: dict[str, list[tuple[Any, ...]]] = {}
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        tables = [row[0] for row in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
            (schema,))]
        for table in tables:
            if table == "kalam_counts":
                sql = (f'SELECT status, job_type, sum(n) FROM "{schema}".kalam_counts '
                       "GROUP BY 1, 2 HAVING sum(n) <> 0")
            else:
                sql = f'SELECT * FROM "{schema}"."{table}"'
            out[table] = sorted(conn.execute(sql).fetchall(), key=repr)
    return out


POSTGRES = Backend("postgres", _pg_open, _pg_corrupt, _pg_snapshot,
                   skip_reason=postgres_unavailable())

BACKENDS: Sequence[Backend] = [LMDB, POSTGRES]


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
