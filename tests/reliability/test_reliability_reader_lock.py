"""Issue #11 — readers never wait for a writer: a JobStore opened while another process holds
the store's LMDB write transaction answers ``get_job`` and ``list_jobs`` at once.

The reader runs in a child process of its own. A thread cannot bound it: py-lmdb waits for
the write lock while holding the GIL (opening a named database without a transaction takes
one), so a blocked open froze this whole interpreter, timeouts and all.
"""

from __future__ import annotations

import contextlib
import json
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from kalam_actors import JobStatus, JobStore

#: How long a read may take while another process writes: it must not wait for the writer.
ANSWER_S = 5.0
#: How long a child may take to start (imports) and say it is ready.
START_S = 30.0

# Holds a write transaction on the store's environment until a line arrives on stdin.
HOLDER = """\
import sys, lmdb
env = lmdb.open(sys.argv[1], max_dbs=8)
txn = env.begin(write=True)
print("ready", flush=True)
sys.stdin.readline()
txn.abort()
env.close()
"""

# Opens a JobStore (at once, or after "open" once told "go" on stdin), then reads and prints
# what it read as one JSON line.
READER = """\
import json, sys
from kalam_actors import JobStore
path, job_id, mode = sys.argv[1:4]
print("starting", flush=True)
store = JobStore(path)
if mode == "open-first":
    print("open", flush=True)
    sys.stdin.readline()
print("reading", flush=True)
job = store.get_job(job_id)
jobs = store.list_jobs()
print(json.dumps({"job": job and [job.job_id, job.status.value],
                  "listed": [j.job_id for j in jobs]}), flush=True)
store.close()
"""


class Child:
    """A Python child process whose stdout lines can be awaited with a deadline."""

    def __init__(self, script: str, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", script, *args], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, encoding="utf-8",
            errors="replace",
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.stderr: list[str] = []
        self._pumps = [
            threading.Thread(target=self._pump, args=(self.proc.stdout, True), daemon=True),
            threading.Thread(target=self._pump, args=(self.proc.stderr, False), daemon=True),
        ]
        for pump in self._pumps:
            pump.start()

    def _pump(self, stream: IO[str], notify: bool) -> None:
        for line in stream:
            if notify:
                self.lines.put(line.rstrip("\n"))
            else:
                self.stderr.append(line)
        if notify:
            self.lines.put(None)

    def wait_line(self, timeout: float, what: str) -> str | None:
        """The next stdout line, or None if none came within ``timeout`` seconds."""
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            return None
        if line is None:
            pytest.fail(f"{what}: the child exited ({self.proc.wait()}) first; stderr: "
                        f"{''.join(self.stderr)[-2000:]}")
        return line

    def expect(self, text: str, timeout: float = START_S) -> None:
        line = self.wait_line(timeout, f"waiting for {text!r}")
        assert line == text, f"expected {text!r}, got {line!r}; {''.join(self.stderr)[-2000:]}"

    def tell(self, line: str = "") -> None:
        with contextlib.suppress(BrokenPipeError, ValueError):
            assert self.proc.stdin is not None
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()

    def close(self) -> None:
        """Stop the child (kill it if it is stuck) and release its pipes."""
        self.tell()
        try:
            self.proc.wait(timeout=START_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=START_S)
        for pump in self._pumps:
            pump.join(timeout=START_S)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


@contextlib.contextmanager
def child(script: str, *args: str) -> Iterator[Child]:
    proc = Child(script, *args)
    try:
        yield proc
    finally:
        proc.close()


@contextlib.contextmanager
def write_transaction_held(path: Path) -> Iterator[Child]:
    """Another process holds a write transaction on the store at ``path`` meanwhile."""
    with child(HOLDER, str(path / "jobs.lmdb")) as holder:
        holder.expect("ready")
        yield holder


def a_store_with_one_job(path: Path) -> str:
    store = JobStore(path, executors=[])
    try:
        return store.create_job("FL", {"n": 1})
    finally:
        store.close()


def soon(reader: Child, what: str) -> str:
    """The reader's next line, which must come within ANSWER_S: it must not wait for the
    writer."""
    line = reader.wait_line(ANSWER_S, what)
    if line is None:
        pytest.fail(f"the JobStore did not {what} within {ANSWER_S} s while another process "
                    "held a write transaction on the store")
    return line


@contextlib.contextmanager
def reader_beside_a_writer(path: Path, job_id: str, mode: str) -> Iterator[tuple[Child, Child]]:
    """A writer (holding its transaction) and a reader; on the way out the writer lets go
    first, so a reader stuck behind it finishes instead of being killed."""
    with write_transaction_held(path) as holder, child(READER, str(path), job_id, mode) as reader:
        try:
            yield holder, reader
        finally:
            holder.close()


def test_a_store_opened_while_another_process_writes_answers_at_once(tmp_path: Path) -> None:
    path = tmp_path / "store"
    job_id = a_store_with_one_job(path)
    with reader_beside_a_writer(path, job_id, "open-now") as (_, reader):
        reader.expect("starting")
        # Opening reads the schema and opens the named databases: none of it may wait for
        # the write lock.
        assert soon(reader, "open") == "reading"
        answer = json.loads(soon(reader, "answer get_job and list_jobs"))
    assert answer == {"job": [job_id, JobStatus.NEW.value], "listed": [job_id]}


def test_a_store_already_open_answers_while_another_process_writes(tmp_path: Path) -> None:
    path = tmp_path / "store"
    job_id = a_store_with_one_job(path)
    with child(READER, str(path), job_id, "open-first") as reader:
        reader.expect("starting")
        reader.expect("open")
        # The writer lets go on leaving this block, before the reader is stopped.
        with write_transaction_held(path):
            reader.tell("go")
            assert soon(reader, "start reading") == "reading"
            answer = json.loads(soon(reader, "answer get_job and list_jobs"))
    assert answer == {"job": [job_id, JobStatus.NEW.value], "listed": [job_id]}


def test_a_store_opened_on_a_path_with_no_store_creates_it(tmp_path: Path) -> None:
    path = tmp_path / "fresh" / "store"
    assert not path.exists()
    store = JobStore(path, executors=[])
    try:
        assert store.list_jobs() == []
        job_id = store.create_job("FL", {"n": 1})
        job = store.get_job(job_id)
        assert job is not None and job.status is JobStatus.NEW and job.params == {"n": 1}
        assert [j.job_id for j in store.list_jobs()] == [job_id]
    finally:
        store.close()
    assert (path / "jobs.lmdb").is_dir()
    # And it is a store: another one on the path reads what was written.
    with JobStore(path) as again:
        assert [j.job_id for j in again.list_jobs()] == [job_id]
