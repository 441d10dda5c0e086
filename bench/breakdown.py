"""Where one durable no-op job's Python time goes: each stage of its life timed on its own,
in one thread, on a real store (no contention between threads, no waiting on the GIL).

Stages follow the runtime's hot path for one job of B1: validate its parameters (prepare),
insert it Queued (create), move it Running (dispatch), build what the actor is told and what
the actor builds (a cancel flag, JobContext, record_to_job), execute, move it Completed, log.
Batch-level costs (commit, fsync, the to_thread hop) are divided by the batch size. A pykka
tell and a run_sync_soon are timed per call: the runtime pays them once per actor per commit
and once per burst of results, so the sum leaves them out. The sum is a floor on CPU time per
job in B1; B1's measured CPU time per job shows what threads and waiting add. Each stage runs
on its own, so it misses what the runtime shares between stages within one transaction (a job
created and started in one commit is decoded and encoded once).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from ._common import noop_executor, quiet_logging, scratch_dir


def _per_item(fn: Callable[[int], Any], n: int, repeats: int = 5) -> float:
    """Median over ``repeats`` of (time of fn(n)) / n, in µs."""
    times = []
    for _ in range(repeats):
        t = time.perf_counter_ns()
        fn(n)
        times.append((time.perf_counter_ns() - t) / n / 1000)
    times.sort()
    return times[len(times) // 2]


def stages(batch: int = 100, rounds: int = 20) -> dict[str, Any]:
    quiet_logging()
    import pykka
    import trio
    from loguru import logger

    from kalam_actors import JobStatus, JobStore, JobType
    from kalam_actors.context import CancelFlag, JobContext
    from kalam_actors.ids import JobId
    from kalam_actors.store import new_record, now_us, prepare_job, record_to_job

    out: dict[str, float] = {}
    n = batch * rounds
    with scratch_dir("breakdown") as path:
        ex = noop_executor()
        store = JobStore(path, executors=[ex])
        out["prepare (validate params)"] = _per_item(
            lambda k: [prepare_job(JobType.FLUSH, {}, executor=ex, require_executor=True)
                       for _ in range(k)], n)
        out["JobId.new"] = _per_item(lambda k: [JobId.new(JobType.FLUSH) for _ in range(k)], n)
        ids: list[str] = []

        def create(k: int) -> None:
            now = now_us()

            def fill(txn: Any) -> None:
                for _ in range(k):
                    job_id = JobId.new(JobType.FLUSH)
                    txn.insert(new_record(job_id, "{}", key=None, max_retries=3, now=now,
                                          status=JobStatus.QUEUED))
                    ids.append(job_id)

            store.write(fill, sync=False)

        out["create: insert Queued (incl. JobId.new)"] = _per_item(create, n)
        started: list[dict[str, Any]] = []

        def dispatch(k: int) -> None:
            todo = [ids.pop() for _ in range(k)]
            now = now_us()

            def move(txn: Any) -> None:
                for job_id in todo:
                    rec = txn.require(job_id)
                    txn.move(rec, JobStatus.RUNNING, now, m=None, pg=None)
                    started.append(rec)

            store.write(move, sync=False)

        out["dispatch: read + move Queued→Running"] = _per_item(dispatch, n, repeats=3)
        recs = list(started)
        out["record_to_job"] = _per_item(lambda k: [record_to_job(r) for r in recs[:k]], n)
        job = record_to_job(recs[0])
        out["CancelFlag() (per attempt)"] = _per_item(
            lambda k: [CancelFlag() for _ in range(k)], n)
        out["JobContext(...)"] = _per_item(
            lambda k: [JobContext(job, storage=None, attempt=1, progress_sink=lambda *a: None,
                                  cancel_event=None) for _ in range(k)], n)
        out["logger.debug (no sinks), per call"] = _per_item(
            lambda k: [logger.debug(f"[{job.job_id}] Running (attempt 1)") for _ in range(k)], n)

        class Sink(pykka.ThreadingActor):
            use_daemon_thread = True

            def on_receive(self, message: Any) -> Any:
                return None

        ref = Sink.start()
        try:
            def tells(k: int) -> None:
                for i in range(k):
                    ref.tell(i)

            # Paid once per actor per commit (one Attempts message), not per job.
            out["pykka tell (caller side), per message"] = _per_item(tells, n)
        finally:
            ref.stop()

        async def posts(k: int) -> None:
            token = trio.lowlevel.current_trio_token()
            send, receive = trio.open_memory_channel[Any](float("inf"))
            times: list[float] = []

            def producer() -> None:
                t = time.perf_counter_ns()
                for i in range(k):
                    token.run_sync_soon(send.send_nowait, i)
                times.append((time.perf_counter_ns() - t) / k / 1000)

            thread = threading.Thread(target=producer)
            thread.start()
            for _ in range(k):
                await receive.receive()
            thread.join()
            # Paid once per burst of results (the first since the loop last took them).
            out["run_sync_soon from a thread (caller side), per call"] = times[0]

        trio.run(posts, n)
        out["execute (no-op) + JobDecision"] = _per_item(
            lambda k: [ex.execute(None, job) for _ in range(k)], n)

        def complete(k: int) -> None:
            todo = [started.pop()["id"] for _ in range(k)]
            now = now_us()

            def move(txn: Any) -> None:
                for job_id in todo:
                    rec = txn.get(job_id)
                    txn.move(rec, JobStatus.COMPLETED, now, m=None)

            store.write(move, sync=False)

        out["complete: read + move Running→Completed"] = _per_item(complete, n, repeats=3)
        out[f"commit + fsync, per job (batch of {batch})"] = _per_item(
            lambda k: [store.write(lambda t: t.put_slot("bench", 1), sync=True)
                       for _ in range(max(1, k // batch))], n)

        async def hop(k: int) -> None:
            for _ in range(max(1, k // batch)):
                await trio.to_thread.run_sync(lambda: None)

        t = time.perf_counter_ns()
        trio.run(hop, n)
        out[f"trio.to_thread hop, per job (batch of {batch})"] = (
            (time.perf_counter_ns() - t) / n / 1000)
        store.close()
    total = sum(v for k, v in out.items()
                if k != "JobId.new" and not k.endswith(("per message", "per call")))
    return {"stages_us": out, "sum_us": total}
