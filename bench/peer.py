"""The peer: Huey (huey 3.x) with its SQLite storage (durable) and its in-memory storage.

Configuration (the fastest honest one we found; see README): the consumer runs in this
process with thread workers; ``initial_delay=0.001`` / ``max_delay=0.01`` so idle workers poll
quickly; no periodic tasks, no health checks; ``results=False`` (a no-op returns None, which
Huey would not store anyway). SqliteHuey uses WAL with ``fsync=True`` (``PRAGMA
synchronous=FULL``), so an enqueue and a dequeue are each fsynced before they return — the
durable configuration. Completions are counted with a ``SIGNAL_COMPLETE`` handler.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from ._common import percentile, scratch_dir


def _huey(kind: str, path: Any) -> Any:
    from huey import MemoryHuey, SqliteHuey

    if kind == "sqlite":
        return SqliteHuey("bench", filename=str(path / "huey.db"), fsync=True, results=False)
    if kind == "memory":
        return MemoryHuey("bench", results=False)
    raise ValueError(kind)


def _consumer(huey: Any, workers: int) -> Any:
    return huey.create_consumer(
        workers=workers, worker_type="thread", periodic=False, initial_delay=0.001,
        max_delay=0.01, check_worker_health=False,
    )


def noop_throughput(n: int, kind: str = "sqlite", workers: int = 2, cpu_ms: float = 0.0,
                    cpu_workers: int = 0) -> dict[str, Any]:
    """n no-op tasks enqueued one by one (Huey has no bulk enqueue) while the consumer runs;
    rate = n / (first enqueue → n-th SIGNAL_COMPLETE)."""
    import logging

    from huey.signals import SIGNAL_COMPLETE

    logging.getLogger("huey").setLevel(logging.WARNING)
    with scratch_dir(f"huey-{kind}") as path:
        huey = _huey(kind, path)
        done = threading.Event()
        lock = threading.Lock()
        count = [0]

        @huey.task()  # type: ignore[untyped-decorator]
        def noop() -> None:
            return None

        @huey.signal(SIGNAL_COMPLETE)  # type: ignore[untyped-decorator]
        def completed(signal: Any, task: Any, *args: Any) -> None:
            if task.name.endswith("noop"):
                with lock:
                    count[0] += 1
                    if count[0] == n:
                        done.set()

        consumer = _consumer(huey, workers)
        consumer.start()
        try:
            t0 = time.perf_counter()
            for _ in range(n):
                noop()
            t_submitted = time.perf_counter()
            if not done.wait(600):
                raise TimeoutError(f"huey finished {count[0]} of {n}")
            elapsed = time.perf_counter() - t0
        finally:
            consumer.stop(graceful=True)
            huey.storage.close() if hasattr(huey.storage, "close") else None
    return {"rate": n / elapsed, "elapsed_s": elapsed, "submit_rate": n / (t_submitted - t0),
            "workers": workers}


def start_latency(rate: float, seconds: float, kind: str = "memory",
                  workers: int = 2) -> dict[str, Any]:
    """Open loop: enqueue one task every 1/rate s from the main thread; latency = enqueue call
    → first line of the task (perf_counter in both threads)."""
    import logging

    logging.getLogger("huey").setLevel(logging.WARNING)
    starts: dict[int, float] = {}
    with scratch_dir(f"huey-lat-{kind}") as path:
        huey = _huey(kind, path)

        @huey.task()  # type: ignore[untyped-decorator]
        def stamp(i: int) -> None:
            starts[i] = time.perf_counter()

        consumer = _consumer(huey, workers)
        consumer.start()
        submitted: dict[int, float] = {}
        try:
            total = int(rate * seconds)
            t0 = time.perf_counter()
            for i in range(total):
                target = t0 + i / rate
                while (now := time.perf_counter()) < target:
                    time.sleep(max(0.0, min(target - now, 0.001)))
                submitted[i] = time.perf_counter()
                stamp(i)
            achieved = total / (time.perf_counter() - t0)
            deadline = time.perf_counter() + 30
            while len(starts) < total and time.perf_counter() < deadline:
                time.sleep(0.01)
        finally:
            consumer.stop(graceful=True)
    lat = sorted((starts[i] - t) * 1000 for i, t in submitted.items() if i in starts)
    return {"offered_rate": rate, "achieved_rate": achieved, "n": len(lat),
            "p50_ms": percentile(lat, 0.5), "p90_ms": percentile(lat, 0.9),
            "p99_ms": percentile(lat, 0.99), "max_ms": lat[-1] if lat else None}
