"""The process the kill -9 harness starts, kills with SIGKILL, and starts again.

It opens the runtime on a store (scripted executors for CL/RT/SE/UC, the engine's real
executors for FL/CO/BK), prints ``READY`` once recovery is done, then submits a random mix of
work for ever: no-op, slow, retrying, failing, skipped, raising, idempotent duplicates, bulk
creates, cancels, engine rows, and flush / compact / backup jobs. Each fact the parent may rely
on is journaled only AFTER the call that makes it true returned, with flush + fsync:

    ACK <id> <kind> <key|->     create_job returned this id
    CONFLICT <key> <holder>     create_job was refused for this key, naming this holder
    CANCELLED <id>              cancel_job returned the job as Cancelled
    ROWI <table> <pk>           about to insert a row (the insert may or may not land)
    ROW <table> <pk>            the insert returned

``--drain`` submits nothing: it waits until no job is active, prints ``DRAINED``, and exits
cleanly.

Usage: kill_child.py STORE JOURNAL RUNS SEED [--drain]
"""

from __future__ import annotations

import contextlib
import os
import random
import sys
from pathlib import Path

import trio
from loguru import logger

sys.path.insert(0, str(Path(__file__).resolve().parent))

from reliability_support import RunJournal, scripted_executor

from kalam_actors import (
    IdempotentConflict,
    JobStatus,
    JobType,
    KalamError,
    RetryPolicy,
    open_job_manager,
)

TABLES = ("t1", "t2")
NAMESPACE = "rel"
KEYS = [f"key-{i}" for i in range(5)]


def test_executors(runs: RunJournal) -> list:
    """The scripted executors (shared with the parent, which validates its own submissions)."""
    return [
        scripted_executor(JobType.CLEANUP, rerun_on_recovery=True, journal=runs),
        scripted_executor(JobType.RETENTION, rerun_on_recovery=False, journal=runs),
        scripted_executor(JobType.STREAM_EVICTION, cancellable=False, journal=runs),
        scripted_executor(JobType.USER_CLEANUP, rerun_on_recovery=True, journal=runs,
                          actors=2),
    ]


def engine_executors(engine: object) -> list:
    from kalam_actors.executors import builtin_executors

    keep = {JobType.FLUSH, JobType.COMPACT, JobType.BACKUP}
    return [e for e in builtin_executors(engine) if e.job_type in keep]


def open_engine(store: Path) -> object:
    from kalam_actors.storage import Engine

    return Engine.open(store / "engine")


def stop_at(engine: object, spec: str) -> None:
    """``RELIABILITY_STOP_AT=[function:]point``: the first time the engine reaches the fault
    point (inside ``function``, e.g. ``merge_segments``), print ``AT <spec>`` and hang there,
    so that the parent kills the process at exactly that moment."""
    import time

    function, _, point = spec.rpartition(":")
    fired = []

    def hook() -> None:
        frame = sys._getframe(1)
        names = set()
        while frame is not None:
            names.add(frame.f_code.co_name)
            frame = frame.f_back
        if fired or (function and function not in names):
            return
        fired.append(True)
        print(f"AT {spec}", flush=True)
        time.sleep(3600)

    engine.faults.set(point, hook)  # type: ignore[attr-defined]


def ensure_tables(engine: object) -> None:
    from kalam_actors.storage.errors import TableExists

    for table in TABLES:
        with contextlib.suppress(TableExists):
            engine.create_table(NAMESPACE, table, "Shared")  # type: ignore[attr-defined]


class Journal:
    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write(self, *parts: str) -> None:
        os.write(self.fd, (" ".join(parts) + "\n").encode())
        os.fsync(self.fd)


def table_params(table: str) -> dict:
    return {"namespace_id": NAMESPACE, "table_name": table, "table_type": "Shared"}


async def submit_forever(manager, engine, journal: Journal, rng: random.Random, tag: str) -> None:
    acked: list[str] = []
    rows = 0
    scripted = ["CL", "RT", "SE", "UC"]
    while True:
        roll = rng.random()
        key = rng.choice(KEYS) if rng.random() < 0.25 else None
        try:
            if roll < 0.30:
                params = {"do": "noop"}
            elif roll < 0.42:
                params = {"do": "slow", "ms": rng.randint(10, 150)}
            elif roll < 0.54:
                params = {"do": "retry", "n": rng.randint(1, 3), "backoff": rng.randint(1, 40)}
            elif roll < 0.60:
                params = {"do": rng.choice(["fail", "skip", "raise"])}
            elif roll < 0.66:
                ids = await manager.create_jobs([(rng.choice(scripted), {"do": "noop"})] * 3)
                for job_id in ids:
                    journal.write("ACK", job_id, "bulk", "-")
                acked.extend(ids)
                continue
            elif roll < 0.74:
                if acked:
                    victim = rng.choice(acked[-20:])
                    try:
                        job = await manager.cancel_job(victim)
                    except KalamError:
                        pass
                    else:
                        if job.status is JobStatus.CANCELLED:
                            journal.write("CANCELLED", victim)
                continue
            elif roll < 0.88 and engine is not None:
                table = rng.choice(TABLES)
                batch = [f"{tag}-{rows + i}" for i in range(rng.randint(1, 8))]
                rows += len(batch)
                for pk in batch:
                    journal.write("ROWI", table, pk)
                for pk in batch:
                    await trio.to_thread.run_sync(
                        engine.insert, NAMESPACE, table, {"id": pk, "v": len(pk)}
                    )
                    journal.write("ROW", table, pk)
                continue
            elif engine is not None:
                table = rng.choice(TABLES)
                kind = rng.choice(["FL", "FL", "CO", "BK"])
                params = table_params(table)
                if kind == "CO":
                    params["target_file_size_mb"] = 1
                elif kind == "BK":
                    params["backup_location"] = "rel"
                job_id = await manager.create_job(kind, params, idempotency_key=key)
                journal.write("ACK", job_id, kind, key or "-")
                acked.append(job_id)
                continue
            else:
                params = {"do": "noop"}
            job_id = await manager.create_job(
                rng.choice(scripted), params, idempotency_key=key, max_retries=rng.randint(0, 3)
            )
            journal.write("ACK", job_id, params["do"], key or "-")
            acked.append(job_id)
        except IdempotentConflict as exc:
            journal.write("CONFLICT", exc.idempotency_key, exc.existing_job_id)
        await trio.sleep(rng.uniform(0, 0.004))


async def drain(manager) -> None:
    store = manager.store
    active = (JobStatus.NEW, JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.RETRYING)
    with trio.fail_after(90):
        while any(store.has_status(s) for s in active):
            await trio.sleep(0.02)


async def main(store: Path, journal_path: str, runs_path: str, seed: int, mode: str) -> None:
    runs = RunJournal(runs_path)
    engine = None
    executors = test_executors(runs)
    with_engine = os.environ.get("RELIABILITY_ENGINE", "1") == "1"
    if with_engine:
        engine = open_engine(store)
        ensure_tables(engine)
        if os.environ.get("RELIABILITY_STOP_AT"):
            stop_at(engine, os.environ["RELIABILITY_STOP_AT"])
        executors += engine_executors(engine)
    async with open_job_manager(
        store,
        executors=executors,
        storage=engine,
        max_concurrent=8,
        poll_interval_s=0.02,
        retry_policy=RetryPolicy(base_ms=5, max_ms=100),
        shutdown_timeout_s=2.0,
    ) as manager:
        print("READY", flush=True)
        if mode == "drain":
            await drain(manager)
            print("DRAINED", flush=True)
            return
        await submit_forever(manager, engine, Journal(journal_path), random.Random(seed),
                             f"s{seed}")


if __name__ == "__main__":
    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    logger.enable("kalam_actors")
    sys.setswitchinterval(0.0005)
    store_arg, journal_arg, runs_arg, seed_arg = sys.argv[1:5]
    trio.run(main, Path(store_arg), journal_arg, runs_arg, int(seed_arg),
             "drain" if "--drain" in sys.argv else "run")
