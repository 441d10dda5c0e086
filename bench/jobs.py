"""Our runtime moving jobs: B1/B2 (no-op throughput), B3 (enqueue → start latency),
B9 (no-op throughput beside a CPU-bound executor). Each function runs in a fresh child."""

from __future__ import annotations

import resource
import sys
import threading
import time
from typing import Any

import trio

from ._common import noop_executor, percentile, quiet_logging, scratch_dir, thread_cpu_s

# A CPU-bound job: pure Python that holds the GIL for about ``ms`` milliseconds.
_STOP_CPU = threading.Event()


def burn(ms: float) -> int:
    end = time.perf_counter() + ms / 1000
    x = 0
    while time.perf_counter() < end:
        for i in range(200):
            x += i * i
    return x


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _executors(prefetch: int, actors: int, cpu: str | None, cpu_ms: float) -> list[Any]:
    from kalam_actors import JobDecision, JobExecutor, JobType

    out: list[Any] = [noop_executor(prefetch=prefetch, actors=actors)]
    if cpu is not None:
        pool = None
        if cpu == "process":
            import concurrent.futures
            import multiprocessing

            pool = concurrent.futures.ProcessPoolExecutor(
                1, mp_context=multiprocessing.get_context("forkserver")
            )
            pool.submit(burn, 1).result()  # start the worker before the clock runs

        class Cpu(JobExecutor):
            job_type = JobType.COMPACT
            name = "cpu"

            def execute(self, ctx: Any, job: Any) -> Any:
                if not _STOP_CPU.is_set():
                    if pool is None:
                        burn(cpu_ms)
                    else:
                        pool.submit(burn, cpu_ms).result()
                return JobDecision.completed()

        out.append(Cpu())
    return out


async def _drive(
    n: int,
    *,
    durable: bool,
    chunk: int,
    producers: int,
    max_concurrent: int,
    prefetch: int,
    actors: int,
    cpu: str | None,
    cpu_ms: float,
) -> dict[str, Any]:
    from kalam_actors import JobStatus, JobType, open_job_manager

    executors = _executors(prefetch, actors, cpu, cpu_ms)
    with scratch_dir("jobs") as path:
        async with open_job_manager(
            path, executors=executors, max_concurrent=max_concurrent, durable=durable,
            shutdown_timeout_s=2.0,
        ) as m:
            if cpu is not None:
                # Enough CPU work to keep its actor busy for the whole measurement.
                await m.create_jobs([(JobType.COMPACT, {})] * 2000)
                await trio.sleep(0.2)
            last: list[str] = []
            per = n // producers

            async def produce(k: int) -> None:
                count = per if k < producers - 1 else n - per * (producers - 1)
                spec: list[tuple[JobType, dict[str, Any]]] = [(JobType.FLUSH, {})]
                done = 0
                while done < count:
                    size = min(chunk, count - done)
                    ids = await m.create_jobs(spec * size)
                    done += size
                last.append(ids[-1])

            before = m.statistics()
            threads0 = thread_cpu_s()
            cpu0 = _cpu_s()
            t0 = time.perf_counter()
            async with trio.open_nursery() as nursery:
                for k in range(producers):
                    nursery.start_soon(produce, k)
            t_submitted = time.perf_counter()
            for job_id in last:
                await m.wait_job(job_id)
            key = (JobStatus.COMPLETED, JobType.FLUSH)
            while m.store.counts().get(key, 0) < n:
                await trio.sleep(0.0005)
            elapsed = time.perf_counter() - t0
            cpu_s = _cpu_s() - cpu0
            threads1 = thread_cpu_s()
            after = m.statistics()
            _STOP_CPU.set()
            commits = after.commits - before.commits
            changes = after.state_changes - before.state_changes
    result: dict[str, Any] = {
        "rate": n / elapsed,
        "elapsed_s": elapsed,
        "submit_rate": n / (t_submitted - t0),
        # CPU time of all threads per job: the work itself, little changed by a busy machine.
        "cpu_us_per_job": cpu_s * 1e6 / n,
        "commits": commits,
        "writes_per_commit": changes / max(commits, 1),
        # Per thread (clock ticks, 10 ms: meaningful over a whole run, not per job alone).
        **{f"cpu_us_per_job_{k}": (threads1[k] - threads0[k]) * 1e6 / n for k in threads1},
    }
    return result


def noop_throughput(
    n: int,
    durable: bool = True,
    chunk: int = 100,
    producers: int = 1,
    max_concurrent: int = 256,
    prefetch: int = 256,
    actors: int = 1,
    log_level: str | None = None,
    cpu: str | None = None,
    cpu_ms: float = 20.0,
    switch_interval: float | None = None,
) -> dict[str, Any]:
    """n no-op jobs submitted with create_jobs in chunks while they run; rate = n / (first
    submission → last job committed Completed)."""
    quiet_logging(log_level)
    if switch_interval is not None:
        sys.setswitchinterval(switch_interval)
    return trio.run(
        lambda: _drive(
            n, durable=durable, chunk=chunk, producers=producers, max_concurrent=max_concurrent,
            prefetch=prefetch, actors=actors, cpu=cpu, cpu_ms=cpu_ms,
        )
    )


# --------------------------------------------------------------------------- B0


def new_user_throughput(n: int, tasks: int = 64, max_concurrent: int = 64) -> dict[str, Any]:
    """As a new user would: a no-op executor with every default (prefetch, rerun_on_recovery,
    actors), default logging (loguru untouched), ``tasks`` trio tasks each calling
    ``create_job`` one job at a time and then ``wait_job`` on it. rate = n / elapsed."""
    from kalam_actors import JobDecision, JobExecutor, JobType, open_job_manager

    class Noop(JobExecutor):
        job_type = JobType.FLUSH
        name = "noop"

        def execute(self, ctx: Any, job: Any) -> Any:
            return JobDecision.completed()

    per_task = max(1, n // tasks)

    async def main() -> dict[str, Any]:
        with scratch_dir("newuser") as path:
            async with open_job_manager(path, executors=[Noop()],
                                        max_concurrent=max_concurrent) as m:
                cpu0 = _cpu_s()
                t0 = time.perf_counter()

                async def worker() -> None:
                    for _ in range(per_task):
                        await m.wait_job(await m.create_job(JobType.FLUSH, {}))

                async with trio.open_nursery() as nursery:
                    for _ in range(tasks):
                        nursery.start_soon(worker)
                elapsed = time.perf_counter() - t0
                cpu = _cpu_s() - cpu0
        done = per_task * tasks
        return {"rate": done / elapsed, "elapsed_s": elapsed, "n": done,
                "cpu_us_per_job": cpu / done * 1e6}

    return trio.run(main)


# --------------------------------------------------------------------------- B3


def start_latency(
    rate: float, seconds: float, durable: bool = True, max_concurrent: int = 256,
    prefetch: int = 256,
) -> dict[str, Any]:
    """Open-loop: single create_job calls at ``rate``/s, each from its own trio task; latency
    is from just before the create_job call to the first line of ``execute`` (same clock,
    perf_counter, read in the trio thread and in the actor thread)."""
    quiet_logging()
    from kalam_actors import JobDecision, JobExecutor, JobType, open_job_manager

    starts: dict[str, float] = {}
    submitted: dict[str, float] = {}

    class Stamp(JobExecutor):
        job_type = JobType.FLUSH
        name = "stamp"

        def execute(self, ctx: Any, job: Any) -> Any:
            starts[ctx.job_id] = time.perf_counter()
            return JobDecision.completed()

    Stamp.prefetch = prefetch
    Stamp.rerun_on_recovery = True  # as B1's no-op: safe to run again, so it starts at once

    async def main() -> dict[str, Any]:
        with scratch_dir("latency") as path:
            async with open_job_manager(
                path, executors=[Stamp()], max_concurrent=max_concurrent, durable=durable
            ) as m:
                total = int(rate * seconds)
                tick = 0.001
                per_tick = rate * tick
                owed = 0.0

                async def one() -> None:
                    t = time.perf_counter()
                    job_id = await m.create_job(JobType.FLUSH, {})
                    submitted[job_id] = t

                t0 = trio.current_time()
                sent = 0
                async with trio.open_nursery() as nursery:
                    k = 0
                    while sent < total:
                        k += 1
                        owed += per_tick
                        while owed >= 1 and sent < total:
                            nursery.start_soon(one)
                            sent += 1
                            owed -= 1
                        await trio.sleep_until(t0 + k * tick)
                achieved = total / (trio.current_time() - t0)
                deadline = time.perf_counter() + 30
                while len(starts) < total and time.perf_counter() < deadline:
                    await trio.sleep(0.01)
        # Skip the first 2% by submission time (warm-up: first dispatch, thread start).
        order = sorted(submitted.items(), key=lambda item: item[1])
        order = order[len(order) // 50:]
        lat = sorted((starts[j] - t) * 1000 for j, t in order if j in starts)
        return {
            "offered_rate": rate,
            "achieved_rate": achieved,
            "n": len(lat),
            "p50_ms": percentile(lat, 0.50),
            "p90_ms": percentile(lat, 0.90),
            "p99_ms": percentile(lat, 0.99),
            "max_ms": lat[-1] if lat else None,
        }

    return trio.run(main)
