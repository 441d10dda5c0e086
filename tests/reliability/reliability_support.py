"""Shared tools of the reliability suite: scripted executors, the store auditor, figures.

Importable both from tests/reliability (pytest puts the folder on ``sys.path``) and from the
kill -9 child process (which runs this folder's scripts directly).
"""

from __future__ import annotations

import collections
import os
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import orjson

from kalam_actors import JobDecision, JobExecutor, JobStore, JobType
from kalam_actors.store import ACTIVE_CODES, STATUS_OF, decode_record

HERE = Path(__file__).resolve().parent

# --------------------------------------------------------------------------- figures

#: What each reliability test reports at the end of the session (see conftest).
FIGURES: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)


def report(test: str, **figures: int) -> None:
    """Add figures (cycles survived, jobs checked, inputs tried, ...) for the summary line."""
    FIGURES[test].update(figures)


# --------------------------------------------------------------------------- executors


class RunJournal:
    """An append-only, fsynced record of every attempt an executor started (job id, attempt):
    the evidence for "never run twice by accident"."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write(self, line: str) -> None:
        with self._lock:
            os.write(self._fd, (line + "\n").encode())
            os.fsync(self._fd)

    def close(self) -> None:
        os.close(self._fd)


def read_lines(path: str | os.PathLike[str]) -> list[list[str]]:
    """The complete lines of a journal, split on spaces (a torn last line is dropped)."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return []
    if not data.endswith(b"\n"):
        data = data[: data.rfind(b"\n") + 1]
    return [line.split(" ") for line in data.decode().splitlines() if line]


def scripted_executor(
    job_type: JobType,
    *,
    rerun_on_recovery: bool = False,
    cancellable: bool = True,
    journal: RunJournal | None = None,
    timeout_s: float | None = None,
    actors: int = 1,
) -> JobExecutor:
    """An executor whose behaviour each job's parameters choose.

    ``{"do": "noop"}`` completes; ``"slow"`` works ``ms`` milliseconds in 2 ms steps, stopping
    early when cancelled; ``"retry"`` asks to be retried (after ``backoff`` ms) until attempt
    ``n`` + 1, then completes; ``"fail"``, ``"skip"`` and ``"raise"`` do what they say.
    """

    class Scripted(JobExecutor):
        name = f"scripted-{job_type.prefix}"

        def validate_params(self, params: dict[str, Any]) -> None:
            from kalam_actors import InvalidParams

            if params.get("do", "noop") not in ("noop", "slow", "retry", "fail", "skip", "raise"):
                raise InvalidParams(f"unknown action {params.get('do')!r}", field="do")

        def execute(self, ctx: Any, job: Any) -> JobDecision:
            if journal is not None:
                journal.write(f"RUN {ctx.job_id} {ctx.attempt}")
            p = ctx.params
            do = p.get("do", "noop")
            if do == "slow":
                end = time.monotonic() + p.get("ms", 50) / 1000
                while time.monotonic() < end and not ctx.cancelled:
                    time.sleep(0.002)
                return JobDecision.completed("slept")
            if do == "retry":
                if ctx.attempt <= p.get("n", 1):
                    return JobDecision.retry("asked to retry", backoff_ms=p.get("backoff", 5))
                return JobDecision.completed("retried enough")
            if do == "fail":
                return JobDecision.failed("asked to fail")
            if do == "skip":
                return JobDecision.skipped("asked to skip")
            if do == "raise":
                raise RuntimeError("asked to raise")
            return JobDecision.completed("noop")

    Scripted.job_type = job_type
    Scripted.rerun_on_recovery = rerun_on_recovery
    Scripted.cancellable = cancellable
    Scripted.timeout_s = timeout_s
    Scripted.actors = actors
    Scripted.__name__ = Scripted.__qualname__ = f"Scripted{job_type.prefix}"
    return Scripted()


# --------------------------------------------------------------------------- the auditor


class StoreAudit:
    """What :func:`audit_store` read: every record by id, and the figures it checked."""

    def __init__(self, records: dict[str, dict[str, Any]]) -> None:
        self.records = records

    def status(self, job_id: str) -> str | None:
        rec = self.records.get(job_id)
        return None if rec is None else STATUS_OF[rec["s"]].value

    def by_code(self, code: str) -> list[str]:
        return [j for j, r in self.records.items() if r["s"] == code]


def audit_store(store: JobStore) -> StoreAudit:
    """Read every LMDB database of the job store in ONE read transaction and check that the
    indexes agree with the records. Raises AssertionError listing every disagreement.

    - every record decodes, and its id is its key;
    - ``status`` holds exactly one entry per record, with its status;
    - ``keys`` points only at active jobs holding that key; every active keyed job is there;
      no two active jobs share a key;
    - ``due`` holds exactly the Retrying jobs, at their run_after;
    - ``counts`` equal a recount (zero entries allowed);
    - ``cancels`` names only Running jobs with a cancel requested.
    """
    shared = store._shared
    problems: list[str] = []
    with store._read() as txn:
        records: dict[str, dict[str, Any]] = {}
        for key, raw in txn.cursor(db=shared.jobs):
            job_id = key.decode()
            records[job_id] = decode_record(job_id, raw)
        status_idx = {k.decode() for k, _ in txn.cursor(db=shared.status)}
        keys_idx = {k.decode(): v.decode() for k, v in txn.cursor(db=shared.keys)}
        # Due index keys: type prefix (2) + due time (8) + job id.
        due_idx = {(int.from_bytes(k[2:10], "big"), k[10:].decode())
                   for k, _ in txn.cursor(db=shared.due)}
        counts_idx = {
            k.decode(): int.from_bytes(v, "big", signed=True)
            for k, v in txn.cursor(db=shared.counts)
        }
        cancels_idx = {k.decode() for k, _ in txn.cursor(db=shared.cancels)}

    want_status = {r["s"] + j for j, r in records.items()}
    if status_idx != want_status:
        problems.append(
            f"status index: missing {sorted(want_status - status_idx)[:5]}, "
            f"stray {sorted(status_idx - want_status)[:5]}"
        )
    holders: dict[str, list[str]] = collections.defaultdict(list)
    for j, r in records.items():
        if r["k"] is not None and r["s"] in ACTIVE_CODES:
            holders[r["k"]].append(j)
    for key, ids in holders.items():
        if len(ids) > 1:
            problems.append(f"idempotency key {key!r} held by {len(ids)} active jobs: {ids}")
        if keys_idx.get(key) not in ids:
            problems.append(f"keys index: active {ids} hold {key!r} but the index says "
                            f"{keys_idx.get(key)!r}")
    for key, j in keys_idx.items():
        r = records.get(j)
        if r is None or r["s"] not in ACTIVE_CODES or r["k"] != key:
            problems.append(f"keys index: {key!r} -> {j} which is "
                            f"{'missing' if r is None else (r['s'], r['k'])}")
    want_due = {(r["ra"], j) for j, r in records.items() if r["s"] == "Y"}
    if due_idx != want_due:
        problems.append(f"due index: missing {sorted(want_due - due_idx)[:5]}, "
                        f"stray {sorted(due_idx - want_due)[:5]}")
    recount = collections.Counter(r["s"] + j[:2] for j, r in records.items())
    for key in set(recount) | set(counts_idx):
        if recount.get(key, 0) != counts_idx.get(key, 0):
            problems.append(
                f"counts[{key}] = {counts_idx.get(key, 0)}, recount {recount.get(key, 0)}")
    for j in cancels_idx:
        r = records.get(j)
        if r is None or r["s"] != "R" or not r["cr"]:
            problems.append(f"cancels index names {j}, which is "
                            f"{'missing' if r is None else (r['s'], r['cr'])}")
    assert not problems, "job store indexes disagree with the records:\n  " + "\n  ".join(problems)
    return StoreAudit(records)


# --------------------------------------------------------------------------- waiting


def wait_until(predicate: Callable[[], Any], *, timeout: float = 10.0, what: str = "") -> Any:
    """Poll ``predicate`` (a store read, a process state) until truthy, or fail after
    ``timeout`` seconds. The deadline only bounds a hang: the check never depends on timing."""
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def ids_of(lines: Iterable[list[str]], tag: str) -> list[str]:
    return [line[1] for line in lines if line and line[0] == tag]
