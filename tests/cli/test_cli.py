"""The real ``kalam-actors`` command in subprocesses: a ``run`` in one process, steered
with ``submit``/``jobs``/``stats`` from others; shutdown on SIGTERM/SIGINT; restart recovery."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import orjson

from kalam_actors import JobStatus
from kalam_actors.storage import Engine

from .conftest import cli, json_lines, wait_for

FLUSH = {"namespace_id": "app", "table_name": "t", "table_type": "Shared"}
CLEANUP = {"table_id": "app:t", "table_type": "Shared", "operation": "truncate"}


def test_help_and_exit_codes_of_the_real_command(tmp_path: Path) -> None:
    result = cli("--help")
    assert result.returncode == 0 and "exit codes" in result.stdout
    missing = cli("jobs", "list", "--data", str(tmp_path / "nope"))
    assert missing.returncode == 2 and "does not exist" in missing.stderr


# --------------------------------------------------------------------------- with a runtime


def test_run_executes_jobs_submitted_from_another_process(shared_runtime: Any) -> None:
    rt = shared_runtime
    job_id = rt.submit("Flush", FLUSH)
    wait_for(lambda: rt.started(job_id), f"{job_id} to start")
    listed = rt.run_cli("jobs", "list", "--json", "--status", "Running")
    assert job_id in [r["job_id"] for r in json_lines(listed.stdout)]
    assert listed.stderr == ""
    rt.release(job_id)
    assert rt.wait_status(job_id, JobStatus.COMPLETED) is JobStatus.COMPLETED
    job = rt.job(job_id)
    assert (job.message or "").startswith("steered job done")
    assert job.progress is not None and job.progress.note == "working"
    stats = orjson.loads(rt.run_cli("stats", "--json").stdout)
    assert stats["runtime_pid"] == rt.proc.pid
    assert stats["by_status"]["Completed"] >= 1


def test_cancel_a_running_job_from_another_process(shared_runtime: Any) -> None:
    rt = shared_runtime
    job_id = rt.submit("Flush", FLUSH)
    wait_for(lambda: rt.started(job_id), f"{job_id} to start")
    result = rt.run_cli("jobs", "cancel", job_id)
    assert result.returncode == 0, result.stderr
    assert job_id in result.stdout
    assert rt.wait_status(job_id, JobStatus.CANCELLED) is JobStatus.CANCELLED
    # `run` turns the library's logs on (it is quiet on import) and logs to stderr from INFO.
    wait_for(lambda: f"[{job_id}] Cancelled by user" in "".join(rt.stderr),
             f"the runtime to log that {job_id} was cancelled")
    assert f"[{job_id}] cancel accepted; stopping at its next safe point" in "".join(rt.stderr)
    assert f"[{job_id}] Running (attempt 1)" not in "".join(rt.stderr), "DEBUG is not shown"


def test_cancel_refused_for_a_non_cancellable_running_job(shared_runtime: Any) -> None:
    rt = shared_runtime
    job_id = rt.submit("Cleanup", CLEANUP)
    wait_for(lambda: rt.started(job_id), f"{job_id} to start")
    result = rt.run_cli("jobs", "cancel", job_id)
    assert result.returncode == 1
    assert "cannot be cancelled" in result.stderr
    rt.release(job_id)
    rt.wait_status(job_id, JobStatus.COMPLETED)


def test_a_second_runtime_on_the_store_exits_5(shared_runtime: Any) -> None:
    rt = shared_runtime
    result = rt.run_cli("run")
    assert result.returncode == 5
    assert f"locked by process {rt.proc.pid}" in result.stderr


def test_sigterm_lets_a_running_job_finish_within_the_timeout(start_runtime: Any) -> None:
    rt = start_runtime("--shutdown-timeout", "20")
    (rt.control / "duration").write_text("1.0")
    job_id = rt.submit("Flush", FLUSH)
    wait_for(lambda: rt.started(job_id), f"{job_id} to start")
    assert rt.stop(signal.SIGTERM) == 0
    assert rt.status(job_id) is JobStatus.COMPLETED
    assert "SIGTERM: stopping; 1 running job(s)" in rt.output


def test_sigterm_cancels_a_cancellable_job_past_the_timeout(start_runtime: Any) -> None:
    rt = start_runtime("--shutdown-timeout", "0.3")
    job_id = rt.submit("Flush", FLUSH)
    wait_for(lambda: rt.started(job_id), f"{job_id} to start")
    assert rt.stop(signal.SIGINT) == 0
    assert rt.status(job_id) is JobStatus.CANCELLED


def test_a_job_left_running_at_shutdown_is_recovered_on_the_next_start(
    start_runtime: Any,
) -> None:
    rt = start_runtime("--shutdown-timeout", "0.2")
    job_id = rt.submit("Cleanup", CLEANUP)  # not cancellable, not safe to re-run
    wait_for(lambda: rt.started(job_id), f"{job_id} to start")
    assert rt.stop(signal.SIGTERM) == 0
    assert rt.status(job_id) is JobStatus.RUNNING
    assert "1 job(s) left Running, recovered at next start" in rt.output
    again = start_runtime()
    assert again.status(job_id) is JobStatus.FAILED
    assert again.job(job_id).message == "Server restarted"
    assert again.stop() == 0


def test_run_flushes_a_table_when_its_hot_rows_reach_the_limit(shared_runtime: Any) -> None:
    rt = shared_runtime  # started with --flush-row-limit 50
    with Engine.open(rt.data / "engine") as engine:
        engine.create_table("app", "lim", "Shared")
        engine.insert_many("app", "lim", [{"id": i} for i in range(49)])
        engine.insert("app", "lim", {"id": 49})
    job = wait_for(lambda: rt.job_with_key("FL:app:lim"), "a scheduled flush")
    assert job.params == {**FLUSH, "table_name": "lim"}
    rt.release(job.job_id)
    rt.wait_status(job.job_id, JobStatus.COMPLETED)


def test_watch_until_idle_prints_plain_lines(shared_runtime: Any) -> None:
    rt = shared_runtime
    job_id = rt.submit("Flush", FLUSH)
    wait_for(lambda: rt.started(job_id), f"{job_id} to start")
    rt.release(job_id)
    result = rt.run_cli("jobs", "watch", "--until-idle", "--interval", "0.05", "--view", "plain")
    assert result.returncode == 0, result.stderr
    assert f"{job_id} Flush app:t: Completed" in result.stdout


def test_demo_refuses_a_data_dir_with_a_running_runtime(shared_runtime: Any) -> None:
    rt = shared_runtime
    tables_before = Engine.open(rt.data / "engine")
    try:
        before = tables_before.list_tables()
    finally:
        tables_before.close()
    result = rt.run_cli("demo", "--view", "plain")
    assert result.returncode == 5, result.stdout + result.stderr
    assert f"locked by process {rt.proc.pid}" in result.stderr
    with Engine.open(rt.data / "engine") as engine:
        assert engine.list_tables() == before, "nothing written into the runtime's engine"
