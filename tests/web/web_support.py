"""What the web's tests share: a store filled with a known set of jobs by a real runtime, and
the web served on a background thread on 127.0.0.1 and a free port."""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import trio
from runtime_support import ScriptedExecutor

from kalam_actors import Job, JobContext, JobDecision, JobId, JobStore, JobType, open_job_manager
from kalam_actors.web import web_task

XSS = '<script>window.__xss = 1</script> & "quoted" <b>bold</b>'
TOKEN = "s3cret-operator-token"


@dataclasses.dataclass(frozen=True)
class Filled:
    """A data directory whose jobs are known: ``root/jobs`` is the store, ``log`` its log."""

    root: Path
    log: Path
    ids: dict[str, JobId]

    @property
    def jobs(self) -> Path:
        return self.root / "jobs"


def _decide(ctx: JobContext, job: Job) -> JobDecision:
    params = ctx.params
    if params.get("fail"):
        return JobDecision.failed("disk on fire", exception_trace="Traceback: OSError: disk")
    if params.get("skip"):
        return JobDecision.skipped("nothing to compact")
    if params.get("xss"):
        return JobDecision.completed(XSS)
    ctx.report_progress(2, 2, "all written")
    return JobDecision.completed(f"flushed {params.get('rows', 0)} rows")


async def fill(root: Path, log: Path) -> dict[str, JobId]:
    ids: dict[str, JobId] = {}
    executors = [ScriptedExecutor(JobType.FLUSH, script=[_decide]),
                 ScriptedExecutor(JobType.COMPACT, script=[_decide])]
    async with open_job_manager(root / "jobs", executors=executors, durable=False,
                                log_file=log, log_level="DEBUG") as manager:
        for i in range(3):
            ids[f"flush{i}"] = await manager.create_job(
                JobType.FLUSH, {"rows": 10 * (i + 1)}, idempotency_key=f"FL:t{i}")
            await manager.wait_job(ids[f"flush{i}"])
        for name, job_type, params in [
            ("failed", JobType.FLUSH, {"fail": True}),
            ("xss", JobType.COMPACT, {"xss": True, "note": "<b>bold</b>"}),
            ("skipped", JobType.COMPACT, {"skip": True}),
        ]:
            ids[name] = await manager.create_job(job_type, params, max_retries=0)
            await manager.wait_job(ids[name])
    # No runtime now: these stay as they are.
    with JobStore(root / "jobs") as store:
        ids["new0"] = store.create_job(JobType.BACKUP, {"namespace_id": "n", "table_name": "a",
                                                        "table_type": "Shared",
                                                        "backup_location": "b"})
        ids["new1"] = store.create_job(JobType.BACKUP, {"namespace_id": "n", "table_name": "b",
                                                        "table_type": "Shared",
                                                        "backup_location": "b"})
        ids["cancelled"] = store.create_job(JobType.BACKUP, {
            "namespace_id": "n", "table_name": "c", "table_type": "Shared",
            "backup_location": "b"})
        store.cancel_job(ids["cancelled"])
    return ids



EXPECTED_COUNTS = {
    ("Completed", "Flush"): 3,
    ("Failed", "Flush"): 1,
    ("Completed", "Compact"): 1,
    ("Skipped", "Compact"): 1,
    ("New", "Backup"): 2,
    ("Cancelled", "Backup"): 1,
}


@contextlib.contextmanager
def running_web(source: Any, **options: Any) -> Iterator[str]:
    """Serve ``web_task(source, port=0, **options)`` on a thread of its own; yield its URL;
    stop it (and re-raise what it failed with) on exit."""
    started = threading.Event()
    state: dict[str, Any] = {}

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            state["url"] = await nursery.start(partial(web_task, source, host="127.0.0.1",
                                                       port=0, **options))
            state["token"] = trio.lowlevel.current_trio_token()
            state["stop"] = nursery.cancel_scope.cancel
            started.set()

    def run() -> None:
        try:
            trio.run(main)
        except BaseException as exc:  # handed to the test below
            state["error"] = exc
        finally:
            started.set()

    thread = threading.Thread(target=run, name="web-under-test", daemon=True)
    thread.start()
    assert started.wait(30), "the web did not start within 30 s"
    if "url" not in state:
        thread.join(10)
        raise state["error"]
    try:
        yield state["url"]
    finally:
        with contextlib.suppress(trio.RunFinishedError):
            trio.from_thread.run_sync(state["stop"], trio_token=state["token"])
        thread.join(30)
        assert not thread.is_alive(), "the web did not stop within 30 s"
        if "error" in state:
            raise state["error"]
