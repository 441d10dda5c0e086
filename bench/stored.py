"""The store side: B4 (bulk create), B5 (reads on a big store), B6 (startup recovery),
B7 (resident memory with 1M queued jobs), B8 (100k due retries, one timer).

Big stores are written straight through ``JobStore.write`` + ``StoreTxn.insert`` (the same
records and indexes the runtime writes), not by running a million jobs.
"""

from __future__ import annotations

import gc
import random
import resource
import shutil
import time
from pathlib import Path
from typing import Any

import trio

from ._common import WORK, noop_executor, quiet_logging, rss_kb, scratch_dir

STORES = WORK / "stores"


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def populate(path: Path, status: str, n: int, *, key_every: int = 0, key_tag: str = "k",
             ra_start: int | None = None, ra_step: int = 0, batch: int = 50_000) -> list[str]:
    """Insert ``n`` records of ``status`` (a JobStatus name) into the store at ``path``.

    Every ``key_every``-th record gets an idempotency key ``f"{key_tag}{i}"``. Retrying records
    get due times ``ra_start + i * ra_step`` µs. Returns a sample of the ids (every 1000th).
    """
    from kalam_actors import JobId, JobStatus, JobStore, JobType
    from kalam_actors.store import new_record, now_us

    st = JobStatus[status]
    sample: list[str] = []
    with JobStore(path, executors=[]) as store:
        done = 0
        while done < n:
            size = min(batch, n - done)
            now = now_us()

            def fill(txn: Any, start: int = done, size: int = size, now: int = now) -> None:
                for i in range(start, start + size):
                    job_id = JobId.new(JobType.FLUSH)
                    key = f"{key_tag}{i}" if key_every and i % key_every == 0 else None
                    # Distinct timestamps, as in a real store (no two jobs share a µs here).
                    rec = new_record(job_id, "{}", key=key, max_retries=3, now=now + i,
                                     status=st)
                    if st is JobStatus.RETRYING:
                        rec["ra"] = (ra_start or now) + i * ra_step
                        rec["rc"] = 1
                    elif st is JobStatus.RUNNING:
                        rec["st"] = now + i
                    elif st.is_terminal:
                        rec["st"] = now + i
                        rec["f"] = now + i
                    txn.insert(rec)
                    if i % 1000 == 0:
                        sample.append(job_id)

            store.write(fill)
            done += size
    return sample


def _cached_store(name: str, build: Any) -> Path:
    """A store built once per machine under bench/.work/stores (reused by later runs)."""
    path = STORES / name
    marker = path / "complete"
    if not marker.exists():
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        build(path)
        marker.write_text("ok\n")
    return path


# --------------------------------------------------------------------------- B4


def bulk_create(n: int, durable: bool = True) -> dict[str, Any]:
    """One ``create_jobs`` call of n no-op jobs into a running runtime (dispatch paused by an
    executor with no free room is not needed: the call returns when the batch is committed)."""
    quiet_logging()
    from kalam_actors import JobType, open_job_manager

    executor = noop_executor()
    async def main() -> dict[str, Any]:
        with scratch_dir("bulk") as path:
            async with open_job_manager(path, executors=[executor], durable=durable) as m:
                specs: list[tuple[JobType, dict[str, Any]]] = [(JobType.FLUSH, {})] * n
                cpu0 = _cpu_s()
                t0 = time.perf_counter()
                ids = await m.create_jobs(specs)
                elapsed = time.perf_counter() - t0
                cpu = _cpu_s() - cpu0
                assert len(ids) == n
        return {"rate": n / elapsed, "elapsed_s": elapsed, "cpu_us_per_job": cpu * 1e6 / n}

    return trio.run(main)


# --------------------------------------------------------------------------- B5


def _b5_store(terminal: int, queued: int) -> Path:
    def build(path: Path) -> None:
        sample = populate(path, "COMPLETED", terminal, key_every=10, key_tag="done-")
        sample += populate(path, "QUEUED", queued, key_every=1, key_tag="live-")
        # Every 1000th id across the whole store: get_job reads are spread over all of it.
        (path / "sample-ids.txt").write_text("\n".join(sample) + "\n")

    return _cached_store(f"b5v3-{terminal}-{queued}", build)


def _timeit(fn: Any, reps: int) -> float:
    """Median µs per call over ``reps`` calls (each timed on its own)."""
    times = []
    for _ in range(reps):
        t = time.perf_counter_ns()
        fn()
        times.append(time.perf_counter_ns() - t)
    times.sort()
    return times[len(times) // 2] / 1000


def reads(terminal: int, queued: int, reps: int = 2000) -> dict[str, Any]:
    """On a store of ``terminal`` Completed + ``queued`` Queued jobs (all Queued ones hold a
    key): list_jobs(status=Queued, limit=100), get_job of a random id (from every 1000th id
    of the whole store; each sampled id read once before timing), and the
    idempotency check two ways — the keys-index lookup (list_jobs by key over active statuses)
    and a create_job that conflicts (its write transaction aborts)."""
    quiet_logging()
    from kalam_actors import IdempotentConflict, JobFilter, JobStatus, JobStore, JobType

    path = _b5_store(terminal, queued)
    sample_ids = (path / "sample-ids.txt").read_text().split()
    with JobStore(path, executors=[]) as store:
        rng = random.Random(7)
        listing = JobFilter(status=JobStatus.QUEUED, limit=100)
        active = (JobStatus.NEW, JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.RETRYING)
        # Warm up: this process maps the store afresh; first touches of its pages fault.
        for job_id in sample_ids:
            store.get_job(job_id)
        for _ in range(20):
            store.list_jobs(listing)
        list_us = _timeit(lambda: store.list_jobs(listing), max(50, reps // 20))
        get_us = _timeit(lambda: store.get_job(rng.choice(sample_ids)), reps)
        key_us = _timeit(
            lambda: store.list_jobs(
                JobFilter(idempotency_key=f"live-{rng.randrange(queued)}", status=active)
            ),
            reps,
        )

        def conflict() -> None:
            try:
                store.create_job(JobType.FLUSH, {}, idempotency_key=f"live-{rng.randrange(queued)}")
            except IdempotentConflict:
                return
            raise AssertionError("expected a conflict")

        conflict_us = _timeit(conflict, reps // 4)
    return {"list_queued_100_us": list_us, "get_job_us": get_us, "key_lookup_us": key_us,
            "create_conflict_us": conflict_us}


# --------------------------------------------------------------------------- B6


def recovery(running: int, rerun: bool = False) -> dict[str, Any]:
    """A store holding ``running`` Running jobs (a crash mid-flight); time from entering
    open_job_manager until it is serving (recovery finished, durably committed)."""
    quiet_logging()
    from kalam_actors import JobStatus, open_job_manager

    executor = noop_executor(rerun_on_recovery=rerun)
    with scratch_dir("recovery") as path:
        populate(path, "RUNNING", running)

        async def main() -> dict[str, Any]:
            t0 = time.perf_counter()
            async with open_job_manager(path, executors=[executor], durable=True) as m:
                elapsed = time.perf_counter() - t0
                # One snapshot: Running jobs not yet handed to an actor are ones recovery
                # left behind (the rest were dispatched since it finished).
                stats = m.statistics()
                counts = stats.by_status
                left = counts.get(JobStatus.RUNNING, 0)
                dispatching = stats.in_flight
                # Leaving the block stops dispatch at once (the shutdown does that first),
                # so a rerun flood adds nothing to the time measured above.
            return {"elapsed_s": elapsed, "left_running": left - dispatching,
                    "failed": counts.get(JobStatus.FAILED, 0),
                    "retrying": counts.get(JobStatus.RETRYING, 0)}

        return trio.run(main)


# --------------------------------------------------------------------------- B7 / B8


def _count_tasks() -> int:
    root = trio.lowlevel.current_root_task()
    assert root is not None
    n = 0
    stack = [root]
    while stack:
        task = stack.pop()
        n += 1
        for nursery in task.child_nurseries:
            stack.extend(nursery.child_tasks)
    return n


def manager_rss(store: str, n: int = 0) -> dict[str, Any]:
    """Resident memory of a process running the runtime over a store.

    ``store``: "empty"; "queued" (n Queued jobs, built once and cached); "retrying" (n
    Retrying jobs due one after another, 100 µs apart, starting 1 h from now). An executor
    that blocks holds its first job, so the rest stay where they are while we measure.
    """
    quiet_logging()
    import threading

    from kalam_actors import JobDecision, JobExecutor, JobType, open_job_manager
    from kalam_actors.store import now_us

    release = threading.Event()

    class Hold(JobExecutor):
        job_type = JobType.FLUSH
        name = "hold"

        def execute(self, ctx: Any, job: Any) -> Any:
            release.wait(30)
            return JobDecision.completed()

    def measure(path: Path) -> dict[str, Any]:
        gc.collect()
        before = rss_kb()

        async def main() -> dict[str, Any]:
            t0 = time.perf_counter()
            async with open_job_manager(path, executors=[Hold()], durable=True,
                                        shutdown_timeout_s=1.0) as m:
                startup = time.perf_counter() - t0
                await trio.sleep(1.0)  # let the timer and the first batches settle
                gc.collect()
                after = rss_kb()
                tasks = _count_tasks()
                stats = m.statistics()
                release.set()
            return {"rss_before_kb": before, "rss_kb": after, "tasks": tasks,
                    "startup_s": startup, "commits": stats.commits,
                    "by_status": {s.value: c for s, c in stats.by_status.items()}}

        return trio.run(main)

    if store == "empty":
        with scratch_dir("rss-empty") as path:
            return measure(path)
    if store == "queued":
        path = _cached_store(f"b7v2-queued-{n}", lambda p: populate(p, "QUEUED", n))
        return measure(path)
    if store == "retrying":
        with scratch_dir("rss-retrying") as path:
            populate(path, "RETRYING", n, ra_start=now_us() + 3600_000_000, ra_step=100)
            return measure(path)
    raise ValueError(store)


def retry_drain(n: int) -> dict[str, Any]:
    """n Retrying jobs with distinct due times 20 µs apart, the first due 1.5 s after the
    runtime starts: how many trio tasks serve them (vs the same runtime over an empty store),
    and how fast they run once due (n / (first due → last Completed))."""
    quiet_logging()
    from kalam_actors import JobStatus, JobType, open_job_manager
    from kalam_actors.store import now_us

    executor = noop_executor(prefetch=64)

    async def tasks_empty() -> int:
        with scratch_dir("drain-empty") as path:
            async with open_job_manager(path, executors=[executor], max_concurrent=256):
                await trio.sleep(0.3)
                return _count_tasks()

    empty_tasks = trio.run(tasks_empty)
    with scratch_dir("drain") as path:
        step = 20
        t_build = time.perf_counter()
        first_due_wall = now_us() + 1_500_000 + 2_000_000 * n // 100_000  # room to build
        populate(path, "RETRYING", n, ra_start=first_due_wall, ra_step=step)
        build_s = time.perf_counter() - t_build

        async def main() -> dict[str, Any]:
            async with open_job_manager(path, executors=[executor], max_concurrent=256) as m:
                tasks = _count_tasks()
                key = (JobStatus.COMPLETED, JobType.FLUSH)
                while m.store.counts().get(key, 0) < n:
                    await trio.sleep(0.002)
            return {"tasks": tasks}

        out = trio.run(main)
        end_wall = now_us()
    last_due = first_due_wall + (n - 1) * step
    return {"tasks": out["tasks"], "tasks_empty_store": empty_tasks,
            "drain_rate": n / max((end_wall - first_due_wall) / 1e6, 1e-9),
            "late_after_last_due_ms": (end_wall - last_due) / 1000, "build_s": build_s}
