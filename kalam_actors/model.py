"""The job record, its statuses and transitions, filters, decisions and the retry policy."""

from __future__ import annotations

import dataclasses
import enum
import random
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Final, NamedTuple

import orjson

from .errors import InvalidParams, InvalidTransition
from .ids import JobId, JobType

__all__ = [
    "MAX_BACKOFF_MS",
    "MAX_EXCEPTION_TRACE",
    "MAX_IDEMPOTENCY_KEY",
    "MAX_MESSAGE",
    "SYSTEM_JOBS_COLUMNS",
    "Job",
    "JobDecision",
    "JobFilter",
    "JobRow",
    "JobStatus",
    "Outcome",
    "Progress",
    "RetryPolicy",
    "check_transition",
    "truncate_head",
    "truncate_tail",
]

MAX_MESSAGE: Final = 1_000
MAX_EXCEPTION_TRACE: Final = 10_000
MAX_IDEMPOTENCY_KEY: Final = 256
# The longest backoff (a year): run_after must fit the due index's 8-byte microsecond key.
MAX_BACKOFF_MS: Final = 365 * 24 * 3600 * 1000


class JobStatus(enum.Enum):
    """Where a job is in its life. The value is the name shown in ``system.jobs``."""

    NEW = "New"
    QUEUED = "Queued"
    RUNNING = "Running"
    RETRYING = "Retrying"
    COMPLETED = "Completed"
    FAILED = "Failed"
    CANCELLED = "Cancelled"
    SKIPPED = "Skipped"

    @property
    def is_terminal(self) -> bool:
        """True for Completed, Failed, Cancelled and Skipped, which never change again."""
        return self in _TERMINAL

    @property
    def is_active(self) -> bool:
        """True for New, Queued, Running and Retrying: the statuses that hold an idempotency key."""
        return self not in _TERMINAL

    @classmethod
    def parse(cls, text: str | JobStatus) -> JobStatus:
        """Accept a JobStatus or its name, case-insensitive.

        Raises:
            InvalidParams: naming the text and the known statuses.
        """
        if isinstance(text, JobStatus):
            return text
        wanted = text.lower() if isinstance(text, str) else None
        for status in cls:
            if wanted in (status.value.lower(), status.name.lower()):
                return status
        known = ", ".join(s.value for s in cls)
        raise InvalidParams(f"unknown job status {text!r}; known statuses: {known}", field="status")


_TERMINAL: Final = frozenset(
    {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.SKIPPED}
)

TRANSITIONS: Final[dict[JobStatus, frozenset[JobStatus]]] = {
    JobStatus.NEW: frozenset({JobStatus.QUEUED, JobStatus.CANCELLED}),
    JobStatus.QUEUED: frozenset({JobStatus.RUNNING, JobStatus.CANCELLED}),
    JobStatus.RUNNING: frozenset(
        {
            JobStatus.COMPLETED,
            JobStatus.FAILED,
            JobStatus.RETRYING,
            JobStatus.CANCELLED,
            JobStatus.SKIPPED,
        }
    ),
    JobStatus.RETRYING: frozenset({JobStatus.RUNNING, JobStatus.CANCELLED, JobStatus.FAILED}),
    JobStatus.COMPLETED: frozenset(),
    JobStatus.FAILED: frozenset(),
    JobStatus.CANCELLED: frozenset(),
    JobStatus.SKIPPED: frozenset(),
}


def check_transition(job_id: str, old: JobStatus, new: JobStatus) -> None:
    """Raise :class:`InvalidTransition` unless ``old -> new`` is in the transition table."""
    if new not in TRANSITIONS[old]:
        if old.is_terminal:
            message = f"job is {old.value}, a terminal status; it cannot become {new.value}"
        else:
            message = f"invalid transition {old.value} -> {new.value}"
        raise InvalidTransition(job_id, old, new, message)


def truncate_head(text: str | None, limit: int) -> str | None:
    """Keep the start of ``text``; past ``limit`` characters end it with a visible marker."""
    if text is None or len(text) <= limit:
        return text
    marker = f"… [truncated {len(text) - limit} more characters]"
    return text[: limit - len(marker)] + marker


def truncate_tail(text: str | None, limit: int) -> str | None:
    """Keep the end of ``text`` (the newest part of a growing trace), marking what was cut."""
    if text is None or len(text) <= limit:
        return text
    marker = "[… earlier trace truncated …]\n"
    return marker + text[len(text) - (limit - len(marker)) :]


@dataclasses.dataclass(frozen=True, slots=True)
class Progress:
    """How far a running job has come, as its executor last reported it.

    Attributes:
        done: units finished so far.
        total: units in all, when known.
        note: a short human note ("batch 3 of 7").
    """

    done: int
    total: int | None = None
    note: str | None = None

    @property
    def fraction(self) -> float | None:
        """``done / total`` in [0, 1], or None when the total is unknown or zero."""
        if not self.total:
            return None
        return max(0.0, min(1.0, self.done / self.total))

    def to_dict(self) -> dict[str, Any]:
        """The report as a JSON-ready dict: ``{"done": …, "total": …, "note": …}``."""
        return {"done": self.done, "total": self.total, "note": self.note}


@dataclasses.dataclass(frozen=True, slots=True)
class Job:
    """A snapshot of one stored job. Read it; the runtime makes new ones as the job moves.

    Timestamps are timezone-aware UTC datetimes.
    """

    job_id: JobId
    job_type: JobType
    status: JobStatus
    parameters: str
    idempotency_key: str | None
    retry_count: int
    max_retries: int
    message: str | None
    exception_trace: str | None
    progress: Progress | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    run_after: datetime | None
    timeout_s: float | None = None

    @property
    def params(self) -> dict[str, Any]:
        """The parameters as a fresh dict (decoded from :attr:`parameters`)."""
        value: dict[str, Any] = orjson.loads(self.parameters)
        return value


class Outcome(enum.Enum):
    """What an executor decided about one attempt."""

    COMPLETED = "completed"
    RETRY = "retry"
    FAILED = "failed"
    SKIPPED = "skipped"


@dataclasses.dataclass(frozen=True, slots=True)
class JobDecision:
    """An executor's verdict on one attempt. Build it with the class methods."""

    outcome: Outcome
    message: str | None = None
    exception_trace: str | None = None
    backoff_ms: int | None = None

    @classmethod
    def completed(cls, message: str | None = None) -> JobDecision:
        """The job did its work."""
        if message is None and cls is JobDecision:
            return _COMPLETED  # immutable, so one instance serves every plain completion
        return cls(Outcome.COMPLETED, message)

    @classmethod
    def retry(
        cls, message: str, backoff_ms: int | None = None, exception_trace: str | None = None
    ) -> JobDecision:
        """The attempt failed in a way worth trying again, after ``backoff_ms`` if given,
        else after the runtime's retry policy."""
        if backoff_ms is not None and (not isinstance(backoff_ms, int) or backoff_ms < 0):
            raise InvalidParams(f"backoff_ms must be a whole number >= 0, not {backoff_ms!r}")
        return cls(Outcome.RETRY, message, exception_trace, backoff_ms)

    @classmethod
    def failed(cls, message: str, exception_trace: str | None = None) -> JobDecision:
        """The job failed for good; no retry."""
        return cls(Outcome.FAILED, message, exception_trace)

    @classmethod
    def skipped(cls, message: str) -> JobDecision:
        """There was nothing to do, and ``message`` says why."""
        return cls(Outcome.SKIPPED, message)


_COMPLETED: Final = JobDecision(Outcome.COMPLETED)


@dataclasses.dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff: ``base_ms * factor**(retry_count - 1)``, capped at ``max_ms``.

    With ``jitter`` j > 0 the delay is spread uniformly over ``[d * (1 - j), d]``.
    """

    base_ms: int = 100
    factor: float = 2.0
    max_ms: int = 60_000
    jitter: float = 0.0

    def __post_init__(self) -> None:
        if self.base_ms < 0 or self.max_ms < 0:
            raise InvalidParams("retry policy base_ms and max_ms must be >= 0")
        if self.base_ms > MAX_BACKOFF_MS or self.max_ms > MAX_BACKOFF_MS:
            raise InvalidParams(
                f"retry policy base_ms and max_ms must be at most {MAX_BACKOFF_MS} (a year)"
            )
        if self.factor < 1.0:
            raise InvalidParams("retry policy factor must be >= 1.0")
        if not 0.0 <= self.jitter <= 1.0:
            raise InvalidParams("retry policy jitter must be within [0, 1]")

    def backoff_ms(self, retry_count: int, rng: random.Random | None = None) -> int:
        """The delay before retry number ``retry_count`` (1 for the first retry)."""
        exponent = max(0, retry_count - 1)
        delay = min(float(self.max_ms), self.base_ms * self.factor**exponent)
        if self.jitter:
            delay *= 1.0 - self.jitter * (rng or random).random()
        return int(delay)


@dataclasses.dataclass(frozen=True, slots=True)
class JobFilter:
    """Which jobs to list. Every field left as None matches everything.

    Attributes:
        status: one status or several.
        job_type: one type or several (the same as filtering on their id prefixes).
        job_id_prefix: ids that start with this text, e.g. ``"FL-"``.
        idempotency_key: only jobs created with this key.
        limit: at most this many jobs.
        newest_first: order by id descending instead of ascending (creation order).
    """

    status: JobStatus | Iterable[JobStatus] | None = None
    job_type: JobType | Iterable[JobType] | None = None
    job_id_prefix: str | None = None
    idempotency_key: str | None = None
    limit: int | None = None
    newest_first: bool = False

    def statuses(self) -> tuple[JobStatus, ...] | None:
        """The status filter as a tuple of JobStatus, or None."""
        if self.status is None:
            return None
        if isinstance(self.status, (JobStatus, str)):
            return (JobStatus.parse(self.status),)
        return tuple(JobStatus.parse(s) for s in self.status)

    def job_types(self) -> tuple[JobType, ...] | None:
        """The type filter as a tuple of JobType, or None."""
        if self.job_type is None:
            return None
        if isinstance(self.job_type, (JobType, str)):
            return (JobType.parse(self.job_type),)
        return tuple(JobType.parse(t) for t in self.job_type)


SYSTEM_JOBS_COLUMNS: Final = (
    "job_id",
    "job_type",
    "status",
    "parameters",
    "message",
    "exception_trace",
    "idempotency_key",
    "retry_count",
    "max_retries",
    "progress",
    "created_at",
    "updated_at",
    "started_at",
    "finished_at",
)


class JobRow(NamedTuple):
    """One row of the ``system.jobs`` view, its columns in the view's order."""

    job_id: str
    job_type: str
    status: str
    parameters: str
    message: str | None
    exception_trace: str | None
    idempotency_key: str | None
    retry_count: int
    max_retries: int
    progress: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def from_job(cls, job: Job) -> JobRow:
        """The row of ``system.jobs`` that shows ``job``."""
        return cls(
            job.job_id,
            job.job_type.value,
            job.status.value,
            job.parameters,
            job.message,
            job.exception_trace,
            job.idempotency_key,
            job.retry_count,
            job.max_retries,
            job.progress.to_dict() if job.progress else None,
            job.created_at,
            job.updated_at,
            job.started_at,
            job.finished_at,
        )
