"""Logging: every line about a job starts with ``[<job_id>]`` (invariant 5), and the library is
quiet until the application turns its logs on.

The prefix test captures EVERY line the runtime logs, not only the lines that mention a job:
a line that lost its id entirely (the retry warning, ``ctx.log_error``, the actor's "Running")
would never be looked at by a test that filters on the id first. Lines that are not about a
job are enumerated below, and nothing else may go without a prefix.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar, Final

import pytest
import trio
from loguru import logger
from runtime_support import wait_status

from kalam_actors import (
    Job,
    JobContext,
    JobDecision,
    JobExecutor,
    JobStatus,
    JobType,
    open_job_manager,
)

S = JobStatus
LIBRARIES: Final = ("kalam_actors", "supervisors")
JOB_ID: Final = re.compile(r"\b[A-Z]{2}-[0-9A-Z]{26}\b")

NOT_ABOUT_A_JOB: Final = (
    # The runtime's own summary of what it recovered at start.
    re.compile(r"recovery: \d+ running jobs failed, \d+ retried, \d+ cancelled"),
    # Its actors' supervisor: actors start, stop, are replaced (a job's actor is not the job).
    re.compile(r"supervisor 'executor-actors': child '[A-Z]{2}#\d+' "
               r"(started|exited|crashed|restarted|abandoned|terminated) \(.*\)"),
    re.compile(r"supervisor 'executor-actors': child '[A-Z]{2}#\d+' failed while stopping"),
)
"""Every line allowed not to start with a job id. A line about a job must never match one."""


@dataclasses.dataclass(frozen=True)
class Logged:
    module: str
    level: str
    message: str
    job_id: str | None
    """The ``job_id`` the line was bound to, if any."""


def unprefixed(lines: list[Logged], job_ids: set[str]) -> list[Logged]:
    """The lines that break the rule: a line either starts with ``[<id>] `` of one of
    ``job_ids`` (and, when bound to a job, that job), or is one of the lines not about a job
    and names none."""
    bad = []
    for line in lines:
        found = re.match(r"\[([^\]]*)\] ", line.message)
        if found:
            ok = found[1] in job_ids and line.job_id in (None, found[1])
        else:
            ok = (line.job_id is None and not JOB_ID.search(line.message)
                  and any(p.fullmatch(line.message) for p in NOT_ABOUT_A_JOB))
        if not ok:
            bad.append(line)
    return bad


@pytest.fixture
def logged() -> Iterator[list[Logged]]:
    """Every line kalam_actors and supervisors log during the test, at DEBUG and above."""
    lines: list[Logged] = []

    def sink(message: Any) -> None:
        r = message.record
        lines.append(Logged(r["name"], r["level"].name, r["message"], r["extra"].get("job_id")))

    sink_id = logger.add(sink, level="DEBUG")
    for name in LIBRARIES:
        logger.enable(name)
    try:
        yield lines
    finally:
        for name in LIBRARIES:
            logger.disable(name)  # as on import: a library is quiet
        logger.remove(sink_id)


class Paths(JobExecutor):
    """One job per path through the runtime, chosen by ``params["path"]``."""

    job_type: ClassVar[JobType] = JobType.FLUSH
    name: ClassVar[str] = "paths"

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def execute(self, ctx: JobContext, job: Job) -> Any:
        path = job.params["path"]
        if path == "complete":
            ctx.report_progress(0, 2, "starting")
            ctx.log_debug("a debug note")
            ctx.log_info("an info note")
            ctx.log_warn("a warning")
            ctx.log_error("an error")
            ctx.report_progress(2, 2, "done")
            return JobDecision.completed("all done")
        if path == "retry":
            if ctx.attempt == 1:
                return JobDecision.retry("transient", backoff_ms=100)
            if ctx.attempt == 2:
                raise OSError("disk gone")
            if ctx.attempt == 3:
                return "not a decision"
            return JobDecision.completed("recovered")
        if path == "fail":
            return JobDecision.failed("broken")
        if path == "skip":
            return JobDecision.skipped("nothing to do")
        if path == "cancel":
            self.entered.set()
            while not ctx.cancelled:
                time.sleep(0.001)  # a job body working until it sees the cancel
            return JobDecision.failed("stopped: cancelled")
        if path == "hang":
            self.entered.set()
            self.release.wait(30)
            return JobDecision.completed("released")
        raise AssertionError(path)


class Stuck(Paths):
    """Not cancellable, not safe to re-run: left Running by a shutdown that cannot wait."""

    job_type: ClassVar[JobType] = JobType.CLEANUP
    name: ClassVar[str] = "stuck"
    cancellable: ClassVar[bool] = False


async def entered(executor: Paths) -> None:
    assert await trio.to_thread.run_sync(executor.entered.wait, 10), "the job never started"
    executor.entered.clear()


async def test_every_line_about_a_job_starts_with_its_id(
    tmp_path: Path, vclock: object, logged: list[Logged]
) -> None:
    """Given one job down every path (completed, retried three ways, failed, skipped,
    cancelled, timed out, left running at shutdown, recovered), then every line logged
    starts with its job's id, save the enumerated lines about no job."""
    paths, stuck = Paths(), Stuck()
    ids: dict[str, str] = {}
    try:
        async with open_job_manager(tmp_path / "jobs", executors=[paths, stuck],
                                    shutdown_timeout_s=0.5) as manager:
            for path in ("complete", "retry", "fail", "skip"):
                ids[path] = await manager.create_job(JobType.FLUSH, {"path": path})
                await manager.wait_job(ids[path])

            ids["cancel"] = await manager.create_job(JobType.FLUSH, {"path": "cancel"})
            await entered(paths)
            await manager.cancel_job(ids["cancel"])
            assert (await manager.wait_job(ids["cancel"])).status is S.CANCELLED

            ids["timeout"] = await manager.create_job(JobType.FLUSH, {"path": "hang"},
                                                      timeout_s=1.0, max_retries=0)
            assert (await manager.wait_job(ids["timeout"])).status is S.FAILED
            paths.release.set()

            ids["shutdown"] = await manager.create_job(JobType.CLEANUP, {"path": "hang"})
            await entered(stuck)
            await wait_status(manager, ids["shutdown"], S.RUNNING)
        stuck.release.set()
        async with open_job_manager(tmp_path / "jobs", executors=[paths, stuck]) as manager:
            assert (await manager.get_job(ids["shutdown"])).status is S.FAILED  # type: ignore[union-attr]
    finally:
        paths.release.set()
        stuck.release.set()

    assert unprefixed(logged, set(ids.values())) == []
    of = {path: [(line.level, line.message) for line in logged
                 if line.message.startswith(f"[{job_id}] ")]
          for path, job_id in ids.items()}
    for path, job_id in ids.items():
        of[path] = [(level, text.removeprefix(f"[{job_id}] ")) for level, text in of[path]]
    assert of["complete"] == [
        ("DEBUG", "Running (attempt 1)"),
        ("DEBUG", "a debug note"),
        ("INFO", "an info note"),
        ("WARNING", "a warning"),
        ("ERROR", "an error"),
        ("DEBUG", "completed: all done"),
    ]
    assert of["retry"] == [
        ("DEBUG", "Running (attempt 1)"),
        ("WARNING", "attempt failed: transient"),
        ("DEBUG", "Running (attempt 2)"),
        ("WARNING", "attempt failed: OSError: disk gone"),
        ("DEBUG", "Running (attempt 3)"),
        ("WARNING", "attempt failed: paths returned 'not a decision', not a JobDecision"),
        ("DEBUG", "Running (attempt 4)"),
        ("DEBUG", "completed: recovered"),
    ]
    assert of["fail"] == [("DEBUG", "Running (attempt 1)"), ("ERROR", "Failed: broken")]
    assert of["skip"] == [("DEBUG", "Running (attempt 1)"), ("DEBUG", "skipped: nothing to do")]
    assert of["cancel"] == [
        ("DEBUG", "Running (attempt 1)"),
        ("INFO", "cancel accepted; stopping at its next safe point"),
        ("INFO", "Cancelled by user"),
    ]
    timed_out = "timed out: the attempt ran past its 1 s limit"
    assert of["timeout"] == [
        ("DEBUG", "Running (attempt 1)"),
        ("WARNING", f"{timed_out}; replacing actor FL#0"),
        ("WARNING", f"attempt failed: {timed_out}"),
    ]
    assert of["shutdown"] == [
        ("DEBUG", "Running (attempt 1)"),
        ("WARNING", "still running at shutdown; it will be recovered at next start"),
    ]
    assert ("INFO", "recovery: 1 running jobs failed, 0 retried, 0 cancelled") in [
        (line.level, line.message) for line in logged]
    assert {line.module for line in logged} >= {
        "kalam_actors.actors", "kalam_actors.manager", "supervisors._supervisor"}


def test_the_check_catches_a_job_line_that_lost_its_id() -> None:
    job = "FL-06H28Q8E3891PJNRJQX7E1F0WM"
    other = "CL-06H28Q8E3891PJNRJQX7E1F0WN"

    def line(message: str, bound: str | None = None) -> Logged:
        return Logged("kalam_actors.manager", "INFO", message, bound)

    good = [line(f"[{job}] attempt failed: transient"), line(f"[{job}] an error", job),
            line("recovery: 1 running jobs failed, 0 retried, 0 cancelled"),
            line("supervisor 'executor-actors': child 'FL#0' restarted (TimeoutError())")]
    bad = [line("attempt failed: transient"), line("an error", job),
           line("Running (attempt 1)"), line(f"Running (attempt 1) of {job}"),
           line(f"[{job}]attempt failed"), line(f"[{other}] unknown job"),
           line(f"[{job}] bound to another job", other),
           line(f"recovery: 1 running jobs failed, 0 retried, 0 cancelled ({job})")]
    assert unprefixed(good + bad, {job}) == bad


# --------------------------------------------------------------------------- quiet by default


EMBED: Final = """
import sys

import trio

import kalam_actors
from kalam_actors import JobDecision, JobExecutor, JobType, open_job_manager


class NoOp(JobExecutor):
    job_type = JobType.FLUSH
    name = "no-op"

    def execute(self, ctx, job):
        if ctx.attempt == 1:
            return JobDecision.retry("once more", backoff_ms=1)
        return JobDecision.completed("done")


async def main(path, loud):
    if loud:
        from loguru import logger

        logger.enable("kalam_actors")
    async with open_job_manager(path, executors=[NoOp()], durable=False) as manager:
        job = await manager.wait_job(await manager.create_job(JobType.FLUSH, {}))
    assert job.status.value == "Completed", job
    return job.job_id


job_id = trio.run(main, sys.argv[1], sys.argv[2] == "loud")
with open(sys.argv[3], "w") as f:
    f.write(job_id)
"""


def embed(tmp_path: Path, mode: str) -> tuple[str, subprocess.CompletedProcess[str]]:
    """Run one job in a fresh process that only imports kalam_actors (loguru keeps its
    default sink: stderr, from DEBUG); returns the job id and the process."""
    out = tmp_path / f"{mode}.id"
    result = subprocess.run(
        [sys.executable, "-c", EMBED, str(tmp_path / mode), mode, str(out)],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return out.read_text(), result


def test_embedding_the_library_logs_nothing(tmp_path: Path) -> None:
    _, result = embed(tmp_path, "quiet")
    assert (result.stdout, result.stderr) == ("", "")


def test_enabled_job_logs_carry_the_job_id(tmp_path: Path) -> None:
    job_id, result = embed(tmp_path, "loud")
    assert result.stdout == ""
    # loguru's default format: "<time> | <level> | <module>:<function>:<line> - <message>"
    messages = [line.split(" - ", 1)[1] for line in result.stderr.splitlines()]
    assert messages == [
        f"[{job_id}] Running (attempt 1)",
        f"[{job_id}] attempt failed: once more",
        f"[{job_id}] Running (attempt 2)",
        f"[{job_id}] completed: done",
    ]


def test_an_applications_own_executor_logs_nothing_until_asked() -> None:
    # ctx.log_* lines are the library's job lines, whoever wrote the executor.
    code = (
        "import tempfile, trio\n"
        "from kalam_actors import JobDecision, JobExecutor, JobType, open_job_manager\n"
        "class Mine(JobExecutor):\n"
        "    job_type = JobType.FLUSH\n"
        "    def execute(self, ctx, job):\n"
        "        ctx.log_info('hello'); ctx.log_error('oops')\n"
        "        return JobDecision.completed()\n"
        "async def main():\n"
        "    async with open_job_manager(tempfile.mkdtemp(), executors=[Mine()]) as m:\n"
        "        await m.wait_job(await m.create_job(JobType.FLUSH, {}))\n"
        "trio.run(main)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert (result.stdout, result.stderr) == ("", "")
