"""The one door for new jobs: :func:`prepare_job` checks a submission whole, with the value
checks of :mod:`.values` and the executor's own ``validate_params``, before any transaction.
The runtime's ``create_job``/``create_jobs``, ``JobStore``, the CLI and schedules all come
through it."""

from __future__ import annotations

from typing import Any, NamedTuple

from ..errors import UnknownJobType
from ..executor import JobExecutor
from ..ids import JobType
from .values import (
    check_idempotency_key,
    check_max_retries,
    check_timeout,
    params_text,
    parse_params,
)

__all__ = ["NewJob", "prepare_checked", "prepare_job", "validates_params"]


class NewJob(NamedTuple):
    """A job checked at the door and ready to be written: every field is storable.

    A named tuple, not a dataclass: bulk submission makes one per job, and a tuple is built
    in a third of the time.

    Attributes:
        job_type: its type.
        params_text: its parameters as canonical JSON text.
        idempotency_key: the key, or None.
        max_retries: retries allowed after the first attempt.
        timeout_s: the attempt time limit it asked for, or None.
    """

    job_type: JobType
    params_text: str
    idempotency_key: str | None
    max_retries: int
    timeout_s: float | None


def prepare_job(
    job_type: JobType | str,
    params: Any,
    *,
    idempotency_key: Any = None,
    max_retries: Any = 3,
    timeout_s: Any = None,
    executor: JobExecutor | None = None,
    require_executor: bool = False,
) -> NewJob:
    """Check everything about a new job that can be checked before a transaction.

    Args:
        executor: its ``validate_params`` checks the parameters, if it overrides it.
        require_executor: refuse the job when ``executor`` is None (the runtime runs only the
            types it has executors for).

    Raises:
        UnknownJobType: an unknown type, or none registered when one is required.
        InvalidParams: naming the value that cannot be stored or that the executor refused.
    """
    jt = JobType.parse(job_type)
    return prepare_checked(
        jt, executor, validates_params(executor), params, idempotency_key,
        check_max_retries(max_retries), check_timeout(timeout_s),
        require_executor=require_executor,
    )


def prepare_checked(
    jt: JobType, executor: JobExecutor | None, validates: bool, params: Any, key: Any,
    retries: int, timeout: float | None, *, require_executor: bool = True,
) -> NewJob:
    """:func:`prepare_job` for callers that checked the type, the retries and the timeout once
    for many jobs (bulk submission); ``validates`` is :func:`validates_params` of ``executor``."""
    if executor is None and require_executor:
        raise UnknownJobType(f"no executor is registered for job type {jt.value}")
    if validates:
        params_dict, text = parse_params(params)
    else:
        text = params_text(params)
    key = check_idempotency_key(key)
    if validates:
        assert executor is not None
        executor.validate_params(params_dict)
    return NewJob(jt, text, key, retries, timeout)


def validates_params(executor: JobExecutor | None) -> bool:
    """Does the executor check parameters? One that does not needs no dict decoded for it."""
    return (executor is not None
            and type(executor).validate_params is not JobExecutor.validate_params)
