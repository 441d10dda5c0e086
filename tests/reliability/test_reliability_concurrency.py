"""Issue 7.3 — 1,000 concurrent create_job calls with one idempotency key, from trio tasks in
the runtime's thread, from threads (start_job_manager's blocking facade), and from two other
processes (JobStore): exactly one active job; every other caller gets IdempotentConflict naming
it; nothing else is written.
"""

from __future__ import annotations

import collections
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import trio
import trio.testing
from reliability_support import HERE, audit_store, report

from kalam_actors import IdempotentConflict, JobDecision, JobExecutor, JobType, start_job_manager

KEY = "the-one-key"
PARAMS = {"namespace_id": "rel", "table_name": "race", "table_type": "Shared"}
TRIO_TASKS, THREADS, THREAD_CALLS, PROCESSES, PROCESS_CALLS = 400, 50, 4, 2, 200


class Holding(JobExecutor):
    """Keeps the winning job Running (so it keeps holding the key) until released."""

    job_type = JobType.FLUSH
    name = "holding"
    release = threading.Event()

    def execute(self, ctx: Any, job: Any) -> JobDecision:
        self.release.wait(120)
        return JobDecision.completed("released")


def _outcome(call: Any) -> str:
    try:
        return "OK " + call()
    except IdempotentConflict as exc:
        return "CONFLICT " + exc.existing_job_id
    except Exception as exc:
        return f"ERROR {type(exc).__name__} {exc}"


def test_one_key_one_active_job_across_tasks_threads_processes(tmp_path: Path) -> None:
    store_path = tmp_path / "store"
    executor = Holding()
    executor.release = threading.Event()
    with start_job_manager(store_path, executors=[executor], poll_interval_s=0.01) as jm:
        procs = [
            subprocess.Popen(
                [sys.executable, str(HERE / "submit_child.py"), str(store_path), KEY,
                 str(PROCESS_CALLS), "20"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            )
            for _ in range(PROCESSES)
        ]
        try:
            for p in procs:
                assert p.stdout is not None
                assert p.stdout.readline().strip() == b"READY", p.stderr.read() if p.stderr else ""
            results: list[str] = []
            lock = threading.Lock()
            barrier = threading.Barrier(THREADS + 1)

            def thread_worker() -> None:
                barrier.wait()
                for _ in range(THREAD_CALLS):
                    line = _outcome(lambda: jm.create_job("FL", PARAMS, idempotency_key=KEY))
                    with lock:
                        results.append(line)

            threads = [threading.Thread(target=thread_worker) for _ in range(THREADS)]
            for t in threads:
                t.start()

            async def trio_tasks() -> list[str]:
                out: list[str] = []

                async def one(go: trio.Event) -> None:
                    await go.wait()
                    try:
                        out.append("OK " + await jm.manager.create_job(
                            "FL", PARAMS, idempotency_key=KEY))
                    except IdempotentConflict as exc:
                        out.append("CONFLICT " + exc.existing_job_id)
                    except Exception as exc:
                        out.append(f"ERROR {type(exc).__name__} {exc}")

                go = trio.Event()
                async with trio.open_nursery() as nursery:
                    for _ in range(TRIO_TASKS):
                        nursery.start_soon(one, go)
                    await trio.testing.wait_all_tasks_blocked()
                    # Everyone goes at once: the processes, the threads, the trio tasks.
                    for p in procs:
                        assert p.stdin is not None
                        p.stdin.write(b"go\n")
                        p.stdin.flush()
                    await trio.to_thread.run_sync(barrier.wait)
                    go.set()
                return out

            results.extend(trio.from_thread.run(trio_tasks, trio_token=jm._token))
            for t in threads:
                t.join(60)
            for p in procs:
                out, err = p.communicate(timeout=60)
                assert p.returncode == 0, err.decode()
                results.extend(out.decode().split("\n"))
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        results = [r for r in results if r]
        assert len(results) == TRIO_TASKS + THREADS * THREAD_CALLS + PROCESSES * PROCESS_CALLS
        kinds = collections.Counter(r.split(" ")[0] for r in results)
        errors = [r for r in results if r.startswith("ERROR")]
        assert not errors, errors[:5]
        winners = {r.split(" ")[1] for r in results if r.startswith("OK")}
        assert kinds["OK"] == 1 and len(winners) == 1, f"{kinds['OK']} callers won: {winners}"
        (winner,) = winners
        holders = {r.split(" ")[1] for r in results if r.startswith("CONFLICT")}
        assert holders == {winner}, f"conflicts named {holders - {winner}} besides {winner}"
        audit = audit_store(jm.manager.store)
        assert list(audit.records) == [winner], "a refused create wrote a job"
        executor.release.set()
        jm.wait_job(winner, timeout_s=60)
    report("concurrency", callers=len(results), active_jobs=1, conflicts=kinds["CONFLICT"],
           processes=PROCESSES, threads=THREADS, trio_tasks=TRIO_TASKS)
