"""Executors for the CLI tests, loaded into ``kalam-actors run`` with ``--plugin``.

They replace Flush and Cleanup with jobs the test steers through files in the folder named by
``$KALAM_TEST_CONTROL``: an attempt writes ``<job_id>.started`` when it begins, then reports
progress until ``<job_id>.go`` exists (or, when ``duration`` holds a number of seconds, until
that much time has passed) or it is cancelled. Their parameters are the built-in ones, so
``submit`` (which validates with the built-in executors) accepts them.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, ClassVar

from kalam_actors import JobContext, JobDecision, JobExecutor, JobType
from kalam_actors.executors import CleanupExecutor, FlushExecutor
from kalam_actors.model import Job


class _Steered(JobExecutor):
    def __init__(self, control: Path) -> None:
        self.control = control

    def execute(self, ctx: JobContext, job: Job) -> JobDecision:
        (self.control / f"{job.job_id}.started").write_text(str(os.getpid()))
        duration_file = self.control / "duration"
        duration = float(duration_file.read_text()) if duration_file.exists() else None
        start = time.monotonic()
        step = 0
        while not (self.control / f"{job.job_id}.go").exists():
            if ctx.cancelled:
                return JobDecision.failed("stopped: cancelled")
            if duration is not None and time.monotonic() - start >= duration:
                break
            step += 1
            ctx.report_progress(step, None, "working")
            time.sleep(0.02)  # a job doing slow work, in its own actor thread
        return JobDecision.completed(f"steered job done after {step} steps")


class SteeredFlush(_Steered):
    job_type: ClassVar[JobType] = JobType.FLUSH
    name: ClassVar[str] = "steered flush"
    cancellable: ClassVar[bool] = True

    def validate_params(self, params: dict[str, Any]) -> None:
        FlushExecutor().validate_params(params)


class SteeredCleanup(_Steered):
    job_type: ClassVar[JobType] = JobType.CLEANUP
    name: ClassVar[str] = "steered cleanup"
    cancellable: ClassVar[bool] = False
    rerun_on_recovery: ClassVar[bool] = False

    def validate_params(self, params: dict[str, Any]) -> None:
        CleanupExecutor().validate_params(params)


def executors(engine: Any) -> list[JobExecutor]:
    control = Path(os.environ["KALAM_TEST_CONTROL"])
    return [SteeredFlush(control), SteeredCleanup(control)]
