"""The store verbs: every state change a job can go through, as one function each.

Each verb works inside one write transaction (a :class:`StoreTxn`) and is the only code that
reads or writes a record's fields for that change. The runtime's loop batches calls to them
into one group commit; :class:`JobStore` calls the same verbs for other processes. A verb that
refuses raises before it writes anything, so the rest of a batch is unaffected.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from loguru import logger

from ..errors import (
    CancelNotAllowed,
    CorruptRecord,
    IdempotentConflict,
    InvalidParams,
    InvalidTransition,
    JobNotFound,
)
from ..ids import JobId, JobType
from ..model import Job, JobDecision, JobStatus, Outcome, Progress, RetryPolicy
from .door import NewJob
from .records import (
    CODE,
    STATUS_OF,
    TYPE_OF_PREFIX,
    append_trace,
    new_record,
    record_to_job,
    truncate_message,
)

if TYPE_CHECKING:
    from ._lmdb import StoreTxn

__all__ = [
    "CANCELLED_BY_USER",
    "Dispatch",
    "Recovered",
    "Started",
    "accept_cancel",
    "admit_new",
    "cancel",
    "claim",
    "create_jobs",
    "create_scheduled",
    "delete",
    "dispatch",
    "finish",
    "prune_history",
    "recover_running",
    "refuse_cancel",
    "request_cancel",
    "resubmit",
    "set_progress",
    "start",
    "take_cancel_requests",
]

CANCELLED_BY_USER: Final = "Cancelled by user"
SERVER_RESTARTED: Final = "Server restarted"
_RESTART_TRACE: Final = "Job was running when server shut down"
_TERMINAL_CODES: Final = tuple(
    CODE[s] for s in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED,
                      JobStatus.SKIPPED)
)


@dataclasses.dataclass(frozen=True, slots=True)
class Started:
    """One job claimed for an attempt (see :func:`claim`).

    Attributes:
        job_id: the job.
        job_type: its type.
        params_text: its parameters, as JSON text.
        attempt: 1 for the first attempt, then one more per retry.
        timeout_s: the time limit the job asked for, or None.
        created_us: when the job was created (µs since the epoch).
        record: its stored record as claimed (Queued or Retrying), opaque outside the store;
            ``running_job`` makes the Job the executor sees from it.
    """

    job_id: JobId
    job_type: JobType
    params_text: str
    attempt: int
    timeout_s: float | None
    created_us: int
    record: dict[str, Any]


@dataclasses.dataclass(slots=True)
class Dispatch:
    """What :func:`dispatch` did: the attempts started, and whether an unreadable record left
    a slot free (look again)."""

    started: list[Started] = dataclasses.field(default_factory=list)
    again: bool = False


# --------------------------------------------------------------------------- reading safely


def readable(txn: StoreTxn, job_id: str, code: str, due: int | None = None
             ) -> dict[str, Any] | None:
    """The record an index points at, or None after taking a damaged one out of the indexes:
    one unreadable record must not stop the runtime (reading it still names the damage)."""
    try:
        return txn.require(job_id)
    except CorruptRecord as exc:
        logger.error(f"[{job_id}] {exc}; taken out of the work queues, the record is kept")
        txn.quarantine(job_id, code, due)
        return None


# --------------------------------------------------------------------------- create


def create_jobs(
    txn: StoreTxn, jobs: Sequence[NewJob], now: int, *, status: JobStatus = JobStatus.QUEUED,
    ids: Sequence[JobId] | None = None,
) -> list[JobId]:
    """Insert checked jobs, all or none.

    Raises:
        IdempotentConflict: an active job holds one of the keys (nothing is written).
        InvalidParams: one key appears twice among ``jobs`` (nothing is written).
    """
    seen: dict[str, int] = {}
    # Unpacked, not read by attribute: a bulk create runs these loops 100,000 times.
    for i, (_, _, key, _, _) in enumerate(jobs):
        if key is None:
            continue
        holder = txn.active_holder(key)
        if holder is not None:
            raise IdempotentConflict(key, holder)
        if key in seen:
            raise InvalidParams(
                f"idempotency key {key!r} appears twice in one bulk create (jobs {seen[key]} "
                f"and {i})",
                field="idempotency_key",
            )
        seen[key] = i
    new_ids = list(ids) if ids is not None else _new_ids(jobs)
    for job_id, (_, text, key, retries, timeout) in zip(new_ids, jobs, strict=True):
        txn.insert(new_record(job_id, text, key=key, max_retries=retries, now=now,
                              status=status, timeout_s=timeout))
    return new_ids


def _new_ids(jobs: Sequence[NewJob]) -> list[JobId]:
    """Ids for the jobs, in submission order: one reservation per run of one type."""
    ids: list[JobId] = []
    i, n = 0, len(jobs)
    while i < n:
        jt = jobs[i].job_type
        j = i + 1
        while j < n and jobs[j].job_type is jt:
            j += 1
        ids.extend(JobId.new_many(jt, j - i))
        i = j
    return ids


def create_scheduled(txn: StoreTxn, name: str, slot: int, job: NewJob, now: int) -> JobId | None:
    """Create the job of one schedule slot, once per slot across restarts (and processes).

    Returns:
        Its id; None when the slot was already served.

    Raises:
        IdempotentConflict: an active job holds its key (the slot still counts as served).
    """
    last = txn.get_slot(name)
    if last is not None and slot <= last:
        return None
    txn.put_slot(name, slot)
    return create_jobs(txn, [job], now)[0]


def admit_new(txn: StoreTxn, now: int, limit: int) -> bool:
    """Move New jobs (submitted by other processes) to Queued; True if more remain."""
    ids = txn.first_ids(CODE[JobStatus.NEW], "", limit)
    for job_id in ids:
        rec = readable(txn, job_id, CODE[JobStatus.NEW])
        if rec is not None:
            txn.move(rec, JobStatus.QUEUED, now)
    return len(ids) == limit


# --------------------------------------------------------------------------- run


def claim(
    txn: StoreTxn, capacity: Mapping[str, int], free: int, now: int,
    claimed: Collection[str] = (),
) -> Dispatch:
    """Choose up to ``free`` jobs to hand to actors, at most ``capacity[prefix]`` of each
    type: due retries first (older work), then Queued jobs in creation order across types.

    Nothing is written: a claimed job stays Queued (or Retrying) until its attempt starts
    (:func:`start`), so it can be cancelled as a Queued job, a restart finds it Queued, and
    Running means running. Claims live in the memory of the one runtime that holds the
    store; ``claimed`` are the ids it holds already, which are passed over.
    """
    out = Dispatch()
    room = dict(capacity)
    chosen: list[tuple[str, str, int | None]] = []
    skip = len(claimed)
    # Each type's due range on its own (a full type cannot hide another's), merged by time.
    due_now = heapq.merge(*(txn.due_ids(now, min(n, free) + skip, prefix=prefix)
                            for prefix, n in room.items() if n > 0))
    for due, job_id in due_now:
        if len(chosen) >= free:
            break
        prefix = job_id[:2]
        if room[prefix] > 0 and job_id not in claimed:
            room[prefix] -= 1
            chosen.append((job_id, "Y", due))
    free -= len(chosen)
    if free > 0:
        # Per-type ranges, merged into creation order by the time-ordered id suffix.
        candidates = heapq.merge(
            *(txn.first_ids("Q", prefix + "-", min(n, free) + skip)
              for prefix, n in room.items() if n > 0),
            key=_suffix,
        )
        taken = dict.fromkeys(room, 0)
        for job_id in candidates:
            if free <= 0:
                break
            prefix = job_id[:2]
            if job_id in claimed or taken[prefix] >= room[prefix]:
                continue
            taken[prefix] += 1
            chosen.append((job_id, "Q", None))
            free -= 1
    for job_id, code, due_at in chosen:
        rec = readable(txn, job_id, code, due_at)
        if rec is None:
            out.again = True  # its slot is still free for the next job in line
            continue
        out.started.append(Started(JobId(job_id), TYPE_OF_PREFIX[job_id[:2]], rec["p"],
                                   rec["rc"] + 1, rec.get("to"), rec["c"], rec))
    return out


def start(txn: StoreTxn, job_id: str, now: int) -> bool:
    """A claimed job's attempt starts: Queued or Retrying -> Running. False when the job was
    cancelled (or taken out) meanwhile: the attempt must not run, or is not recorded."""
    try:
        rec = txn.get(job_id)
    except CorruptRecord:
        return False
    if rec is None or rec["s"] not in ("Q", "Y"):
        return False
    txn.move(rec, JobStatus.RUNNING, now, m=None, pg=None)
    return True


def dispatch(txn: StoreTxn, capacity: Mapping[str, int], free: int, now: int) -> Dispatch:
    """Claim jobs as :func:`claim` does and start them at once (for a caller that starts
    what it claims in the same transaction)."""
    out = claim(txn, capacity, free, now)
    for started in out.started:
        start(txn, started.job_id, now)
    return out


def _suffix(job_id: str) -> str:
    return job_id[3:]


def set_progress(txn: StoreTxn, job_id: str, progress: Progress) -> bool:
    """Record a Running job's progress; False when it is no longer Running (or unreadable:
    its result will say so)."""
    try:
        rec = txn.get(job_id)
    except CorruptRecord:
        return False
    if rec is None or rec["s"] != "R":
        return False
    rec["pg"] = [progress.done, progress.total, progress.note]
    txn.put(rec)
    return True


def finish(
    txn: StoreTxn, job_id: str, decision: JobDecision, now: int, *, cancelled: bool,
    retry_policy: RetryPolicy,
) -> bool:
    """Record what an attempt came to: Completed, Skipped, Failed, Cancelled (when its cancel
    was accepted), or Retrying with backoff while retries remain (Failed "Max retries
    exceeded" after). False when there was nothing to record (no longer Running)."""
    try:
        rec = txn.get(job_id)
    except CorruptRecord as exc:
        logger.error(f"[{job_id}] {exc}; its result cannot be recorded")
        txn.quarantine(job_id, "R")
        return False
    if rec is None or rec["s"] != "R":
        return False  # cancelled from outside, or deleted: nothing to record
    outcome = decision.outcome
    if cancelled:
        txn.move(rec, JobStatus.CANCELLED, now, m=CANCELLED_BY_USER)
    elif outcome is Outcome.COMPLETED:
        txn.move(rec, JobStatus.COMPLETED, now, m=truncate_message(decision.message))
    elif outcome is Outcome.SKIPPED:
        txn.move(rec, JobStatus.SKIPPED, now, m=truncate_message(decision.message))
    elif outcome is Outcome.FAILED:
        txn.move(rec, JobStatus.FAILED, now, m=truncate_message(decision.message),
                 x=append_trace(rec["x"], decision.exception_trace))
    else:
        trace = decision.exception_trace or decision.message
        if rec["rc"] < rec["mr"]:
            retry = rec["rc"] + 1
            backoff = decision.backoff_ms
            if backoff is None:
                backoff = retry_policy.backoff_ms(retry)
            txn.move(rec, JobStatus.RETRYING, now, rc=retry, m=None,
                     x=append_trace(rec["x"], trace), ra=now + backoff * 1000)
        else:
            txn.move(rec, JobStatus.FAILED, now,
                     m=truncate_message(f"Max retries exceeded: {decision.message}"),
                     x=append_trace(rec["x"], trace))
    return True


# --------------------------------------------------------------------------- cancel


def cancel(txn: StoreTxn, job_id: str, now: int, *, cancellable: bool) -> Job | None:
    """Cancel a job that is not Running: it ends Cancelled now.

    A job whose executor cannot be cancelled is refused once any attempt of it has started
    (Retrying, or Queued again after a restart): a partial attempt may have left work that
    only finishing can make whole.

    Returns:
        The cancelled job; None when it is Running (only the runtime running it can stop it:
        see :func:`request_cancel`).

    Raises:
        JobNotFound, CorruptRecord, InvalidTransition (terminal), CancelNotAllowed.
    """
    rec = txn.require(job_id)
    status = STATUS_OF[rec["s"]]
    if status.is_terminal:
        raise InvalidTransition(
            job_id, status, JobStatus.CANCELLED, f"Cannot cancel job in status {status.value}"
        )
    if status is JobStatus.RUNNING:
        return None
    if not cancellable and rec["st"] is not None:
        raise CancelNotAllowed(
            job_id,
            f"jobs of type {JobId(job_id).job_type.value} cannot be cancelled once an attempt "
            f"has started (it is {status.value} after attempt {rec['rc']}); a partial attempt "
            "is made whole only by finishing",
        )
    txn.move(rec, JobStatus.CANCELLED, now, m=CANCELLED_BY_USER)
    return record_to_job(rec)


def request_cancel(txn: StoreTxn, job_id: str, *, cancellable: bool) -> None:
    """Record a cancel request for a Running job, for the runtime running it to answer.

    Raises:
        JobNotFound, CancelNotAllowed (its type cannot be cancelled).
    """
    rec = txn.require(job_id)
    if not cancellable:
        raise CancelNotAllowed(
            job_id, f"jobs of type {JobId(job_id).job_type.value} cannot be cancelled"
        )
    if rec["s"] == "R" and not rec["cr"]:
        rec["cr"] = True
        rec.pop("cx", None)
        txn.put(rec)
        txn.request_cancel(job_id)


def take_cancel_requests(txn: StoreTxn, limit: int) -> list[str]:
    """Cancel requests recorded by other processes, not yet answered."""
    return txn.cancel_requests(limit)


def accept_cancel(txn: StoreTxn, job_id: str) -> None:
    """The executor agreed: the job ends Cancelled when its attempt returns."""
    rec = txn.get(job_id)
    if rec is not None and rec["s"] == "R":
        rec["cr"] = True
        rec["ca"] = True
        txn.put(rec)
        txn.clear_cancel_request(job_id)


def refuse_cancel(txn: StoreTxn, job_id: str, reason: str) -> None:
    """The executor refused: the request is answered with ``reason``."""
    rec = txn.get(job_id)
    # A refusal that arrives after the attempt ended answers nothing: the record is final.
    if rec is not None and rec["s"] not in _TERMINAL_CODES:
        rec["cr"] = False
        rec["cx"] = reason
        txn.put(rec)
        txn.clear_cancel_request(job_id)


def cancel_verdict(rec: dict[str, Any] | None, job_id: str) -> Job | CancelNotAllowed | None:
    """The runtime's answer to a recorded cancel request, if it has given one."""
    if rec is None:
        raise JobNotFound(job_id)
    if rec.get("cx"):
        return CancelNotAllowed(job_id, rec["cx"])
    if STATUS_OF[rec["s"]].is_terminal or (rec["cr"] and rec.get("ca")):
        return record_to_job(rec)
    return None


# --------------------------------------------------------------------------- recovery


@dataclasses.dataclass(slots=True)
class Recovered:
    """What :func:`recover_running` did to the Running jobs of a runtime that stopped."""

    failed: int = 0
    retried: int = 0
    cancelled: int = 0


def recover_running(
    txn: StoreTxn, rerun: Mapping[str, bool], now: int, limit: int, out: Recovered
) -> int:
    """Apply the seed's recovery to up to ``limit`` Running jobs: Cancelled if a cancel was
    requested; Retrying at once if the type is safe to re-run (``rerun[prefix]``) and retries
    remain; else Failed "Server restarted". Returns how many it looked at."""
    ids = txn.first_ids("R", "", limit)
    for job_id in ids:
        rec = readable(txn, job_id, "R")
        if rec is None:
            continue
        if rec["cr"]:
            txn.move(rec, JobStatus.CANCELLED, now, m=CANCELLED_BY_USER)
            out.cancelled += 1
        elif rerun.get(job_id[:2], False) and rec["rc"] < rec["mr"]:
            txn.move(rec, JobStatus.RETRYING, now, rc=rec["rc"] + 1, m=None,
                     x=append_trace(rec["x"], _RESTART_TRACE), ra=now)
            out.retried += 1
        else:
            txn.move(rec, JobStatus.FAILED, now, m=SERVER_RESTARTED,
                     x=append_trace(rec["x"], _RESTART_TRACE))
            out.failed += 1
    return len(ids)


def clear_cancel_requests(txn: StoreTxn) -> None:
    """Drop every recorded cancel request (after recovery none can be for a running job)."""
    for job_id in txn.cancel_requests(1_000_000):
        txn.clear_cancel_request(job_id)


# --------------------------------------------------------------------------- history


def prune_history(
    write: Callable[[Callable[[StoreTxn], Any]], Any],
    before_us: int,
    *,
    batch_size: int,
    on_batch: Callable[[int], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> int:
    """Delete terminal jobs that finished before ``before_us``; return how many.

    There is no index by finish time. Within one type, ids sort by creation time, so each
    terminal status range of each type is walked in id (creation) order and the walk stops at
    the first job created at or after the cutoff: a job finishes after it is created, so no
    later job of that type can qualify. The work is bounded by the jobs created before the
    cutoff. Jobs created before the cutoff but finished after it are stepped over (they go in
    a later run).

    Each batch of at most ``batch_size`` records (read or deleted) is one write transaction
    (``write`` runs one), so pruning never holds the writer for long; ``on_batch(deleted)`` is
    called after each commit; ``cancelled()`` is checked between batches. Terminal records
    never change again, so deleting them beside a running runtime is safe.
    """
    ranges = [(code, job_type.prefix + "-")
              for code, job_type in itertools.product(_TERMINAL_CODES, JobType)]
    deleted = 0
    position: tuple[int, str | None] = (0, None)  # (range index, last id read in it)
    while position[0] < len(ranges):
        if cancelled is not None and cancelled():
            return deleted

        def batch(stxn: StoreTxn, start: tuple[int, str | None] = position
                  ) -> tuple[int, tuple[int, str | None]]:
            return _prune_batch(stxn, ranges, start, before_us, batch_size)

        n, position = write(batch)
        deleted += n
        if n and on_batch is not None:
            on_batch(deleted)
    return deleted


def _prune_batch(
    stxn: StoreTxn, ranges: list[tuple[str, str]], start: tuple[int, str | None],
    before_us: int, batch_size: int,
) -> tuple[int, tuple[int, str | None]]:
    index, after = start
    n = touched = 0
    while index < len(ranges) and touched < batch_size:
        code, id_prefix = ranges[index]
        found = stxn.ids_after(code, after, batch_size - touched, id_prefix=id_prefix)
        if not found:
            index, after = index + 1, None
            continue
        for job_id in found:
            touched += 1
            after = job_id
            try:
                rec = stxn.get(job_id)
            except CorruptRecord as exc:
                # Kept for whoever looks into it; it must not stop pruning for good.
                logger.error(f"[{job_id}] {exc}; not pruned, the record is kept")
                continue
            if rec is None:
                continue
            if rec["c"] >= before_us:
                index, after = index + 1, None  # no later job of this type qualifies
                break
            if rec["f"] is not None and rec["f"] < before_us:
                stxn.delete(rec)
                n += 1
    return n, (index, after)


# --------------------------------------------------------------------------- operator actions


def resubmit(txn: StoreTxn, job_id: str, now: int, *, status: JobStatus = JobStatus.NEW
             ) -> JobId:
    """Run a finished job again, as a new job with the same type, parameters, key, retries
    and time limit (terminal records never change, so a retry is a new job).

    Raises:
        JobNotFound; InvalidTransition (the job is still active); IdempotentConflict (an
        active job holds its key).
    """
    rec = txn.require(job_id)
    status_now = STATUS_OF[rec["s"]]
    if not status_now.is_terminal:
        raise InvalidTransition(job_id, status_now, None,
                                f"job is {status_now.value}; only a finished job can be retried")
    job = NewJob(JobId(job_id).job_type, rec["p"], rec["k"], rec["mr"], rec.get("to"))
    return create_jobs(txn, [job], now, status=status)[0]


def delete(txn: StoreTxn, job_id: str) -> None:
    """Delete a finished job's record.

    Raises:
        JobNotFound; InvalidTransition (the job is still active).
    """
    rec = txn.require(job_id)
    txn.delete(rec)
