"""Helpers for testing executors without a running job manager."""

from __future__ import annotations

import dataclasses
import threading
from datetime import UTC, datetime
from typing import Any

import orjson

from .context import JobContext
from .ids import JobId, JobType
from .model import Job, JobStatus, Progress

__all__ = ["ContextRecorder", "make_context", "make_job"]


def make_job(job_type: JobType, params: dict[str, Any], **fields: Any) -> Job:
    """A Running job record of ``job_type`` with ``params``, as the runtime would hand it over."""
    now = datetime.now(UTC)
    job = Job(
        job_id=JobId.new(job_type),
        job_type=job_type,
        status=JobStatus.RUNNING,
        parameters=orjson.dumps(params).decode(),
        idempotency_key=None,
        retry_count=0,
        max_retries=3,
        message=None,
        exception_trace=None,
        progress=None,
        created_at=now,
        updated_at=now,
        started_at=now,
        finished_at=None,
        run_after=None,
    )
    return dataclasses.replace(job, **fields) if fields else job


@dataclasses.dataclass
class ContextRecorder:
    """What a test context saw: progress reports, and the switch that cancels it."""

    progress: list[Progress] = dataclasses.field(default_factory=list)
    cancel_event: threading.Event = dataclasses.field(default_factory=threading.Event)

    def cancel(self) -> None:
        self.cancel_event.set()


def make_context(
    job: Job, *, storage: Any = None, attempt: int = 1
) -> tuple[JobContext, ContextRecorder]:
    """A JobContext for ``job`` whose progress is recorded and whose cancel a test controls."""
    recorder = ContextRecorder()
    ctx = JobContext(
        job,
        storage=storage,
        attempt=attempt,
        progress_sink=lambda _job_id, progress: recorder.progress.append(progress),
        cancel_event=recorder.cancel_event,
    )
    return ctx, recorder
