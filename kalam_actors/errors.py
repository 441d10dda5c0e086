"""Every exception kalam-actors raises on purpose.

All of them derive from :class:`KalamError`. Errors that steer a caller's control flow carry
the data the caller needs (the conflicting job id, the holder's pid, the offending field).
"""

from __future__ import annotations

__all__ = [
    "CancelNotAllowed",
    "CorruptRecord",
    "IdempotentConflict",
    "InvalidJobId",
    "InvalidParams",
    "InvalidTransition",
    "JobNotFound",
    "KalamError",
    "RuntimeFailed",
    "RuntimeStopped",
    "StoreError",
    "StoreLocked",
    "UnknownJobType",
]


class KalamError(Exception):
    """Base class of every error raised by kalam-actors."""


class InvalidParams(KalamError, ValueError):
    """Raised when a job's parameters, or another caller-supplied value, are unacceptable.

    Nothing has been written when it is raised.

    Attributes:
        field: the name of the offending parameter, or ``None`` when the whole value is wrong
            (bad JSON, not an object).
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class InvalidJobId(InvalidParams):
    """Raised when a string is not a well-formed job id (``<PREFIX>-<26 characters>``)."""


class UnknownJobType(KalamError, ValueError):
    """Raised when a job type name or prefix is not known, or no executor is registered for it."""


class JobNotFound(KalamError, LookupError):
    """Raised when a job id names no stored job.

    Attributes:
        job_id: the id that was looked up.
    """

    def __init__(self, job_id: str) -> None:
        super().__init__(f"[{job_id}] job not found")
        self.job_id = job_id


class InvalidTransition(KalamError):
    """Raised when a status change is not in the transition table; nothing is written.

    Attributes:
        job_id: the job concerned.
        from_status: its current status.
        to_status: the status that was refused.
    """

    def __init__(self, job_id: str, from_status: object, to_status: object, message: str) -> None:
        super().__init__(f"[{job_id}] {message}")
        self.job_id = job_id
        self.from_status = from_status
        self.to_status = to_status


class IdempotentConflict(KalamError):
    """Raised when a job is created with an idempotency key that an active job already holds.

    Attributes:
        idempotency_key: the key asked for.
        existing_job_id: the active job that holds it.
    """

    def __init__(self, idempotency_key: str, existing_job_id: str) -> None:
        super().__init__(
            f"[{existing_job_id}] idempotency key {idempotency_key!r} is held by this active job"
        )
        self.idempotency_key = idempotency_key
        self.existing_job_id = existing_job_id


class CancelNotAllowed(KalamError):
    """Raised when a running job's executor refuses cancellation; the job is left untouched.

    Attributes:
        job_id: the job concerned.
    """

    def __init__(self, job_id: str, reason: str) -> None:
        super().__init__(f"[{job_id}] cancel not allowed: {reason}")
        self.job_id = job_id
        self.reason = reason


class StoreError(KalamError):
    """Raised when the job store cannot be read or written (disk full, refused writes, I/O)."""


class StoreLocked(StoreError):
    """Raised when another runtime already owns the job store.

    Attributes:
        path: the store's folder.
        pid: the process id of the holder, when it could be read.
    """

    def __init__(self, path: str, pid: int | None) -> None:
        holder = f"process {pid}" if pid is not None else "another process"
        super().__init__(f"job store {path} is locked by {holder}")
        self.path = path
        self.pid = pid


class CorruptRecord(StoreError):
    """Raised when a stored job record cannot be decoded; names the job, the rest stays usable.

    Attributes:
        job_id: the key of the damaged record.
    """

    def __init__(self, job_id: str, detail: str) -> None:
        super().__init__(f"[{job_id}] corrupt job record: {detail}")
        self.job_id = job_id


class RuntimeStopped(KalamError):
    """Raised when a call reaches a job manager that is stopping or has stopped."""


class RuntimeFailed(KalamError):
    """Raised out of ``open_job_manager`` when the runtime had to stop, e.g. when its executor
    actors crashed more often than the supervisor's intensity allows. The store is intact; the
    cause is chained."""
