"""Helpers for driving the real ``kalam-actors`` command in subprocesses.

Waits are on events with generous deadlines: a line on the runtime's stdout, a status in the
store (read through ``JobStore`` from the test process), or a file the steered executors write.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pytest

from kalam_actors import Job, JobFilter, JobStatus, JobStore

HERE = Path(__file__).resolve().parent
DEADLINE_S = 30.0
T = TypeVar("T")


def cli_env(control: Path | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(HERE), *(p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p)])
    env.pop("KALAM_ACTORS_DATA", None)
    env["COLUMNS"] = "200"
    if control is not None:
        env["KALAM_TEST_CONTROL"] = str(control)
    return env


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60.0,
        input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m kalam_actors ARGS`` to completion."""
    return subprocess.run([sys.executable, "-m", "kalam_actors", *args], capture_output=True,
                          text=True, timeout=timeout, env=env or cli_env(), input=input)


class Result:
    """What one in-process ``kalam-actors`` call came to."""

    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr

    def __repr__(self) -> str:
        return f"<Result {self.returncode} out={self.stdout!r} err={self.stderr!r}>"


def run_main(capsys: pytest.CaptureFixture[str], args: list[str]) -> Result:
    """``kalam-actors ARGS`` in-process, with what it printed."""
    from kalam_actors.cli import main

    try:
        code = main(args, configure_logging=False)
    except SystemExit as exc:  # argparse: usage errors, --help, --version
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return Result(code, out, err)


def json_lines(text: str) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in text.splitlines() if line.strip()]


def wait_for(predicate: Callable[[], T], what: str, timeout: float = DEADLINE_S) -> T:
    """Poll ``predicate`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(delay)  # polling another process: there is no event to wait on
        delay = min(delay * 2, 0.1)


def job_status(data: Path, job_id: str) -> JobStatus | None:
    with JobStore(data / "jobs") as store:
        job = store.get_job(job_id)
    return None if job is None else job.status


class Runtime:
    """A ``kalam-actors run`` child process and the folders it works in."""

    def __init__(self, data: Path, control: Path, *extra: str, steered: bool = True) -> None:
        self.data = data
        self.control = control
        self.env = cli_env(control)
        plugin = ["--plugin", "cli_plugin:executors"] if steered else []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kalam_actors", "run", "--data", str(data), "--create",
             *plugin, "--poll-interval", "0.05", *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._pumps = [
            threading.Thread(target=self._pump, args=(self.proc.stdout, self.stdout, True),
                             daemon=True),
            threading.Thread(target=self._pump, args=(self.proc.stderr, self.stderr, False),
                             daemon=True),
        ]
        for pump in self._pumps:
            pump.start()
        self.wait_line("ready")

    def _pump(self, stream: Any, sink: list[str], notify: bool) -> None:
        for line in stream:
            sink.append(line)
            if notify:
                self.lines.put(line)
        if notify:
            self.lines.put(None)

    def wait_line(self, text: str, timeout: float = DEADLINE_S) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"runtime printed no line with {text!r} in {timeout} s; "
                            f"stderr: {''.join(self.stderr)[-2000:]}")
            if line is None:
                pytest.fail(f"runtime exited ({self.proc.wait()}) before printing {text!r}; "
                            f"stderr: {''.join(self.stderr)[-2000:]}")
            if text in line:
                return line

    def run_cli(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        return cli(*args, "--data", str(self.data), env=self.env, timeout=timeout)

    def submit(self, job_type: str, params: dict[str, Any], *extra: str) -> str:
        result = self.run_cli("submit", job_type, "--params", orjson.dumps(params).decode(),
                              *extra)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    def started(self, job_id: str) -> bool:
        return (self.control / f"{job_id}.started").exists()

    def release(self, job_id: str) -> None:
        (self.control / f"{job_id}.go").write_text("go")

    def status(self, job_id: str) -> JobStatus | None:
        return job_status(self.data, job_id)

    def job(self, job_id: str) -> Job:
        """The job as the store has it (read from this process, as a second terminal would)."""
        with JobStore(self.data / "jobs") as store:
            job = store.get_job(job_id)
        assert job is not None, job_id
        return job

    def job_with_key(self, key: str) -> Job | None:
        with JobStore(self.data / "jobs") as store:
            found = store.list_jobs(JobFilter(idempotency_key=key))
        return found[0] if found else None

    def wait_status(self, job_id: str, *statuses: JobStatus) -> JobStatus:
        return wait_for(lambda: (s := self.status(job_id)) in statuses and s,
                        f"{job_id} to be {'/'.join(s.value for s in statuses)}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = DEADLINE_S) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.close()
            pytest.fail(f"runtime did not stop within {timeout} s after {sig}")
        self.close()
        return code

    def close(self) -> None:
        """Kill the process if it still runs, and release its pipes."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=DEADLINE_S)
        for pump in self._pumps:
            pump.join(timeout=DEADLINE_S)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()

    @property
    def output(self) -> str:
        return "".join(self.stdout) + "".join(self.stderr)


@pytest.fixture
def start_runtime(tmp_path: Path) -> Iterator[Callable[..., Runtime]]:
    """Start ``kalam-actors run`` on ``tmp_path/data`` (with the steered executors, unless
    ``steered=False``); every runtime started is stopped after the test."""
    started: list[Runtime] = []
    control = tmp_path / "control"
    control.mkdir()

    def start(*extra: str, steered: bool = True) -> Runtime:
        runtime = Runtime(tmp_path / "data", control, *extra, steered=steered)
        started.append(runtime)
        return runtime

    try:
        yield start
    finally:
        for runtime in started:
            with contextlib.suppress(Exception):
                runtime.close()


@pytest.fixture(scope="module")
def shared_runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    """One runtime for the tests that only submit, watch and cancel (each uses its own jobs),
    started with ``--flush-row-limit 50``."""
    root = tmp_path_factory.mktemp("shared")
    control = root / "control"
    control.mkdir()
    runtime = Runtime(root / "data", control, "--flush-row-limit", "50")
    try:
        yield runtime
    finally:
        runtime.close()
