"""What only the PostgreSQL store has to show: several connections and processes on one
schema (issue 15). The store contract itself runs on it in test_store_contract.py.

Skipped, with the reason, where no PostgreSQL server answers (see store_support.POSTGRES).
"""

from __future__ import annotations

import collections
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from store_support import (
    NOW,
    POSTGRES,
    POSTGRES_URL,
    create,
    due_at,
    new_job,
    pg_schema,
    reach,
)

from kalam_actors import (
    IdempotentConflict,
    InvalidParams,
    JobDecision,
    JobFilter,
    JobStatus,
    JobType,
    StoreError,
)
from kalam_actors.model import Progress, RetryPolicy
from kalam_actors.store import StoreTxn, verbs

pytestmark = pytest.mark.skipif(POSTGRES.skip_reason is not None,
                                reason=POSTGRES.skip_reason or "")

if POSTGRES.skip_reason is None:
    import psycopg

    from kalam_actors.store import _postgres
    from kalam_actors.store._postgres import PgJobStore, open_pg_store

FL = JobType.FLUSH


@pytest.fixture
def schema(tmp_path: Path) -> str:
    """An empty schema of this test's own."""
    return pg_schema(tmp_path / "jobs")


@pytest.fixture
def opened(schema: str) -> Iterator[Callable[..., PgJobStore]]:
    """Open stores on the test's schema (each its own connections); all closed after."""
    stores: list[PgJobStore] = []

    def open_store(**kw: Any) -> PgJobStore:
        store = open_pg_store(POSTGRES_URL, schema=schema, durable=False, **kw)
        stores.append(store)
        return store

    yield open_store
    for store in stores:
        store.close()


def sql(query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """One statement on a connection of its own (as an operator with psql)."""
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else []


def in_threads(*fns: Callable[[], Any]) -> list[Any]:
    """Run each function in its own thread; their results (or what they raised)."""
    results: list[Any] = [None] * len(fns)

    def run(i: int) -> None:
        try:
            results[i] = fns[i]()
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(fns))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
        assert not thread.is_alive(), "a thread did not finish"
    return results


# --------------------------------------------------------------------------- idempotency


def test_an_idempotency_race_between_connections_has_one_winner(
    opened: Callable[..., PgJobStore]
) -> None:
    a, b = opened(), opened()
    for race in range(20):
        key = f"key-{race}"
        start = threading.Barrier(2)

        def submit(store: PgJobStore, key: str = key, start: threading.Barrier = start) -> Any:
            start.wait(timeout=10)
            return store.create_job(FL, {}, idempotency_key=key)

        results = in_threads(lambda: submit(a), lambda: submit(b))
        won = [r for r in results if isinstance(r, str)]
        lost = [r for r in results if isinstance(r, IdempotentConflict)]
        assert len(won) == 1 and len(lost) == 1, results
        assert lost[0].existing_job_id == won[0]
    jobs = a.list_jobs()
    assert len(jobs) == 20 and len({j.idempotency_key for j in jobs}) == 20
    assert a.counts() == {(JobStatus.NEW, FL): 20}


def test_a_key_taken_after_the_check_is_found_when_the_write_runs_again(
    opened: Callable[..., PgJobStore]
) -> None:
    """Both transactions find the key free; the unique index lets one insert; the other runs
    again, finds the holder, and is refused as if it had come second."""
    a, b = opened(), opened()
    both_checked = threading.Barrier(2)
    attempts: collections.Counter[str] = collections.Counter()

    def create_with_key(store: PgJobStore, name: str) -> Any:
        def fn(txn: StoreTxn) -> Any:
            attempts[name] += 1
            if attempts[name] == 1:
                assert txn.active_holder("k") is None
                both_checked.wait(timeout=10)
            return verbs.create_jobs(txn, [new_job(key="k")], NOW)

        return store.write(fn)

    results = in_threads(lambda: create_with_key(a, "a"), lambda: create_with_key(b, "b"))
    won = [r[0] for r in results if isinstance(r, list)]
    lost = [r for r in results if isinstance(r, IdempotentConflict)]
    assert len(won) == 1 and len(lost) == 1, results
    assert lost[0].existing_job_id == won[0]
    assert sorted(attempts.values()) == [1, 2]
    assert [j.job_id for j in a.list_jobs()] == won


# --------------------------------------------------------------------------- other writers


def test_a_record_changed_by_another_connection_is_read_again(
    opened: Callable[..., PgJobStore]
) -> None:
    runtime, other = opened(), opened()
    (job_id,) = create(runtime, new_job())  # the runtime keeps the record it wrote
    assert other.cancel_job(job_id).status is JobStatus.CANCELLED
    assert not runtime.write(lambda txn: verbs.start(txn, job_id, NOW + 1))
    job = runtime.get_job(job_id)
    assert job is not None and job.status is JobStatus.CANCELLED
    assert runtime.counts() == {(JobStatus.CANCELLED, FL): 1}


def test_an_operators_edit_is_not_overwritten_by_a_record_read_before_it(
    opened: Callable[..., PgJobStore], schema: str
) -> None:
    store = opened()
    (job_id,) = create(store, new_job())
    sql(f'UPDATE "{schema}".jobs SET retry_count = 2 WHERE id = %s', (job_id,))
    (started,) = store.write(lambda txn: verbs.dispatch(txn, {"FL": 1}, 1, NOW + 1)).started
    assert started.attempt == 3
    job = store.get_job(job_id)
    assert job is not None and (job.status, job.retry_count) == (JobStatus.RUNNING, 2)
    sql(f'UPDATE "{schema}".jobs SET max_retries = 9 WHERE id = %s', (job_id,))
    assert store.write(lambda txn: verbs.finish(txn, job_id, JobDecision.retry("again"),
                                                NOW + 2, cancelled=False,
                                                retry_policy=RetryPolicy()))
    job = store.get_job(job_id)
    assert job is not None and (job.retry_count, job.max_retries) == (3, 9)


def test_a_decision_taken_on_a_record_changed_since_is_taken_again(
    opened: Callable[..., PgJobStore]
) -> None:
    """A decision that writes nothing is checked too: the record it was taken on must still
    be as read when the transaction commits."""
    a, b = opened(), opened()
    (job_id,) = create(a, new_job())  # a keeps the Queued record it wrote
    assert b.write(lambda txn: verbs.start(txn, job_id, NOW + 1))
    # By a's record the job is Queued, and progress would be refused without a write.
    assert a.write(lambda txn: verbs.set_progress(txn, job_id, Progress(1, 2)))
    job = a.get_job(job_id)
    assert job is not None and job.progress == Progress(1, 2)


def test_a_lost_connection_is_opened_again(opened: Callable[..., PgJobStore]) -> None:
    store = opened(writer=True)
    (job_id,) = create(store, new_job())
    assert store.get_job(job_id) is not None
    for conn in (store._writer_conn, store._reader_conn):
        assert conn is not None
        sql("SELECT pg_terminate_backend(%s)", (conn.info.backend_pid,))
    (second,) = create(store, new_job())
    assert [j.job_id for j in store.list_jobs()] == [job_id, second]


def test_counts_stay_exact_with_writers_on_several_connections(
    opened: Callable[..., PgJobStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_postgres, "_COMPACT_EVERY", 7)  # compact often, while others write
    stores = [opened() for _ in range(3)]

    def work(store: PgJobStore, seed: int) -> None:
        for i in range(40):
            (job_id,) = create(store, new_job((FL, JobType.COMPACT)[(seed + i) % 2]))
            if i % 3 == 0:
                store.cancel_job(job_id)

    results = in_threads(*(lambda s=s, n=n: work(s, n) for n, s in enumerate(stores)))
    assert results == [None, None, None]
    seen = collections.Counter((j.status, j.job_type) for j in stores[0].list_jobs())
    assert stores[0].counts() == dict(seen) and sum(seen.values()) == 120


def test_reads_do_not_wait_for_a_write_in_progress(opened: Callable[..., PgJobStore]) -> None:
    store = opened()
    (job_id,) = create(store, new_job())
    inside, release = threading.Event(), threading.Event()

    def slow_write(txn: StoreTxn) -> None:
        verbs.cancel(txn, job_id, NOW + 1, cancellable=True)
        txn.active_holder("flush what we wrote")
        inside.set()
        assert release.wait(timeout=30)

    writer = threading.Thread(target=store.write, args=(slow_write,))
    writer.start()
    try:
        assert inside.wait(timeout=10)
        began = time.monotonic()
        job = store.get_job(job_id)
        assert [j.job_id for j in store.list_jobs(JobFilter(status=JobStatus.QUEUED))] == [job_id]
        assert time.monotonic() - began < 2
        assert job is not None and job.status is JobStatus.QUEUED  # not committed yet
    finally:
        release.set()
        writer.join(timeout=30)
    job = store.get_job(job_id)
    assert job is not None and job.status is JobStatus.CANCELLED


def test_text_postgresql_cannot_hold_is_kept_as_an_escape(
    opened: Callable[..., PgJobStore]
) -> None:
    store = opened()
    job_id = reach(store, JobStatus.RUNNING)
    decision = JobDecision.failed("a\x00b", "trace \x00 end")
    assert store.write(lambda txn: verbs.finish(txn, job_id, decision, NOW + 5,
                                                cancelled=False, retry_policy=RetryPolicy()))
    job = store.get_job(job_id)
    assert job is not None
    assert (job.message, job.exception_trace) == ("a\\x00b", "trace \\x00 end")


@pytest.fixture(params=["optimistic", "locking"])
def read_mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both ways a write transaction reads: as a first attempt does (no row locks, versions
    checked at the end), and as a third attempt does (FOR NO KEY UPDATE)."""
    if request.param == "locking":
        monkeypatch.setattr(_postgres, "_OPTIMISTIC", 0)
    mode: str = request.param
    return mode


def test_every_verb_works_in_both_read_modes(
    opened: Callable[..., PgJobStore], read_mode: str
) -> None:
    store = opened()
    retry, done, held = create(store, new_job(), new_job(JobType.COMPACT), new_job(key="k"))
    policy = RetryPolicy(base_ms=1)
    out = store.write(lambda txn: verbs.dispatch(txn, {"FL": 2, "CO": 1}, 3, NOW + 1))
    assert {s.job_id for s in out.started} == {retry, done, held}
    assert store.write(lambda txn: verbs.set_progress(txn, done, Progress(1, 2, "half")))
    assert store.write(lambda txn: verbs.finish(txn, retry, JobDecision.retry("again"), NOW + 2,
                                                cancelled=False, retry_policy=policy))
    assert store.write(lambda txn: verbs.finish(txn, done, JobDecision.completed(), NOW + 2,
                                                cancelled=False, retry_policy=policy))
    store.write(lambda txn: verbs.request_cancel(txn, held, cancellable=True))
    assert store.write(lambda txn: verbs.take_cancel_requests(txn, 10)) == [held]
    store.write(lambda txn: verbs.accept_cancel(txn, held))
    assert store.write(lambda txn: verbs.finish(txn, held, JobDecision.completed(), NOW + 3,
                                                cancelled=True, retry_policy=policy))
    assert store.write(lambda txn: txn.due_ids(NOW + 10_000, 5)) == [(NOW + 1002, retry)]
    again = store.write(lambda txn: verbs.dispatch(txn, {"FL": 1}, 1, NOW + 10_000))
    assert [s.attempt for s in again.started] == [2]
    job = new_job(key="hourly")
    assert store.write(lambda txn: verbs.create_scheduled(txn, "hourly", 1, job, NOW))
    assert store.write(lambda txn: verbs.create_scheduled(txn, "hourly", 1, job, NOW)) is None
    store.cancel_job(store.list_jobs(JobFilter(idempotency_key="hourly"))[0].job_id)
    assert store.write(lambda txn: verbs.create_scheduled(txn, "hourly", 2, job, NOW))
    assert store.last_slot("hourly") == 2
    assert store.prune_history(NOW + 100_000) == 3  # done, held and the first hourly job
    seen = collections.Counter((j.status, j.job_type) for j in store.list_jobs())
    assert store.counts() == dict(seen) == {(JobStatus.RUNNING, FL): 1,
                                             (JobStatus.QUEUED, FL): 1}


def test_due_retries_of_every_type_in_due_order(
    opened: Callable[..., PgJobStore], read_mode: str
) -> None:
    store = opened()
    compact = reach(store, JobStatus.RETRYING, JobType.COMPACT, now=NOW + 2)
    flush = reach(store, JobStatus.RETRYING, FL, now=NOW)
    retention = reach(store, JobStatus.RETRYING, JobType.RETENTION, now=NOW + 1)
    due = store.write(lambda txn: txn.due_ids(due_at(NOW + 2), 10))
    assert due == [(due_at(NOW), flush), (due_at(NOW + 1), retention),
                   (due_at(NOW + 2), compact)]
    assert store.write(lambda txn: txn.due_ids(due_at(NOW + 1), 10)) == due[:2]
    assert store.write(lambda txn: txn.due_ids(due_at(NOW + 2), 1)) == due[:1]
    assert store.write(lambda txn: txn.next_due_after(due_at(NOW))) == due_at(NOW + 1)


# --------------------------------------------------------------------------- the layout

MIGRATING_CHILD = """
import json, sys
from kalam_actors.store._postgres import open_pg_store
print("ready", flush=True)
sys.stdin.readline()
with open_pg_store(sys.argv[1], schema=sys.argv[2]) as store:
    print(json.dumps(store.migrated), flush=True)
"""


def test_processes_opening_an_empty_schema_at_once_create_it_once(schema: str) -> None:
    children = [
        subprocess.Popen([sys.executable, "-c", MIGRATING_CHILD, POSTGRES_URL, schema],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
        for _ in range(4)
    ]
    try:
        for child in children:  # every child imported everything: start them together
            assert child.stdout is not None and child.stdout.readline() == "ready\n"
        for child in children:
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        outputs = [child.communicate(timeout=60) for child in children]
    finally:
        for child in children:
            child.kill()
    for child, (_, err) in zip(children, outputs, strict=True):
        assert child.returncode == 0, err
    migrated = [json.loads(out) for out, _ in outputs]
    assert sorted(migrated, key=str) == [None, None, None, [0, 1]]
    assert sql(f'SELECT version FROM "{schema}".kalam_schema') == [(1,)]


def test_opening_waits_for_a_migration_in_progress(
    schema: str, opened: Callable[..., PgJobStore]
) -> None:
    waiting: list[PgJobStore] = []
    with psycopg.connect(POSTGRES_URL) as conn:
        with conn.transaction():
            # Another process's migration: done, not yet committed, its lock still held.
            assert _postgres._ensure_schema(conn, schema, POSTGRES_URL) == (0, 1)
            opener = threading.Thread(target=lambda: waiting.append(opened()))
            opener.start()
            opener.join(timeout=0.5)
            assert opener.is_alive() and not waiting  # waiting for the lock
        opener.join(timeout=30)
    assert len(waiting) == 1 and waiting[0].migrated is None  # found the work done
    assert create(waiting[0], new_job())


def test_a_store_of_a_newer_layout_is_refused(
    schema: str, opened: Callable[..., PgJobStore]
) -> None:
    opened().close()
    sql(f'UPDATE "{schema}".kalam_schema SET version = 99')
    with pytest.raises(StoreError, match="layout version 99; this kalam-actors reads versions "
                                         "1 to 1"):
        opened()


def test_a_foreign_table_in_the_way_is_a_clear_error(
    schema: str, opened: Callable[..., PgJobStore]
) -> None:
    sql(f'CREATE SCHEMA "{schema}"')
    sql(f'CREATE TABLE "{schema}".jobs (x int)')
    with pytest.raises(StoreError, match=f"cannot open the job store .*schema {schema}.*jobs"):
        opened()


# --------------------------------------------------------------------------- URLs


def test_the_url_may_name_the_schema(schema: str) -> None:
    url = POSTGRES_URL + ("&" if "?" in POSTGRES_URL else "?") + f"schema={schema}"
    with open_pg_store(url) as store:
        assert store.schema == schema
        create(store, new_job())
    assert sql(f'SELECT count(*) FROM "{schema}".jobs') == [(1,)]


def test_an_unreachable_server_is_a_store_error_without_the_password() -> None:
    with pytest.raises(StoreError, match="cannot connect") as info:
        open_pg_store("postgresql://someone:secret@127.0.0.1:1/nothing", connect_timeout_s=1)
    assert "secret" not in str(info.value) and "someone:***@127.0.0.1:1" in str(info.value)


@pytest.mark.parametrize(("url", "schema"), [
    ("mysql://localhost/db", None),
    (POSTGRES_URL, "no-dashes"),
    (POSTGRES_URL, "1starts_with_a_digit"),
    (POSTGRES_URL, 'quote"d'),
])
def test_bad_urls_and_schema_names_are_refused(url: str, schema: str | None) -> None:
    with pytest.raises(InvalidParams):
        open_pg_store(url, schema=schema)
