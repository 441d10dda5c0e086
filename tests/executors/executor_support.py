"""Helpers for the executor tests: a fake clock and a way to run one job as the runtime would."""

from __future__ import annotations

from typing import Any

from engine_support import FakeClock

from kalam_actors import JobDecision
from kalam_actors.context import JobContext
from kalam_actors.executor import JobExecutor
from kalam_actors.model import Progress
from kalam_actors.testing import ContextRecorder, make_context, make_job


def run_job(
    executor: JobExecutor, params: dict[str, Any], storage: Any, *,
    cancel_after_progress: int | None = None,
) -> tuple[JobDecision, ContextRecorder]:
    """Validate and execute one job the way the runtime would; with ``cancel_after_progress``
    the job is cancelled right after its n-th progress report."""
    executor.validate_params(params)
    job = make_job(executor.job_type, params)
    if cancel_after_progress is None:
        ctx, recorder = make_context(job, storage=storage)
        return executor.execute(ctx, job), recorder
    recorder = ContextRecorder()

    def sink(_job_id: object, progress: Progress) -> None:
        recorder.progress.append(progress)
        if len(recorder.progress) >= cancel_after_progress:
            recorder.cancel()

    ctx = JobContext(job, storage=storage, attempt=1, progress_sink=sink,
                     cancel_event=recorder.cancel_event)
    return executor.execute(ctx, job), recorder


def table_params(table: str, table_type: str, ns: str = "default", **extra: Any
                 ) -> dict[str, Any]:
    return {"namespace_id": ns, "table_name": table, "table_type": table_type, **extra}


__all__ = ["FakeClock", "run_job", "table_params"]
