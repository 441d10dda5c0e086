"""What the pages show, read from a :class:`~kalam_actors.store.JobStore`: plain, blocking
functions (the app runs them in a worker thread), each read a short snapshot, every listing an
index range of bounded size.

Paging is by keyset on the job id, never by offset: ids sort by type prefix, then by a
time-ordered suffix, so "older than id C" within one type is a union of id-prefix ranges
(:func:`prefixes_beyond`), which ``JobFilter.job_id_prefix`` reads as index ranges. Below the
cursor's millisecond nearly all those ranges are empty, so that millisecond is read whole
instead. The types' streams are merged by suffix, as the store merges them itself. (A
``before``/``after`` id in ``JobFilter`` would make each page one seek per range: this module
would then shrink to a call.)
"""

from __future__ import annotations

import dataclasses
import heapq
import os
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

from ..ids import JobId, JobType
from ..model import Job, JobFilter, JobStatus
from ..store import JobStore

__all__ = [
    "DEFAULT_PAGE",
    "MAX_PAGE",
    "SCAN_BUDGET",
    "Chart",
    "JobsPage",
    "JobsQuery",
    "Overview",
    "iter_jobs",
    "job_log_lines",
    "jobs_page",
    "overview",
    "prefixes_beyond",
    "recorded_schedules",
]

DEFAULT_PAGE: Final = 50
MAX_PAGE: Final = 500
SCAN_BUDGET: Final = 5_000
"""At most this many jobs are read for one page when a filter has no index (text in the
message, or a key on finished jobs), about a quarter of a second; the page then offers to
search on from where it stopped."""
CHART_SCAN: Final = 5_000
"""The newest finished jobs the overview's chart reads."""
LOG_TAIL_BYTES: Final = 16 * 1024 * 1024
LOG_MAX_LINES: Final = 1_000

# Crockford's base32, the id suffix's alphabet, in ascending order (ids sort as text).
_ALPHABET: Final = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_HEAD_LEN: Final = 3  # "FL-"
# An id's first ten suffix characters are 50 bits: its creation millisecond and two more.
_BUCKET: Final = _HEAD_LEN + 10
BUCKET_READ: Final = 1_000
"""A page reads the jobs of its cursor's millisecond whole when there are fewer than this."""


# --------------------------------------------------------------------------- keyset ranges


def prefixes_beyond(prefix: str, cursor: str, *, older: bool, deepest: int | None = None
                    ) -> Iterator[str]:
    """Id prefixes that together hold every id starting with ``prefix`` that sorts below
    ``cursor`` (``older``) or above it, each such id in exactly one; nearest the cursor first.

    ``cursor`` is a whole id of the same type as ``prefix``. For ``C = c0 c1 … cn``, the ids
    below C are those that share ``c0 … c(i-1)`` and have a smaller character at i, for each i.
    With ``deepest`` d longer than ``prefix``, only the levels i < d: the ids sharing
    ``C[:d]`` are left out (the caller reads that bucket whole).
    """
    n = len(prefix)
    head = cursor[:n]
    if head != prefix:
        # The cursor lies outside the range: the whole range is on one side of it.
        if (head > prefix) == older:
            yield prefix
        return
    top = len(cursor) if deepest is None or deepest <= n else min(len(cursor), deepest)
    for i in range(top - 1, n - 1, -1):
        chars = [c for c in _ALPHABET if (c < cursor[i] if older else c > cursor[i])]
        if older:
            chars.reverse()
        for c in chars:
            yield cursor[:i] + c


def _suffix(job: Job) -> str:
    return job.job_id[_HEAD_LEN:]


def _chunk(
    store: JobStore, base: JobFilter, job_type: JobType, prefix: str, cursor: str | None,
    older: bool, size: int,
) -> list[Job]:
    """Up to ``size`` jobs of one id range, nearest ``cursor`` first (or from the newest /
    oldest end without one). Each ``list_jobs`` is one short read snapshot."""
    out: list[Job] = []
    if cursor is None:
        ranges: Iterable[str] = [prefix]
    elif len(prefix) < _BUCKET and cursor.startswith(prefix):
        # Below the millisecond, nearly every range is empty, and asking for each costs a
        # read: read the cursor's millisecond whole instead, when it is small.
        bucket = store.list_jobs(dataclasses.replace(
            base, job_type=job_type, job_id_prefix=cursor[:_BUCKET], limit=BUCKET_READ,
            newest_first=older))
        if len(bucket) < BUCKET_READ:
            out = [j for j in bucket if (j.job_id < cursor if older else j.job_id > cursor)]
            out = out[:size]
            ranges = prefixes_beyond(prefix, cursor, older=older, deepest=_BUCKET)
        else:
            ranges = prefixes_beyond(prefix, cursor, older=older)
    else:
        ranges = prefixes_beyond(prefix, cursor, older=older)
    for p in ranges:
        if len(out) >= size:
            break
        # The type too, not only the prefix: the store then ranges over one type's index.
        f = dataclasses.replace(base, job_type=job_type, job_id_prefix=p, limit=size - len(out),
                                newest_first=older)
        out += store.list_jobs(f)
    return out


def _type_stream(
    store: JobStore, base: JobFilter, job_type: JobType, prefix: str, cursor: str | None,
    older: bool, size: int,
) -> Iterator[Job]:
    while True:
        got = _chunk(store, base, job_type, prefix, cursor, older, size)
        yield from got
        if len(got) < size:
            return
        cursor = got[-1].job_id


def _type_ranges(store: JobStore, base: JobFilter) -> list[tuple[JobType, str]]:
    """One id range per job type that can hold a match: its ``XX-`` head narrowed by the id
    prefix filter, for the types the store counts any job of (in the filtered statuses)."""
    types = base.job_types() or tuple(JobType)
    statuses = base.statuses()
    counted = {t for (s, t), n in store.counts().items()
               if n > 0 and (statuses is None or s in statuses)}
    wanted = base.job_id_prefix or ""
    out = []
    for t in types:
        if t not in counted:
            continue
        head = t.prefix + "-"
        if head.startswith(wanted):
            out.append((t, head))
        elif wanted.startswith(head):
            out.append((t, wanted))
    return out


def iter_jobs(
    store: JobStore, base: JobFilter, *, before: str | None = None, after: str | None = None,
    chunk: int = 200,
) -> Iterator[Job]:
    """Jobs matching ``base``'s status, type and id prefix: newest first strictly older than
    the id ``before`` (or from the newest), or, given ``after``, oldest first strictly newer
    than it. Lazy: it reads ``chunk`` jobs per type at a time, no snapshot held between.

    ``base.limit``, ``newest_first`` and ``idempotency_key`` are ignored (a key is matched by
    the caller, see :func:`jobs_page`).
    """
    older = after is None
    cursor = before if older else after
    base = dataclasses.replace(base, idempotency_key=None)
    streams = []
    for job_type, prefix in _type_ranges(store, base):
        type_cursor = None if cursor is None else prefix[:_HEAD_LEN] + cursor[_HEAD_LEN:]
        streams.append(_type_stream(store, base, job_type, prefix, type_cursor, older, chunk))
    if len(streams) == 1:
        return streams[0]
    return heapq.merge(*streams, key=_suffix, reverse=older)


# --------------------------------------------------------------------------- the jobs page


@dataclasses.dataclass(frozen=True, slots=True)
class JobsQuery:
    """The jobs page's filters, as checked values.

    Attributes:
        status: one status, or None for all.
        job_type: one type, or None for all.
        key: jobs created with this idempotency key.
        id_prefix: ids starting with this text (upper case, as ids are).
        text: text the message contains (case-insensitive).
        before: show jobs older than this id (the next page); None for the newest.
        after: show jobs newer than this id (the previous page).
        limit: jobs per page.
    """

    status: JobStatus | None = None
    job_type: JobType | None = None
    key: str | None = None
    id_prefix: str | None = None
    text: str | None = None
    before: JobId | None = None
    after: JobId | None = None
    limit: int = DEFAULT_PAGE

    @property
    def scans(self) -> bool:
        """True when a filter is matched by reading jobs, not by an index range."""
        return bool(self.text) or (self.key is not None and not self._key_indexed)

    @property
    def _key_indexed(self) -> bool:
        # The store answers a key on an active status from its keys index.
        return self.status is not None and self.status.is_active

    def store_filter(self) -> JobFilter:
        return JobFilter(
            status=self.status,
            job_type=self.job_type,
            job_id_prefix=self.id_prefix,
            idempotency_key=self.key if self._key_indexed else None,
        )

    def matcher(self) -> Callable[[Job], bool]:
        text = self.text.casefold() if self.text else None
        key = None if self._key_indexed else self.key

        def matches(job: Job) -> bool:
            if key is not None and job.idempotency_key != key:
                return False
            return text is None or text in (job.message or "").casefold()

        return matches


@dataclasses.dataclass(frozen=True, slots=True)
class JobsPage:
    """One page of jobs, newest first.

    Attributes:
        jobs: the page's jobs.
        older: the id to page on from (``?before=``) when older matches exist or may exist.
        newer: the id to page back from (``?after=``) when newer matches exist.
        scanned: how many jobs were read for a filter without an index.
        budget_spent: the scan stopped at :data:`SCAN_BUDGET` before the page filled;
            ``older`` (or ``newer``) then resumes the search.
    """

    jobs: list[Job]
    older: str | None
    newer: str | None
    scanned: int
    budget_spent: bool


def _candidates(store: JobStore, query: JobsQuery, chunk: int) -> Iterator[Job]:
    if query.store_filter().idempotency_key is None:
        return iter_jobs(store, query.store_filter(), before=query.before, after=query.after,
                         chunk=chunk)
    # The keys index answers at once: at most one active job holds a key.
    held = store.list_jobs(query.store_filter())
    if query.before is not None:
        held = [j for j in held if _suffix(j) < query.before[_HEAD_LEN:]]
    if query.after is not None:
        held = [j for j in held if _suffix(j) > query.after[_HEAD_LEN:]]
    return iter(held)


def jobs_page(store: JobStore, query: JobsQuery) -> JobsPage:
    """The jobs ``query`` selects, one page of them, by keyset on the job id."""
    going_back = query.after is not None
    matches = query.matcher()
    found: list[Job] = []
    scanned = 0
    last_seen: str | None = None
    budget_spent = False
    for job in _candidates(store, query, 500 if query.scans else query.limit + 1):
        scanned += 1
        last_seen = job.job_id
        if matches(job):
            found.append(job)
            if len(found) > query.limit:
                break
        if query.scans and scanned >= SCAN_BUDGET:
            budget_spent = True
            break
    more = len(found) > query.limit
    found = found[: query.limit]
    onward = found[-1].job_id if more else (last_seen if budget_spent else None)
    shown_scanned = scanned if query.scans else 0
    if going_back:
        found.reverse()
        older = found[-1].job_id if found else None
        return JobsPage(found, older, onward, shown_scanned, budget_spent)
    newer = None
    if query.before is not None:
        newer = found[0].job_id if found else str(query.before)
    return JobsPage(found, onward, newer, shown_scanned, budget_spent)


# --------------------------------------------------------------------------- one job


def job_log_lines(log_file: Path | None, job_id: str) -> list[str] | None:
    """The lines of ``log_file`` about ``job_id`` (they hold ``[<job_id>]``), from its last
    :data:`LOG_TAIL_BYTES`, at most :data:`LOG_MAX_LINES` of the newest. None without a
    log file; [] when it cannot be read."""
    if log_file is None:
        return None
    tag = f"[{job_id}]".encode()
    try:
        with open(log_file, "rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            start = max(0, size - LOG_TAIL_BYTES)
            fh.seek(start)
            data = fh.read()
    except OSError:
        return []
    lines = data.split(b"\n")
    if start:
        lines = lines[1:]  # the first line was cut in half
    found = [line.decode(errors="replace").rstrip("\r") for line in lines if tag in line]
    return found[-LOG_MAX_LINES:]


# --------------------------------------------------------------------------- overview


@dataclasses.dataclass(frozen=True, slots=True)
class Chart:
    """Finished jobs per minute over the last hour.

    Attributes:
        start: the first minute's start (UTC).
        done: Completed and Skipped jobs per minute, oldest minute first.
        failed: Failed jobs per minute.
        scanned: how many of the newest finished jobs were read.
        complete: False when the read stopped at :data:`CHART_SCAN` jobs while still inside
            the hour (older minutes may then be short).
    """

    start: datetime
    done: list[int]
    failed: list[int]
    scanned: int
    complete: bool


@dataclasses.dataclass(frozen=True, slots=True)
class Overview:
    """What the overview page shows."""

    counts: dict[tuple[JobStatus, JobType], int]
    running: list[Job]
    chart: Chart
    schedules: list[tuple[str, int]]
    oldest_waiting: Job | None


_FINISHED: Final = (JobStatus.COMPLETED, JobStatus.SKIPPED, JobStatus.FAILED,
                    JobStatus.CANCELLED)
_DONE: Final = frozenset({JobStatus.COMPLETED, JobStatus.SKIPPED})
# A job finished in the last hour was created before it; how far back the chart looks for
# its creation (jobs that waited longer, retrying for hours, are not counted).
_CHART_LOOKBACK: Final = timedelta(days=1)


def finished_chart(store: JobStore, now: datetime, minutes: int = 60) -> Chart:
    """Finished jobs per minute over the last ``minutes``, from their ``finished_at``: read
    from the newest finished job back, at most :data:`CHART_SCAN` of them, and none created
    more than a day ago."""
    start = (now - timedelta(minutes=minutes)).replace(second=0, microsecond=0) \
        + timedelta(minutes=1)
    done = [0] * minutes
    failed = [0] * minutes
    scanned = 0
    complete = True
    horizon = start - _CHART_LOOKBACK
    for job in iter_jobs(store, JobFilter(status=_FINISHED), chunk=500):
        if job.created_at < horizon:
            break
        if scanned >= CHART_SCAN:
            complete = False
            break
        scanned += 1
        if job.finished_at is None or job.finished_at < start:
            continue
        minute = int((job.finished_at - start).total_seconds() // 60)
        if not 0 <= minute < minutes:
            continue
        if job.status in _DONE:
            done[minute] += 1
        elif job.status is JobStatus.FAILED:
            failed[minute] += 1
    return Chart(start, done, failed, scanned, complete)


def oldest_waiting(store: JobStore) -> Job | None:
    """The oldest job waiting to start (New or Queued): its age is the queue's lag."""
    jobs = store.list_jobs(JobFilter(status=(JobStatus.NEW, JobStatus.QUEUED), limit=1))
    return jobs[0] if jobs else None


def recorded_schedules(store: JobStore) -> list[tuple[str, int]]:
    """Each schedule the runtime has fired, with the last slot it recorded, by name."""
    return store.schedules()


def overview(store: JobStore, now: datetime | None = None, running_limit: int = 50,
             chart: Chart | None = None) -> Overview:
    """Counts by status and type, the jobs Running now, the last hour's chart (``chart`` when
    given: it reads up to :data:`CHART_SCAN` jobs, so the app reuses it for a few seconds),
    schedules, and the oldest job waiting."""
    now = now or datetime.now(UTC)
    running = store.list_jobs(JobFilter(status=JobStatus.RUNNING, newest_first=True,
                                        limit=running_limit))
    return Overview(
        counts=store.counts(),
        running=running,
        chart=chart or finished_chart(store, now),
        schedules=recorded_schedules(store),
        oldest_waiting=oldest_waiting(store),
    )


def totals(counts: dict[tuple[JobStatus, JobType], int]) -> tuple[
        dict[JobStatus, int], dict[JobType, int]]:
    """Counts summed by status and by type."""
    by_status: dict[JobStatus, int] = dict.fromkeys(JobStatus, 0)
    by_type: dict[JobType, int] = dict.fromkeys(JobType, 0)
    for (status, job_type), n in counts.items():
        by_status[status] += n
        by_type[job_type] += n
    return by_status, by_type
