"""Helpers shared by the measurement modules (they run inside the child process)."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

WORK = Path(__file__).resolve().parent / ".work"


def quiet_logging(level: str | None = None) -> None:
    """No loguru sinks (the runtime logs every job at DEBUG); or one file sink at ``level``."""
    from loguru import logger

    logger.remove()
    if level is not None:
        WORK.mkdir(parents=True, exist_ok=True)
        logger.add(str(WORK / f"bench-{os.getpid()}.log"), level=level, enqueue=False)


@contextmanager
def scratch_dir(name: str) -> Iterator[Path]:
    """A fresh folder under ``bench/.work`` (on the same disk as the repo), removed after."""
    WORK.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=WORK))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def noop_executor(
    *, prefetch: int = 1, actors: int = 1, rerun_on_recovery: bool = True
) -> Any:
    """A FLUSH executor whose jobs do nothing and complete: the job every figure moves.
    A no-op is safe to run again, and says so: its attempts start at once and their
    Running and Completed writes ride one group commit. (An executor that is not safe to
    re-run waits for its Running state to be on disk: one commit per job per actor, which
    B0, a new user's defaults, measures.) kalam_actors is imported here, in the measuring
    child, not at harness start."""
    from kalam_actors import JobDecision, JobExecutor, JobType

    class Noop(JobExecutor):
        job_type = JobType.FLUSH
        name = "noop"

        def execute(self, ctx: Any, job: Any) -> Any:
            return JobDecision.completed()

    Noop.prefetch = prefetch  # type: ignore[attr-defined]
    Noop.actors = actors
    Noop.rerun_on_recovery = rerun_on_recovery
    return Noop()


def rss_kb() -> dict[str, int]:
    """VmRSS, RssAnon and RssFile of this process in KiB (from /proc/self/status)."""
    out: dict[str, int] = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
                out[key] = int(value.split()[0])
    return out


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    i = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[i]


class Stopwatch:
    def __init__(self) -> None:
        self.t0 = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0


def thread_cpu_s() -> dict[str, float]:
    """CPU seconds (user + system) of each live thread of this process, from /proc, keyed
    "loop" (the main thread: trio), "writer" (trio's worker threads: the group commits) and
    "other" (executor actors and the rest, summed). Threads that ended are not counted."""
    import threading

    main = threading.main_thread().native_id
    tick = os.sysconf("SC_CLK_TCK")
    out = {"loop": 0.0, "writer": 0.0, "other": 0.0}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/self/task/{tid}/comm") as f:
                name = f.read().strip()
        except OSError:
            continue  # the thread ended while we looked
        cpu = (int(fields[11]) + int(fields[12])) / tick
        kind = ("loop" if int(tid) == main else
                "writer" if name.startswith("Trio thread") else "other")
        out[kind] += cpu
    return out

