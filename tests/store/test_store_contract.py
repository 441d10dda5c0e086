"""The store contract, run against every backend (``store_support.BACKENDS``).

Written against the verbs (each inside ``JobStore.write``), the StoreTxn methods they use and
JobStore's public face, never against a backend's layout: a backend that passes this suite can
serve the runtime. Wall-clock values are fixed integers (µs) handed to the verbs.
"""

from __future__ import annotations

import contextlib
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from runtime_support import ScriptedExecutor
from store_support import (
    MS,
    NOW,
    SECOND,
    Backend,
    assert_counts_in_step,
    create,
    due_at,
    in_txn,
    listed,
    move,
    new_job,
    reach,
    status_of,
)

from kalam_actors import (
    CancelNotAllowed,
    CorruptRecord,
    IdempotentConflict,
    InvalidParams,
    InvalidTransition,
    JobDecision,
    JobFilter,
    JobId,
    JobNotFound,
    JobStatus,
    JobStore,
    JobType,
    UnknownJobType,
)
from kalam_actors.model import TRANSITIONS, Progress, RetryPolicy
from kalam_actors.store import StoreTxn, verbs

FL, CO, RT, SE, CL = (JobType.FLUSH, JobType.COMPACT, JobType.RETENTION,
                      JobType.STREAM_EVICTION, JobType.CLEANUP)
NEW, QUEUED, RUNNING, RETRYING = (JobStatus.NEW, JobStatus.QUEUED, JobStatus.RUNNING,
                                  JobStatus.RETRYING)
COMPLETED, FAILED, CANCELLED, SKIPPED = (JobStatus.COMPLETED, JobStatus.FAILED,
                                         JobStatus.CANCELLED, JobStatus.SKIPPED)
ACTIVE = [NEW, QUEUED, RUNNING, RETRYING]
TERMINAL = [COMPLETED, FAILED, CANCELLED, SKIPPED]
DAY = 86_400 * SECOND
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
POLICY = RetryPolicy(base_ms=100, factor=2.0)


def at(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


def get(store: JobStore, job_id: str) -> Any:
    job = store.get_job(job_id)
    assert job is not None, f"[{job_id}] is gone"
    return job


def dispatch(store: JobStore, capacity: dict[str, int], free: int, now: int) -> verbs.Dispatch:
    return store.write(lambda txn: verbs.dispatch(txn, capacity, free, now))


def started(out: verbs.Dispatch) -> list[str]:
    return [s.job_id for s in out.started]


def finish(store: JobStore, job_id: str, decision: JobDecision, now: int, *,
           cancelled: bool = False, policy: RetryPolicy = POLICY) -> bool:
    return store.write(lambda txn: verbs.finish(txn, job_id, decision, now,
                                                cancelled=cancelled, retry_policy=policy))


def cancel(store: JobStore, job_id: str, now: int = NOW + SECOND, *,
           cancellable: bool = True) -> Any:
    return store.write(lambda txn: verbs.cancel(txn, job_id, now, cancellable=cancellable))


def request_cancel(store: JobStore, job_id: str, *, cancellable: bool = True) -> None:
    store.write(lambda txn: verbs.request_cancel(txn, job_id, cancellable=cancellable))


def cancel_requests(store: JobStore) -> list[str]:
    return in_txn(store, lambda txn: verbs.take_cancel_requests(txn, 100))


def verdict(store: JobStore, job_id: str) -> Any:
    return verbs.cancel_verdict(store.get_record(job_id), job_id)


def next_due_after(store: JobStore, now: int) -> int | None:
    return in_txn(store, lambda txn: txn.next_due_after(now))


def holder(store: JobStore, key: str) -> str | None:
    return in_txn(store, lambda txn: txn.active_holder(key))


# --------------------------------------------------------------------------- transitions

ALLOWED = [(old, new) for old in JobStatus for new in JobStatus if new in TRANSITIONS[old]]
REFUSED = [(old, new) for old in JobStatus for new in JobStatus if new not in TRANSITIONS[old]]


def _pair_id(pair: tuple[JobStatus, JobStatus]) -> str:
    return f"{pair[0].value}->{pair[1].value}"


@pytest.mark.parametrize("pair", ALLOWED, ids=_pair_id)
def test_every_allowed_move_is_made_and_indexed(
    store: JobStore, pair: tuple[JobStatus, JobStatus]
) -> None:
    old, new = pair
    job_id = reach(store, old, key="held")
    fields = {"rc": 1, "ra": NOW + 7 * SECOND} if new is RETRYING else {}
    move(store, job_id, new, NOW + 5, **fields)
    job = get(store, job_id)
    assert job.status is new and job.updated_at == at(NOW + 5)
    assert listed(store, JobFilter(status=new)) == [job_id]
    assert listed(store, JobFilter(status=old)) == []
    assert (job.finished_at == at(NOW + 5)) is new.is_terminal
    if new is RUNNING:
        assert job.started_at == at(NOW + 5)
    # The key is held while active, free once terminal.
    assert holder(store, "held") == (None if new.is_terminal else job_id)
    # The due index holds Retrying jobs only.
    assert next_due_after(store, NOW) == (NOW + 7 * SECOND if new is RETRYING else None)
    assert store.has_status(new) and not store.has_status(old)
    assert_counts_in_step(store)


@pytest.mark.parametrize("pair", REFUSED, ids=_pair_id)
def test_every_refused_move_raises_and_writes_nothing(
    store: JobStore, backend: Backend, pair: tuple[JobStatus, JobStatus]
) -> None:
    old, new = pair
    job_id = reach(store, old, key="held")
    before = backend.snapshot(store)
    with pytest.raises(InvalidTransition) as info:
        move(store, job_id, new, NOW + 5, rc=9, m="must not be written")
    assert (info.value.job_id, info.value.from_status, info.value.to_status) == (job_id, old, new)
    assert backend.snapshot(store) == before


def test_a_refused_change_leaves_the_rest_of_its_batch(store: JobStore) -> None:
    """The runtime applies many changes in one transaction and carries on past a refused one:
    the refusal must come before anything of it is written, in the store or in the record."""
    done = reach(store, COMPLETED)
    job_before = get(store, done)

    def batch(txn: StoreTxn) -> list[JobId]:
        made = verbs.create_jobs(txn, [new_job(key="k")], NOW + 5)
        rec = txn.require(done)
        rec_before = dict(rec)
        with pytest.raises(InvalidTransition):
            txn.move(rec, RUNNING, NOW + 5, m="must not be written")
        with pytest.raises(InvalidTransition):
            verbs.cancel(txn, done, NOW + 5, cancellable=True)
        with pytest.raises(IdempotentConflict):
            verbs.create_jobs(txn, [new_job(), new_job(key="k")], NOW + 5)
        assert rec == rec_before
        return made

    (made,) = store.write(batch)
    assert get(store, done) == job_before
    assert listed(store) == [done, made]
    assert_counts_in_step(store)


@pytest.mark.parametrize("terminal", TERMINAL, ids=lambda s: s.value)
def test_terminal_jobs_never_change(
    store: JobStore, backend: Backend, terminal: JobStatus
) -> None:
    job_id = reach(store, terminal, key="k")
    before = backend.snapshot(store)
    later = NOW + DAY
    with pytest.raises(InvalidTransition, match=f"Cannot cancel job in status {terminal.value}"):
        cancel(store, job_id, later)
    assert not finish(store, job_id, JobDecision.completed("again"), later)
    assert not finish(store, job_id, JobDecision.retry("again"), later)
    assert not in_txn(store, lambda txn: verbs.set_progress(txn, job_id, Progress(1)))
    request_cancel(store, job_id)
    store.write(lambda txn: verbs.accept_cancel(txn, job_id))
    store.write(lambda txn: verbs.admit_new(txn, later, 10))
    assert dispatch(store, {"FL": 10}, 10, later).started == []
    assert store.write(lambda txn: verbs.recover_running(
        txn, {"FL": True}, later, 10, verbs.Recovered())) == 0
    assert backend.snapshot(store) == before


def test_a_late_cancel_refusal_leaves_a_terminal_record_alone(
    store: JobStore, backend: Backend
) -> None:
    job_id = reach(store, RUNNING)
    request_cancel(store, job_id)
    finish(store, job_id, JobDecision.completed("finished first"), NOW + 5)
    before = backend.snapshot(store)
    store.write(lambda txn: verbs.refuse_cancel(txn, job_id, "this executor never stops"))
    assert backend.snapshot(store) == before
    assert verdict(store, job_id) == get(store, job_id)


# --------------------------------------------------------------------------- idempotency


@pytest.mark.parametrize("status", ACTIVE, ids=lambda s: s.value)
def test_an_active_job_holds_its_key(
    store: JobStore, backend: Backend, status: JobStatus
) -> None:
    first = reach(store, status, key="k")
    before = backend.snapshot(store)
    with pytest.raises(IdempotentConflict) as info:
        create(store, new_job(CO, key="k"))
    assert (info.value.existing_job_id, info.value.idempotency_key) == (first, "k")
    with pytest.raises(IdempotentConflict):
        store.create_job(CO, {}, idempotency_key="k")
    assert backend.snapshot(store) == before
    assert holder(store, "k") == first


@pytest.mark.parametrize("status", TERMINAL, ids=lambda s: s.value)
def test_a_terminal_job_frees_its_key(store: JobStore, status: JobStatus) -> None:
    first = reach(store, status, key="k")
    assert holder(store, "k") is None
    (second,) = create(store, new_job(key="k"))
    assert holder(store, "k") == second
    assert get(store, first).idempotency_key == "k"  # the record keeps its key
    assert listed(store, JobFilter(idempotency_key="k")) == [first, second]
    assert listed(store, JobFilter(idempotency_key="k", status=ACTIVE)) == [second]


def test_the_key_is_checked_in_the_creating_transaction(store: JobStore) -> None:
    def two_creates(txn: StoreTxn) -> tuple[str, str | None]:
        (first,) = verbs.create_jobs(txn, [new_job(key="k")], NOW)
        with pytest.raises(IdempotentConflict) as info:
            verbs.create_jobs(txn, [new_job(key="k")], NOW)
        assert info.value.existing_job_id == first
        # The holder ends within the same transaction: the key is free for the next create.
        txn.move(txn.require(first), JobStatus.CANCELLED, NOW + 1)
        (second,) = verbs.create_jobs(txn, [new_job(key="k")], NOW + 2)
        return second, txn.active_holder("k")

    second, held_by = store.write(two_creates)
    assert held_by == second and holder(store, "k") == second
    assert [j.status for j in store.list_jobs()] == [CANCELLED, QUEUED]


def test_bulk_create_with_a_key_twice_writes_nothing(store: JobStore, backend: Backend) -> None:
    before = backend.snapshot(store)
    with pytest.raises(InvalidParams, match="appears twice") as info:
        create(store, new_job(key="a"), new_job(), new_job(CO, key="a"))
    assert info.value.field == "idempotency_key"
    assert backend.snapshot(store) == before


def test_bulk_create_with_a_held_key_writes_nothing(store: JobStore, backend: Backend) -> None:
    held = reach(store, RUNNING, key="b")
    before = backend.snapshot(store)
    with pytest.raises(IdempotentConflict) as info:
        create(store, new_job(key="a"), new_job(), new_job(CO, key="b"))
    assert info.value.existing_job_id == held
    assert backend.snapshot(store) == before
    assert holder(store, "a") is None


def test_keys_are_exact_and_case_sensitive(store: JobStore) -> None:
    keys = ["key", "Key", "KEY", " key", "key ", "caf\u00e9", "cafe\u0301"]
    made = create(store, *(new_job(key=k) for k in keys))
    assert [holder(store, k) for k in keys] == made
    for key, job_id in zip(keys, made, strict=True):
        assert listed(store, JobFilter(idempotency_key=key)) == [job_id]


# --------------------------------------------------------------------------- the due index


def test_due_retries_start_first_and_later_ones_wait(store: JobStore) -> None:
    queued = reach(store, QUEUED)  # older than both retries
    due = reach(store, RETRYING, now=NOW + 1)
    later = reach(store, RETRYING, now=NOW + SECOND)  # due a second later
    now = due_at(NOW + 1)
    out = dispatch(store, {"FL": 10}, 10, now)
    assert started(out) == [due, queued]
    assert [s.attempt for s in out.started] == [2, 1]
    assert status_of(store, later) is RETRYING
    assert next_due_after(store, now) == due_at(NOW + SECOND)
    assert started(dispatch(store, {"FL": 10}, 10, due_at(NOW + SECOND) - 1)) == []
    assert started(dispatch(store, {"FL": 10}, 10, due_at(NOW + SECOND))) == [later]
    assert next_due_after(store, 0) is None


def test_due_retries_start_in_due_order(store: JobStore) -> None:
    jobs = [reach(store, RUNNING) for _ in range(3)]
    for job_id, due in zip(jobs, (3, 1, 2), strict=True):
        finish(store, job_id, JobDecision.retry("again", backoff_ms=due * 1000), NOW)
    assert next_due_after(store, NOW) == NOW + SECOND
    assert next_due_after(store, NOW + SECOND) == NOW + 2 * SECOND
    assert next_due_after(store, NOW + 3 * SECOND) is None
    out = dispatch(store, {"FL": 10}, 10, NOW + 3 * SECOND)
    assert started(out) == [jobs[1], jobs[2], jobs[0]]


@pytest.mark.parametrize("leave", ["cancel", "fail", "run"])
def test_leaving_retrying_leaves_the_due_index(store: JobStore, leave: str) -> None:
    job_id = reach(store, RETRYING)
    if leave == "cancel":
        cancel(store, job_id)
    elif leave == "fail":
        move(store, job_id, FAILED, NOW + 5)
    else:
        assert started(dispatch(store, {"FL": 1}, 1, due_at(NOW))) == [job_id]
    assert next_due_after(store, 0) is None
    assert started(dispatch(store, {"FL": 1}, 1, NOW + DAY)) == []


def test_a_due_retry_is_not_hidden_behind_retries_of_a_full_type(store: JobStore) -> None:
    for i in range(4):
        reach(store, RETRYING, SE, now=NOW + i)
    fl_retry = reach(store, RETRYING, FL, now=NOW + 10)
    reach(store, QUEUED, FL)
    out = dispatch(store, {"SE": 0, "FL": 1}, 1, due_at(NOW + 10))
    assert started(out) == [fl_retry]


# --------------------------------------------------------------------------- dispatch


def test_dispatch_respects_the_capacity_of_each_type(store: JobStore) -> None:
    co1, fl1, co2, fl2, co3, fl3 = create(store, *(new_job(t) for t in (CO, FL) * 3))
    assert started(dispatch(store, {"FL": 1, "CO": 5}, 10, NOW + 1)) == [co1, fl1, co2, co3]
    assert started(dispatch(store, {"FL": 0, "CO": 5}, 10, NOW + 2)) == []
    assert started(dispatch(store, {"CO": 5}, 10, NOW + 2)) == []  # a type absent: no room
    assert started(dispatch(store, {"FL": 5}, 10, NOW + 3)) == [fl2, fl3]
    assert_counts_in_step(store)


def test_dispatch_fills_the_free_slots_in_creation_order_across_types(store: JobStore) -> None:
    # "CO-" < "FL-" < "RT-" as text: creation order is not the ids' text order.
    made = create(store, new_job(RT), new_job(FL), new_job(CO), new_job(FL), new_job(RT))
    room = {"FL": 5, "CO": 5, "RT": 5}
    assert started(dispatch(store, room, 0, NOW + 1)) == []
    assert started(dispatch(store, room, 2, NOW + 1)) == made[:2]
    assert started(dispatch(store, room, 2, NOW + 2)) == made[2:4]
    assert started(dispatch(store, room, 2, NOW + 3)) == made[4:]
    assert not store.has_status(QUEUED)


def test_dispatch_starts_an_attempt(store: JobStore) -> None:
    (job_id,) = create(store, new_job(CO, {"table": "t"}, timeout_s=30))
    (first,) = dispatch(store, {"CO": 1}, 1, NOW + 1).started
    assert (first.job_id, first.job_type, first.attempt, first.timeout_s) == (
        job_id, CO, 1, 30.0)
    assert orjson.loads(first.params_text) == {"table": "t"}
    job = get(store, job_id)
    assert job.status is RUNNING and job.started_at == at(NOW + 1)
    # A retry starts clean: the last attempt's progress and message do not carry over.
    store.write(lambda txn: verbs.set_progress(txn, job_id, Progress(5, 10, "half")))
    finish(store, job_id, JobDecision.retry("flaky"), NOW + 2)
    assert get(store, job_id).progress == Progress(5, 10, "half")
    (second,) = dispatch(store, {"CO": 1}, 1, NOW + DAY).started
    assert second.attempt == 2
    job = get(store, job_id)
    assert job.progress is None and job.message is None and job.started_at == at(NOW + DAY)


# --------------------------------------------------------------------------- cancel


@pytest.mark.parametrize("status", [NEW, QUEUED, RETRYING], ids=lambda s: s.value)
def test_cancel_ends_a_job_that_is_not_running(store: JobStore, status: JobStatus) -> None:
    job_id = reach(store, status, key="k")
    job = cancel(store, job_id, NOW + 5)
    assert job.job_id == job_id and job.status is CANCELLED
    assert job.message == "Cancelled by user" and job.finished_at == at(NOW + 5)
    assert get(store, job_id) == job
    assert holder(store, "k") is None and next_due_after(store, 0) is None
    assert_counts_in_step(store)


def test_a_running_job_is_cancelled_by_request(store: JobStore, backend: Backend) -> None:
    job_id = reach(store, RUNNING)
    before = backend.snapshot(store)
    assert cancel(store, job_id) is None  # only the runtime running it can stop it
    assert backend.snapshot(store) == before
    assert not store.has_cancel_requests()
    request_cancel(store, job_id)
    assert cancel_requests(store) == [job_id] and store.has_cancel_requests()
    assert verdict(store, job_id) is None  # asked, not yet answered
    recorded = backend.snapshot(store)
    request_cancel(store, job_id)  # asking twice records one request
    assert backend.snapshot(store) == recorded
    assert status_of(store, job_id) is RUNNING


def test_an_accepted_cancel_ends_the_job_cancelled(store: JobStore) -> None:
    job_id = reach(store, RUNNING, key="k")
    request_cancel(store, job_id)
    store.write(lambda txn: verbs.accept_cancel(txn, job_id))
    assert cancel_requests(store) == []
    answer = verdict(store, job_id)
    assert answer.job_id == job_id and answer.status is RUNNING  # ends when its attempt returns
    assert finish(store, job_id, JobDecision.completed("stopped early"), NOW + 5, cancelled=True)
    job = get(store, job_id)
    assert job.status is CANCELLED and job.message == "Cancelled by user"
    assert holder(store, "k") is None
    assert verdict(store, job_id) == job


def test_a_refused_cancel_is_answered_with_its_reason(store: JobStore) -> None:
    job_id = reach(store, RUNNING)
    request_cancel(store, job_id)
    store.write(lambda txn: verbs.refuse_cancel(txn, job_id, "it never stops halfway"))
    assert cancel_requests(store) == []
    answer = verdict(store, job_id)
    assert isinstance(answer, CancelNotAllowed) and answer.reason == "it never stops halfway"
    assert status_of(store, job_id) is RUNNING
    request_cancel(store, job_id)  # a new request forgets the old answer
    assert verdict(store, job_id) is None and cancel_requests(store) == [job_id]


def test_cancel_verdict(store: JobStore) -> None:
    unknown = JobId.new(FL)
    with pytest.raises(JobNotFound):
        verbs.cancel_verdict(None, unknown)
    done = reach(store, COMPLETED)
    assert verdict(store, done) == get(store, done)
    assert verdict(store, reach(store, RUNNING)) is None


@pytest.mark.parametrize("status", [NEW, QUEUED], ids=lambda s: s.value)
def test_a_job_that_cannot_be_cancelled_can_be_before_it_starts(
    store: JobStore, status: JobStatus
) -> None:
    job_id = reach(store, status)
    assert cancel(store, job_id, cancellable=False).status is CANCELLED


def test_a_job_that_cannot_be_cancelled_is_refused_once_started(
    store: JobStore, backend: Backend
) -> None:
    retrying = reach(store, RETRYING)
    running = reach(store, RUNNING)
    before = backend.snapshot(store)
    with pytest.raises(CancelNotAllowed, match="once an attempt has started"):
        cancel(store, retrying, cancellable=False)
    with pytest.raises(CancelNotAllowed):
        request_cancel(store, running, cancellable=False)
    assert backend.snapshot(store) == before


@pytest.mark.parametrize("terminal", TERMINAL, ids=lambda s: s.value)
def test_cancel_of_a_terminal_job_is_an_invalid_transition(
    store: JobStore, backend: Backend, terminal: JobStatus
) -> None:
    job_id = reach(store, terminal)
    before = backend.snapshot(store)
    with pytest.raises(InvalidTransition) as info:
        cancel(store, job_id)
    assert (info.value.from_status, info.value.to_status) == (terminal, CANCELLED)
    with pytest.raises(InvalidTransition):
        store.cancel_job(job_id)
    assert backend.snapshot(store) == before


def test_cancel_of_an_unknown_job(store: JobStore, backend: Backend) -> None:
    unknown = JobId.new(FL)
    before = backend.snapshot(store)
    with pytest.raises(JobNotFound) as info:
        cancel(store, unknown)
    assert info.value.job_id == unknown
    with pytest.raises(JobNotFound):
        request_cancel(store, unknown)
    with pytest.raises(JobNotFound):
        store.cancel_job(unknown)
    assert backend.snapshot(store) == before


def test_job_store_cancel_job(backend: Backend, tmp_path: Path) -> None:
    with backend.open(tmp_path / "jobs", [ScriptedExecutor(RT, cancellable=False)]) as store:
        queued = store.create_job(FL, {})
        assert store.cancel_job(queued).status is CANCELLED
        # No executor to ask: the seed's rule, Cleanup cannot be cancelled once started.
        with pytest.raises(CancelNotAllowed):
            store.cancel_job(reach(store, RETRYING, CL))
        assert store.cancel_job(reach(store, RETRYING, FL)).status is CANCELLED
        # The executor given says its jobs cannot be cancelled.
        with pytest.raises(CancelNotAllowed):
            store.cancel_job(reach(store, RETRYING, RT))
        # A running job: the request is recorded; no runtime answers within wait_s.
        running = reach(store, RUNNING)
        with pytest.raises(CancelNotAllowed, match="did not answer"):
            store.cancel_job(running, wait_s=0)
        assert cancel_requests(store) == [running]


# --------------------------------------------------------------------------- finish


@pytest.mark.parametrize(("decision", "status", "message"), [
    (JobDecision.completed("flushed 3 rows"), COMPLETED, "flushed 3 rows"),
    (JobDecision.skipped("nothing to flush"), SKIPPED, "nothing to flush"),
    (JobDecision.failed("boom", "Traceback: boom"), FAILED, "boom"),
], ids=["completed", "skipped", "failed"])
def test_finish_records_the_outcome(
    store: JobStore, decision: JobDecision, status: JobStatus, message: str
) -> None:
    job_id = reach(store, RUNNING, key="k")
    assert finish(store, job_id, decision, NOW + 5)
    job = get(store, job_id)
    assert (job.status, job.message, job.finished_at) == (status, message, at(NOW + 5))
    assert job.exception_trace == decision.exception_trace
    assert holder(store, "k") is None
    assert_counts_in_step(store)


def test_an_accepted_cancel_wins_over_the_outcome(store: JobStore) -> None:
    job_id = reach(store, RUNNING)
    assert finish(store, job_id, JobDecision.retry("flaky"), NOW + 5, cancelled=True)
    job = get(store, job_id)
    assert job.status is CANCELLED and job.message == "Cancelled by user"


def test_a_retry_waits_the_policy_backoff(store: JobStore) -> None:
    (job_id,) = create(store, new_job(max_retries=3, key="k"))
    dispatch(store, {"FL": 1}, 1, NOW + 1)
    assert finish(store, job_id, JobDecision.retry("first", exception_trace="T1"), NOW + 2)
    job = get(store, job_id)
    assert (job.status, job.retry_count, job.message) == (RETRYING, 1, None)
    assert job.run_after == at(NOW + 2 + 100 * MS) and job.exception_trace == "T1"
    assert holder(store, "k") == job_id  # a retrying job still holds its key
    dispatch(store, {"FL": 1}, 1, NOW + 2 + 100 * MS)
    assert finish(store, job_id, JobDecision.retry("second"), NOW + SECOND)
    job = get(store, job_id)
    assert job.retry_count == 2 and job.run_after == at(NOW + SECOND + 200 * MS)
    assert job.exception_trace == "T1\nsecond"  # no trace given: the message stands in


def test_a_retry_waits_the_backoff_its_executor_asked_for(store: JobStore) -> None:
    job_id = reach(store, RUNNING)
    assert finish(store, job_id, JobDecision.retry("busy", backoff_ms=5_000), NOW + 5)
    assert next_due_after(store, NOW) == NOW + 5 + 5 * SECOND
    assert get(store, job_id).run_after == at(NOW + 5 + 5 * SECOND)


@pytest.mark.parametrize("max_retries", [0, 1, 2])
def test_retries_end_failed_once_spent(store: JobStore, max_retries: int) -> None:
    (job_id,) = create(store, new_job(max_retries=max_retries, key="k"))
    now = NOW
    for attempt in range(1, max_retries + 2):
        now += DAY
        assert started(dispatch(store, {"FL": 1}, 1, now)) == [job_id]
        assert finish(store, job_id, JobDecision.retry(f"attempt {attempt}"), now + 1)
    job = get(store, job_id)
    assert job.status is FAILED and job.retry_count == max_retries
    assert job.message == f"Max retries exceeded: attempt {max_retries + 1}"
    assert job.exception_trace is not None and job.exception_trace.endswith(
        f"attempt {max_retries + 1}")
    assert holder(store, "k") is None and next_due_after(store, 0) is None


@pytest.mark.parametrize("status", [NEW, QUEUED, RETRYING, *TERMINAL],
                         ids=lambda s: s.value)
def test_finish_of_a_job_that_is_not_running_records_nothing(
    store: JobStore, backend: Backend, status: JobStatus
) -> None:
    job_id = reach(store, status)
    before = backend.snapshot(store)
    assert not finish(store, job_id, JobDecision.completed(), NOW + 5)
    assert not finish(store, JobId.new(FL), JobDecision.completed(), NOW + 5)
    assert backend.snapshot(store) == before


# --------------------------------------------------------------------------- recovery


def test_recovery_leaves_no_job_running(store: JobStore) -> None:
    requested = reach(store, RUNNING, FL, key="a")
    request_cancel(store, requested)
    rerun = reach(store, RUNNING, FL, key="b")
    spent = reach(store, RUNNING, FL, max_retries=0)
    not_rerun = reach(store, RUNNING, CO)
    queued = reach(store, QUEUED)
    out = verbs.Recovered()
    looked = store.write(lambda txn: verbs.recover_running(txn, {"FL": True, "CO": False},
                                                           NOW + DAY, 10, out))
    assert looked == 4 and (out.cancelled, out.retried, out.failed) == (1, 1, 2)
    job = get(store, requested)
    assert job.status is CANCELLED and job.message == "Cancelled by user"
    job = get(store, rerun)
    assert (job.status, job.retry_count, job.run_after) == (RETRYING, 1, at(NOW + DAY))
    assert "Job was running when server shut down" in job.exception_trace
    assert holder(store, "b") == rerun and holder(store, "a") is None
    for job_id in (spent, not_rerun):
        job = get(store, job_id)
        assert (job.status, job.message) == (FAILED, "Server restarted")
    assert status_of(store, queued) is QUEUED
    assert not store.has_status(RUNNING) and cancel_requests(store) == []
    assert started(dispatch(store, {"FL": 1}, 1, NOW + DAY)) == [rerun]  # due at once
    assert_counts_in_step(store)


def test_recovery_works_in_batches(store: JobStore) -> None:
    for _ in range(5):
        reach(store, RUNNING)
    out = verbs.Recovered()
    sizes = [store.write(lambda txn: verbs.recover_running(txn, {}, NOW + DAY, 2, out))
             for _ in range(4)]
    assert sizes == [2, 2, 1, 0] and out.failed == 5
    assert not store.has_status(RUNNING)


def test_clear_cancel_requests(store: JobStore) -> None:
    jobs = [reach(store, RUNNING) for _ in range(3)]
    for job_id in jobs:
        request_cancel(store, job_id)
    assert sorted(cancel_requests(store)) == sorted(jobs)
    store.write(verbs.clear_cancel_requests)
    assert cancel_requests(store) == [] and not store.has_cancel_requests()


# --------------------------------------------------------------------------- admission


def test_admit_new_queues_new_jobs_in_batches(store: JobStore) -> None:
    new = create(store, new_job(CO), new_job(FL), new_job(CO), status=NEW)
    queued = reach(store, QUEUED)
    assert store.write(lambda txn: verbs.admit_new(txn, NOW + 5, 2))  # more may remain
    (left,) = listed(store, JobFilter(status=NEW))
    assert not store.write(lambda txn: verbs.admit_new(txn, NOW + 6, 2))
    assert not store.has_status(NEW)
    # Admitted in any order: dispatch takes Queued jobs in creation order all the same.
    assert listed(store, JobFilter(status=QUEUED)) == [*new, queued]
    assert {j: get(store, j).updated_at for j in new} == {
        j: at(NOW + 6 if j == left else NOW + 5) for j in new}
    assert_counts_in_step(store)


def test_a_job_store_submits_new_jobs(store: JobStore) -> None:
    job_id = store.create_job(FL, '{"namespace_id": "ns"}', idempotency_key="k",
                              max_retries=5, timeout_s=2.5)
    job = get(store, job_id)
    assert (job.status, job.job_type, job.params) == (NEW, FL, {"namespace_id": "ns"})
    assert (job.idempotency_key, job.max_retries, job.timeout_s) == ("k", 5, 2.5)
    assert job.retry_count == 0 and job.started_at is None and job.created_at == job.updated_at
    assert holder(store, "k") == job_id


# --------------------------------------------------------------------------- schedules


def test_a_schedule_slot_creates_its_job_once(store: JobStore) -> None:
    job = new_job(key="hourly")

    def slot(n: int) -> JobId | None:
        return store.write(lambda txn: verbs.create_scheduled(txn, "hourly", n, job, NOW + n))

    assert store.last_slot("hourly") is None
    first = slot(5)
    assert first is not None and store.last_slot("hourly") == 5
    assert slot(5) is None and slot(4) is None

    def while_held(txn: StoreTxn) -> None:
        with pytest.raises(IdempotentConflict):
            verbs.create_scheduled(txn, "hourly", 6, job, NOW + 6)

    store.write(while_held)
    assert store.last_slot("hourly") == 6  # the slot counts as served
    assert listed(store) == [first]
    cancel(store, first)
    assert slot(6) is None
    second = slot(7)
    assert second is not None and listed(store) == [first, second]
    assert store.last_slot("other") is None


# --------------------------------------------------------------------------- history


def test_prune_deletes_only_terminal_jobs_finished_before_the_cutoff(store: JobStore) -> None:
    old = NOW - 10 * DAY
    gone = [reach(store, status, job_type, now=old)
            for status, job_type in zip(TERMINAL, (FL, CO, RT, FL), strict=True)]
    finished_late = reach(store, RUNNING, now=old + 1)
    move(store, finished_late, COMPLETED, NOW - DAY)
    active = [reach(store, status, now=old + 2) for status in ACTIVE]
    young = reach(store, COMPLETED, CO, now=NOW - DAY)
    assert store.prune_history(NOW - 7 * DAY) == 4
    assert all(store.get_job(j) is None for j in gone)
    assert set(listed(store)) == {finished_late, *active, young}
    assert_counts_in_step(store)
    assert store.prune_history(NOW - 7 * DAY) == 0
    assert store.prune_history(NOW) == 2  # finished_late and young
    assert set(listed(store)) == set(active)


def test_prune_works_in_bounded_batches(store: JobStore) -> None:
    for i in range(7):
        reach(store, COMPLETED, (FL, CO)[i % 2], now=NOW - 30 * DAY + i)
    reports: list[int] = []
    assert store.prune_history(NOW, batch_size=3, on_batch=reports.append) == 7
    assert reports == [3, 6, 7]
    assert listed(store) == [] and store.counts() == {}


def test_prune_stops_when_cancelled_between_batches(store: JobStore) -> None:
    for i in range(6):
        reach(store, COMPLETED, now=NOW - 30 * DAY + i)
    asked = iter([False, True])
    assert store.prune_history(NOW, batch_size=2, cancelled=lambda: next(asked)) == 2
    assert len(listed(store)) == 4


def test_prune_steps_over_an_unreadable_record(store: JobStore, backend: Backend) -> None:
    old = [reach(store, COMPLETED, now=NOW - 30 * DAY + i) for i in range(3)]
    backend.corrupt(store, old[1], b"\x00garbage")
    assert store.prune_history(NOW) == 2
    assert store.get_job(old[0]) is None and store.get_job(old[2]) is None
    with pytest.raises(CorruptRecord):
        store.get_job(old[1])


# --------------------------------------------------------------------------- listing


def test_listing_is_in_creation_order_across_types(store: JobStore) -> None:
    made = create(store, new_job(CO), new_job(FL), new_job(RT), new_job(FL), new_job(CO))
    assert listed(store) == made
    assert listed(store, JobFilter(newest_first=True)) == made[::-1]
    assert listed(store, JobFilter(status=QUEUED)) == made
    assert listed(store, JobFilter(status=QUEUED, newest_first=True)) == made[::-1]
    assert listed(store, JobFilter(newest_first=True, limit=2)) == made[:2:-1]
    assert [row.job_id for row in store.system_jobs()] == made


def test_listing_filters(store: JobStore) -> None:
    co1, fl1, co2, fl2 = create(store, new_job(CO), new_job(FL), new_job(CO), new_job(FL))
    cancel(store, fl1)
    (keyed,) = create(store, new_job(FL, key="users"))
    everything = [co1, fl1, co2, fl2, keyed]
    assert listed(store, JobFilter(status=QUEUED)) == [co1, co2, fl2, keyed]
    assert listed(store, JobFilter(status=[QUEUED, CANCELLED])) == everything
    assert listed(store, JobFilter(status=[RUNNING, FAILED])) == []
    assert listed(store, JobFilter(job_type=CO)) == [co1, co2]
    assert listed(store, JobFilter(job_type=[FL, CO])) == everything
    assert listed(store, JobFilter(job_type=FL, status=CANCELLED)) == [fl1]
    assert listed(store, JobFilter(job_id_prefix="FL-")) == [fl1, fl2, keyed]
    assert listed(store, JobFilter(job_id_prefix="F")) == [fl1, fl2, keyed]
    assert listed(store, JobFilter(job_id_prefix=fl2)) == [fl2]
    assert listed(store, JobFilter(job_id_prefix="RT-")) == []
    assert listed(store, JobFilter(job_id_prefix="CO-", job_type=FL)) == []
    assert listed(store, JobFilter(idempotency_key="users")) == [keyed]
    assert listed(store, JobFilter(idempotency_key="users", status=[NEW, QUEUED])) == [keyed]
    assert listed(store, JobFilter(idempotency_key="users", status=CANCELLED)) == []
    assert listed(store, JobFilter(idempotency_key="nobody")) == []
    assert listed(store, JobFilter(limit=2)) == [co1, fl1]
    assert listed(store, JobFilter(limit=0)) == []
    assert listed(store, JobFilter(status=QUEUED, limit=3, newest_first=True)) == [
        keyed, fl2, co2]
    with pytest.raises(InvalidParams, match="limit"):
        store.list_jobs(JobFilter(limit=-1))


@pytest.mark.parametrize("job_filter", [
    pytest.param(JobFilter(idempotency_key=""), id="empty-key"),
    pytest.param(JobFilter(idempotency_key="", status=QUEUED), id="empty-key-active"),
    pytest.param(JobFilter(idempotency_key="k" * 600, status=QUEUED), id="long-key-active"),
    pytest.param(JobFilter(idempotency_key="\udcff"), id="surrogate-key"),
    pytest.param(JobFilter(idempotency_key="\udcff", status=QUEUED), id="surrogate-key-active"),
    pytest.param(JobFilter(job_id_prefix="FL-\udcff"), id="surrogate-prefix"),
    pytest.param(JobFilter(job_id_prefix="fl-"), id="lowercase-prefix"),
])
def test_a_filter_that_matches_nothing_lists_nothing(
    store: JobStore, job_filter: JobFilter
) -> None:
    create(store, new_job(FL, key="k"))
    with contextlib.suppress(InvalidParams):  # refusing the filter is as good
        assert store.list_jobs(job_filter) == []


# --------------------------------------------------------------------------- counts, progress


def test_counts_stay_in_step_with_every_verb(store: JobStore) -> None:
    steps: list[Any] = [
        lambda: create(store, *(new_job(t) for t in (FL, CO, RT, FL, CO))),
        lambda: create(store, new_job(SE), new_job(FL), status=NEW),
        lambda: store.write(lambda txn: verbs.admit_new(txn, NOW + 1, 10)),
        lambda: dispatch(store, {"FL": 2, "CO": 1, "SE": 1}, 10, NOW + 2),
    ]
    for step in steps:
        step()
        assert_counts_in_step(store)
    running = listed(store, JobFilter(status=RUNNING))
    decisions = [JobDecision.completed(), JobDecision.retry("again"), JobDecision.failed("no"),
                 JobDecision.skipped("none")]
    for job_id, decision in zip(running, decisions, strict=True):
        finish(store, job_id, decision, NOW + 3)
        assert_counts_in_step(store)
    for job_id in listed(store, JobFilter(status=QUEUED))[:2]:
        cancel(store, job_id)
    dispatch(store, {"FL": 5, "CO": 5, "RT": 5}, 1, NOW + 4)
    assert_counts_in_step(store)
    store.write(lambda txn: verbs.recover_running(txn, {}, NOW + 5, 100, verbs.Recovered()))
    assert_counts_in_step(store)
    store.prune_history(NOW + DAY)
    assert_counts_in_step(store)
    assert sum(store.counts().values()) == len(store.list_jobs()) > 0


def test_progress_is_recorded_for_a_running_job_only(store: JobStore) -> None:
    running = reach(store, RUNNING)
    progress = Progress(3, 10, "batch 1 of 10")
    assert in_txn(store, lambda txn: verbs.set_progress(txn, running, progress))
    assert get(store, running).progress == progress
    assert get(store, running).status is RUNNING
    for other in (reach(store, QUEUED), reach(store, COMPLETED), JobId.new(FL)):
        assert not in_txn(store, lambda txn, j=other: verbs.set_progress(txn, j, progress))
        if store.get_job(other) is not None:
            assert get(store, other).progress is None


def test_has_status_and_has_cancel_requests(store: JobStore) -> None:
    assert not any(store.has_status(s) for s in JobStatus)
    assert not store.has_cancel_requests()
    for status in JobStatus:
        reach(store, status)
    assert all(store.has_status(s) for s in JobStatus)


# --------------------------------------------------------------------------- damaged records

DAMAGE = [
    pytest.param(b"\x00garbage", id="not-json"),
    pytest.param(b"[1,2,3]", id="not-a-record"),
    pytest.param(None, id="newer-schema"),
]


def _damage(raw: bytes | None, job_id: str) -> bytes:
    return orjson.dumps({"v": 99, "id": job_id, "s": "Q"}) if raw is None else raw


@pytest.mark.parametrize("raw", DAMAGE)
def test_an_unreadable_queued_job_is_quarantined_and_work_goes_on(
    store: JobStore, backend: Backend, raw: bytes | None
) -> None:
    a, bad, c = create(store, new_job(), new_job(), new_job())
    backend.corrupt(store, bad, _damage(raw, bad))
    with pytest.raises(CorruptRecord) as info:
        store.get_job(bad)
    assert info.value.job_id == bad
    out = dispatch(store, {"FL": 3}, 3, NOW + 1)
    assert started(out) == [a, c] and out.again  # its slot is free: look again
    assert listed(store, JobFilter(status=QUEUED)) == []
    assert store.counts() == {(RUNNING, FL): 2}
    out = dispatch(store, {"FL": 3}, 3, NOW + 2)
    assert out.started == [] and not out.again
    (d,) = create(store, new_job())
    assert started(dispatch(store, {"FL": 3}, 3, NOW + 3)) == [d]
    with pytest.raises(CorruptRecord):  # the record is kept, and still names the damage
        store.get_job(bad)
    with pytest.raises(CorruptRecord):
        cancel(store, bad)


def test_an_unreadable_retrying_job_leaves_the_due_index(
    store: JobStore, backend: Backend
) -> None:
    bad = reach(store, RETRYING)
    good = reach(store, RETRYING, now=NOW + 1)
    backend.corrupt(store, bad, b"\x00garbage")
    out = dispatch(store, {"FL": 2}, 2, NOW + DAY)
    assert started(out) == [good] and out.again
    assert next_due_after(store, 0) is None
    assert dispatch(store, {"FL": 2}, 2, NOW + DAY).started == []
    assert store.counts() == {(RUNNING, FL): 1}


def test_an_unreadable_running_job_is_quarantined(store: JobStore, backend: Backend) -> None:
    finished, recovered, good = reach(store, RUNNING), reach(store, RUNNING), reach(store, RUNNING)
    for job_id in (finished, recovered):
        backend.corrupt(store, job_id, b"\x00garbage")
    assert not in_txn(store, lambda txn: verbs.set_progress(txn, finished, Progress(1)))
    assert not finish(store, finished, JobDecision.completed(), NOW + 5)
    out = verbs.Recovered()
    assert store.write(lambda txn: verbs.recover_running(txn, {}, NOW + 6, 10, out)) == 2
    assert out.failed == 1 and status_of(store, good) is FAILED
    assert not store.has_status(RUNNING)
    assert store.counts() == {(FAILED, FL): 1}


def test_an_unreadable_new_job_is_quarantined_at_admission(
    store: JobStore, backend: Backend
) -> None:
    bad, good = create(store, new_job(), new_job(), status=NEW)
    backend.corrupt(store, bad, b"[]")
    assert not store.write(lambda txn: verbs.admit_new(txn, NOW + 1, 10))
    assert not store.has_status(NEW)
    assert listed(store, JobFilter(status=QUEUED)) == [good]


# --------------------------------------------------------------------------- the door


def _deep(levels: int, make: Any) -> Any:
    node: Any = "leaf"
    for _ in range(levels):
        node = make(node)
    return {"deep": node}


HOSTILE_PARAMS = [
    pytest.param("{not json", id="bad-json"),
    pytest.param('{"a": NaN}', id="json-nan"),
    pytest.param("[1, 2]", id="json-list"),
    pytest.param("null", id="json-null"),
    pytest.param(b"\xff\xfe", id="bad-utf8"),
    pytest.param(["a"], id="a-list"),
    pytest.param(42, id="a-number"),
    pytest.param(None, id="none"),
    pytest.param({"x": math.nan}, id="nan"),
    pytest.param({"x": [1.0, -math.inf]}, id="infinity"),
    pytest.param({"x": 1 << 64}, id="int-beyond-64-bits"),
    pytest.param({"x": -(1 << 63) - 1}, id="int-below-64-bits"),
    pytest.param({"x": "bad \udcff"}, id="lone-surrogate"),
    pytest.param({"\udcff": 1}, id="lone-surrogate-key"),
    pytest.param({1: "a"}, id="int-key"),
    pytest.param({"x": {1, 2}}, id="a-set"),
    pytest.param({"x": b"bytes"}, id="bytes-value"),
    pytest.param({"x": object()}, id="an-object"),
    pytest.param(_deep(40, lambda n: {"x": n}), id="deep-dicts"),
    pytest.param(_deep(40, lambda n: [n]), id="deep-lists"),
    pytest.param(_deep(10_000, lambda n: (n,)), id="deep-tuples"),
    pytest.param("x" * (2 << 20), id="huge-text"),
    pytest.param({"x": "y" * (1 << 20)}, id="huge-dict"),
]


@pytest.mark.parametrize("params", HOSTILE_PARAMS)
def test_hostile_params_are_refused_at_the_door(
    store: JobStore, backend: Backend, params: Any
) -> None:
    before = backend.snapshot(store)
    with pytest.raises(InvalidParams):
        store.create_job(FL, params)
    assert backend.snapshot(store) == before


@pytest.mark.parametrize(("key", "match"), [
    ("", "must not be empty"),
    ("k" * 257, "the limit is 256"),
    ("\u00e9" * 256, "bytes in UTF-8"),
    ("a\x00b", "NUL"),
    ("\udcff", "not valid Unicode"),
    (5, "must be a string"),
    (b"k", "must be a string"),
])
def test_hostile_keys_are_refused_at_the_door(
    store: JobStore, backend: Backend, key: Any, match: str
) -> None:
    before = backend.snapshot(store)
    with pytest.raises(InvalidParams, match=match) as info:
        store.create_job(FL, {}, idempotency_key=key)
    assert info.value.field == "idempotency_key"
    assert backend.snapshot(store) == before


@pytest.mark.parametrize(("option", "value"), [
    ("max_retries", -1), ("max_retries", 1001), ("max_retries", True), ("max_retries", 2.0),
    ("max_retries", "3"), ("max_retries", None),
    ("timeout_s", 0), ("timeout_s", -1.0), ("timeout_s", math.nan), ("timeout_s", math.inf),
    ("timeout_s", True), ("timeout_s", "5"), ("timeout_s", 366 * 86_400),
])
def test_hostile_options_are_refused_at_the_door(
    store: JobStore, backend: Backend, option: str, value: Any
) -> None:
    before = backend.snapshot(store)
    with pytest.raises(InvalidParams) as info:
        store.create_job(FL, {}, **{option: value})
    assert info.value.field == option
    assert backend.snapshot(store) == before


def test_an_unknown_type_is_refused_at_the_door(store: JobStore, backend: Backend) -> None:
    before = backend.snapshot(store)
    for job_type in ("Vacuum", "", None, 3):
        with pytest.raises(UnknownJobType):
            store.create_job(job_type, {})  # type: ignore[arg-type]
    assert backend.snapshot(store) == before


def test_the_executor_given_checks_params_at_the_door(backend: Backend, tmp_path: Path) -> None:
    with backend.open(tmp_path / "jobs", [ScriptedExecutor(FL)]) as store:
        before = backend.snapshot(store)
        with pytest.raises(InvalidParams, match="'bad' is not allowed") as info:
            store.create_job(FL, {"bad": 1})
        assert info.value.field == "bad"
        assert backend.snapshot(store) == before
        assert store.create_job(FL, {"good": 1})


def test_values_at_the_limits_are_stored_as_given(store: JobStore) -> None:
    params = {"max": (1 << 64) - 1, "min": -(1 << 63), "text": "ünï ✓ \U0001f600",
              "nested": [{"a": [None, True, 1.5]}]}
    keys = ["k" * 256, "\u00e9" * 255]  # 256 characters; 510 bytes of UTF-8
    made = [store.create_job(FL, params, idempotency_key=k, max_retries=1000,
                             timeout_s=365 * 86_400) for k in keys]
    for job_id, key in zip(made, keys, strict=True):
        job = get(store, job_id)
        assert job.params == params and job.idempotency_key == key
        assert (job.max_retries, job.timeout_s) == (1000, 365 * 86_400.0)
        assert holder(store, key) == job_id


# --------------------------------------------------------------------------- operator actions


def test_retry_makes_a_new_job_from_a_finished_one(store: JobStore) -> None:
    (job_id,) = create(store, new_job(FL, key="users"))
    with pytest.raises(InvalidTransition, match="only a finished job"):
        store.retry_job(job_id)
    cancel(store, job_id)
    again = store.retry_job(job_id)
    old, new = store.get_job(job_id), store.get_job(again)
    assert old is not None and new is not None and again != job_id
    assert old.status is CANCELLED and new.status is NEW
    assert (new.parameters, new.idempotency_key, new.max_retries) == (
        old.parameters, old.idempotency_key, old.max_retries)
    with pytest.raises(IdempotentConflict):  # the new job holds the key now
        store.retry_job(job_id)


def test_delete_removes_only_finished_jobs(store: JobStore) -> None:
    done, active = create(store, new_job(FL), new_job(CO))
    cancel(store, done)
    with pytest.raises(InvalidTransition):
        store.delete_job(active)
    store.delete_job(done)
    assert store.get_job(done) is None and store.get_job(active) is not None
    with pytest.raises(JobNotFound):
        store.delete_job(done)
    assert_counts_in_step(store)
