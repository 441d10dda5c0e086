"""The kill -9 harness: start the runtime in a child process, let it work, SIGKILL it at a random
moment, check everything it promised, start it again. Used by the reliability suite and by the
acceptance suite (which chooses its own kill moments)."""

from __future__ import annotations

import collections
import os
import random
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from reliability_support import HERE, audit_store, read_lines, scripted_executor

from kalam_actors import IdempotentConflict, JobStore, JobType

CHILD = HERE / "kill_child.py"
# The types kill_child's scripted executors declare safe to re-run (rerun_on_recovery).
RERUNNABLE_SCRIPTED = frozenset({"CL", "UC"})


class ChildFailed(AssertionError):
    pass


class KillHarness:
    """Owns one store and the journals of every incarnation of the child, and the checks.

    Args:
        root: an empty folder for the store, the journals and the child's stderr.
        seed: seeds the child's choices and the harness's own.
        engine: run engine rows and flush / compact / backup jobs too.
    """

    def __init__(self, root: Path, *, seed: int = 0, engine: bool = True) -> None:
        self.root = root
        self.store_path = root / "store"
        self.journal = root / "journal.log"
        self.runs = root / "runs.log"
        self.seed = seed
        self.engine = engine
        self.rng = random.Random(seed)
        self.cycles = 0
        self.parent_acked: list[str] = []
        self.terminal: dict[str, tuple[str, Any]] = {}
        self.running_at_kill: dict[str, int] = {}
        self.recovered_running = 0
        self.store: JobStore | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.figures: collections.Counter[str] = collections.Counter()

    # ----------------------------------------------------------------- the child

    def start(self, *, drain: bool = False, timeout: float = 60.0,
              stop_at: str | None = None) -> None:
        """Start the child and wait for its READY line (printed once recovery is done)."""
        args = [sys.executable, str(CHILD), str(self.store_path), str(self.journal),
                str(self.runs), str(self.seed * 1000 + self.cycles)]
        if drain:
            args.append("--drain")
        env = dict(os.environ, RELIABILITY_ENGINE="1" if self.engine else "0")
        env.pop("RELIABILITY_STOP_AT", None)
        if stop_at is not None:
            env["RELIABILITY_STOP_AT"] = stop_at
        self.stderr_path = self.root / f"child-{self.cycles}.err"
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=err, env=env)
        self.expect_line("READY", timeout)
        self.check_recovered()

    def expect_line(self, word: str, timeout: float) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.kill()
                raise ChildFailed(f"child printed no {word} within {timeout} s\n{self.stderr()}")
            ready, _, _ = select.select([self.proc.stdout], [], [], remaining)
            if ready:
                line = self.proc.stdout.readline().decode().strip()
                if line == word:
                    return
                if not line and self.proc.poll() is not None:
                    raise ChildFailed(f"child exited with {self.proc.returncode} before {word}"
                                      f"\n{self.stderr()}")

    def stderr(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def kill(self) -> None:
        """SIGKILL the child and reap it."""
        assert self.proc is not None
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.cycles += 1

    def finish_drain(self, timeout: float = 120.0) -> None:
        self.expect_line("DRAINED", timeout)
        assert self.proc is not None
        code = self.proc.wait(timeout=timeout)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        assert code == 0, f"drain child exited {code}\n{self.stderr()}"

    # ----------------------------------------------------------------- the parent's own work

    def open_store(self) -> JobStore:
        if self.store is None:
            validators = [
                scripted_executor(JobType.CLEANUP),
                scripted_executor(JobType.RETENTION),
                scripted_executor(JobType.STREAM_EVICTION),
                scripted_executor(JobType.USER_CLEANUP),
            ]
            self.store = JobStore(self.store_path, executors=validators)
        return self.store

    def submit_from_parent(self, n: int) -> None:
        """Another process submitting through JobStore while the runtime runs."""
        store = self.open_store()
        for _ in range(n):
            key = self.rng.choice([None, None, "key-0", "key-1", "parent-key"])
            try:
                job_id = store.create_job(self.rng.choice(["CL", "RT", "UC"]), {"do": "noop"},
                                          idempotency_key=key)
            except IdempotentConflict as exc:
                self.figures["parent_conflicts"] += 1
                assert exc.existing_job_id
            else:
                self.parent_acked.append(job_id)

    def cycle(self, window: Callable[[], float] | float | None = None) -> None:
        """One cycle: start, work a random while, kill -9, check."""
        self.start()
        self.submit_from_parent(self.rng.randint(0, 3))
        delay = window() if callable(window) else window
        if delay is None:
            delay = self.rng.uniform(0.05, 0.6)
        time.sleep(delay)  # the random kill moment: what the test is about
        self.kill()
        self.check()

    def cycle_starting(self, delay: float) -> None:
        """One cycle killed ``delay`` seconds after the process was spawned, READY or not:
        while it imports, opens the store, or recovers."""
        args = [sys.executable, str(CHILD), str(self.store_path), str(self.journal),
                str(self.runs), str(self.seed * 1000 + self.cycles)]
        env = dict(os.environ, RELIABILITY_ENGINE="1" if self.engine else "0")
        env.pop("RELIABILITY_STOP_AT", None)
        self.stderr_path = self.root / f"child-{self.cycles}.err"
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=err, env=env)
        time.sleep(delay)  # the kill moment
        self.kill()
        # Whatever it managed to do, the killed runtime's Running jobs are checked at the
        # next READY like any other's; here only what it left behind is checked.
        running_before = self.running_at_kill
        self.check()
        self.running_at_kill = {**running_before, **self.running_at_kill}

    def cycle_at(self, spec: str, timeout: float = 60.0) -> None:
        """One cycle killed exactly when the engine reaches a fault point (see kill_child)."""
        self.start(stop_at=spec)
        self.expect_line(f"AT {spec}", timeout)
        self.kill()
        self.check()

    def cycle_when(self, moment: Callable[[dict[str, Any]], bool], what: str,
                   timeout: float = 30.0) -> bool:
        """One cycle killed as soon as ``moment(records)`` holds for the store (polled), or
        at the deadline. Returns whether the moment was caught."""
        self.start()
        store = self.open_store()
        deadline = time.monotonic() + timeout
        caught = False
        while time.monotonic() < deadline:
            with store._read() as txn:
                records = {k.decode(): v for k, v in txn.cursor(db=store._shared.jobs)}
            if moment(records):
                caught = True
                break
            time.sleep(0.001)
        self.kill()
        self.check()
        self.figures[f"moment:{what}"] += int(caught)
        return caught

    # ----------------------------------------------------------------- the checks

    def check(self) -> dict[str, Any]:
        """Everything that must hold in a store whose runtime was just killed."""
        store = self.open_store()
        audit = audit_store(store)  # indexes agree; at most one active job per key
        records = audit.records
        lines = read_lines(self.journal)
        acked = [line[1] for line in lines if line[0] == "ACK"] + self.parent_acked
        missing = [j for j in acked if j not in records]
        assert not missing, f"acknowledged jobs lost after kill -9: {missing[:10]}"
        for line in lines:
            if line[0] == "CANCELLED":
                assert records[line[1]]["s"] == "X", f"acknowledged cancel of {line[1]} lost"
            elif line[0] == "CONFLICT":
                assert line[2] in records, f"conflict named a job that does not exist: {line}"
        # Terminal jobs never change again.
        for job_id, (code, finished) in self.terminal.items():
            rec = records[job_id]
            assert (rec["s"], rec["f"]) == (code, finished), (
                f"terminal job {job_id} changed: {code} -> {rec['s']}")
        for job_id, rec in records.items():
            if rec["s"] in "CFXS":
                self.terminal[job_id] = (rec["s"], rec["f"])
        self.running_at_kill = {j: r["st"] for j, r in records.items() if r["s"] == "R"}
        # No attempt of a job that is not safe to re-run ran twice: it starts only once its
        # Running state is on disk, so a crash finds it Running and fails it. A re-runnable
        # type's attempt may start before that commit, and a crash then runs it again.
        runs = collections.Counter((line[1], line[2]) for line in read_lines(self.runs)
                                   if line[0] == "RUN")
        twice = [k for k, n in runs.items() if n > 1 and not self.rerunnable(k[0])]
        assert not twice, f"attempts started twice: {twice[:10]}"
        rows = self.check_engine(lines) if self.engine else 0
        self.figures["jobs_checked"] = len(acked)
        self.figures["attempts_checked"] = len(runs)
        self.figures["rows_checked"] = rows
        return records

    def check_recovered(self) -> None:
        """Once the restarted runtime says READY (recovery done), no job left Running by the
        killed one is still Running in that attempt."""
        if not self.running_at_kill:
            return
        store = self.open_store()
        for job_id, started in self.running_at_kill.items():
            rec = store.get_record(job_id)
            assert rec is not None
            assert not (rec["s"] == "R" and rec["st"] == started), (
                f"{job_id} is still Running from before the crash after recovery")
            self.recovered_running += 1
        self.running_at_kill = {}

    def rerunnable(self, job_id: str) -> bool:
        """Is the job's type declared safe to re-run? (Every built-in executor is.)"""
        return bool(self.engine) or job_id[:2] in RERUNNABLE_SCRIPTED

    def check_engine(self, lines: list[list[str]]) -> int:
        """``scan`` of every table equals the rows whose insert returned (plus, at most, rows
        whose insert was cut short by the kill); no version is stored twice."""
        from kalam_actors.storage import Engine

        done: dict[str, set[str]] = collections.defaultdict(set)
        maybe: dict[str, set[str]] = collections.defaultdict(set)
        for line in lines:
            if line[0] == "ROW":
                done[line[1]].add(line[2])
            elif line[0] == "ROWI":
                maybe[line[1]].add(line[2])
        checked = 0
        engine = Engine.open(self.store_path / "engine")
        try:
            for table in ("t1", "t2"):
                if engine.table_info("rel", table) is None:
                    assert not done[table]
                    continue
                scanned = engine.scan("rel", table)
                pks = [row["id"] for row in scanned]
                assert len(pks) == len(set(pks)), f"rel:{table} scan has duplicate rows"
                lost = done[table] - set(pks)
                assert not lost, f"rel:{table} lost rows after kill -9: {sorted(lost)[:10]}"
                extra = set(pks) - done[table] - maybe[table]
                assert not extra, f"rel:{table} has rows nobody wrote: {sorted(extra)[:10]}"
                for row in scanned:
                    assert row == {"id": row["id"], "v": len(row["id"])}, row
                versions = collections.Counter(
                    (v.key, v.seq) for v in engine.versions("rel", table))
                doubled = [k for k, n in versions.items() if n > 1]
                assert not doubled, f"rel:{table} stores versions twice: {doubled[:5]}"
                checked += len(pks)
        finally:
            engine.close()
        return checked

    def check_drained(self) -> None:
        """After a clean drain: every acknowledged job ended, nothing active is left."""
        records = self.check()
        active = {j: r["s"] for j, r in records.items() if r["s"] in "NQRY"}
        assert not active, f"jobs still active after draining: {list(active.items())[:10]}"

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.store is not None:
            self.store.close()
            self.store = None
