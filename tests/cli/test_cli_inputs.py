"""The ``kalam-actors`` command's input handling, exit codes and the jobs table, called
in-process through ``cli.main`` (fast); ``test_cli.py`` drives the real command in
subprocesses."""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from kalam_actors import SYSTEM_JOBS_COLUMNS, JobStore

from .conftest import Result, json_lines, run_main

FLUSH = {"namespace_id": "app", "table_name": "t", "table_type": "Shared"}
CLEANUP = {"table_id": "app:t", "table_type": "Shared", "operation": "truncate"}


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Any:
    def run(*args: str) -> Result:
        return run_main(capsys, list(args))

    return run


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """A data directory with an empty job store and no runtime."""
    root = tmp_path / "data"
    JobStore(root / "jobs").close()
    return root


@pytest.fixture
def submit(cli: Any) -> Any:
    def run(data: Path, job_type: str, params: Any, *extra: str) -> Result:
        text = params if isinstance(params, str) else orjson.dumps(params).decode()
        result: Result = cli("submit", job_type, "--data", str(data), "--params", text, *extra)
        return result

    return run


# --------------------------------------------------------------------------- usage and input


def test_help_documents_layout_and_exit_codes(cli: Any) -> None:
    result = cli("--help")
    assert result.returncode == 0
    for text in ("DIR/jobs", "DIR/engine", "exit codes", "3  conflict: an active job holds",
                 "4  not found", "5  store locked"):
        assert text in result.stdout
    for command in ("demo", "run", "submit", "jobs", "stats", "tables", "rows", "users"):
        assert command in result.stdout


def test_no_command_and_unknown_option_are_usage_errors(cli: Any) -> None:
    assert cli().returncode == 2
    assert cli("jobs", "list", "--bogus").returncode == 2
    negative = cli("jobs", "list", "--limit", "-1")
    assert negative.returncode == 2 and "must be >= 0" in negative.stderr


@pytest.mark.parametrize("args", [
    ("jobs", "list"), ("jobs", "show", "FL-01JD9Y3V2TQK8M4N6P0R5S7W9X"), ("stats",),
    ("submit", "Flush", "--params", "{}"), ("jobs", "watch", "--until-idle"),
])
def test_missing_data_dir_exits_2_and_says_so(cli: Any, tmp_path: Path,
                                              args: tuple[str, ...]) -> None:
    missing = tmp_path / "nope"
    result = cli(*args, "--data", str(missing))
    assert result.returncode == 2
    assert f"data directory {missing} does not exist" in result.stderr
    assert not missing.exists(), "a read command must not create the data directory"


def test_run_refuses_a_missing_dir_without_create(cli: Any, tmp_path: Path) -> None:
    result = cli("run", "--data", str(tmp_path / "nope"))
    assert result.returncode == 2
    assert "--create" in result.stderr


def test_data_dir_from_the_environment(cli: Any, data: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KALAM_ACTORS_DATA", str(data))
    result = cli("jobs", "list", "--json")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(("job_type", "params", "needle"), [
    ("Flush", "{not json", "not valid JSON"),
    ("Flush", "[1, 2]", "must be a JSON object"),
    ("Flush", '{"namespace_id": "app"}', "missing required parameter 'table_name'"),
    ("Flush", '{"namespace_id": "app", "table_name": "t", "table_type": "Nope"}',
     "unknown table type"),
    ("Frobnicate", "{}", "unknown job type 'Frobnicate'"),
    ("JobCleanup", '{"older_than_days": -1}', "older_than_days"),
])
def test_bad_submissions_exit_2_and_write_nothing(cli: Any, submit: Any, data: Path,
                                                  job_type: str, params: str,
                                                  needle: str) -> None:
    result = submit(data, job_type, params)
    assert result.returncode == 2, result
    assert needle in result.stderr
    assert result.stdout == ""
    assert cli("jobs", "list", "--data", str(data), "--json").stdout == ""


def test_unknown_and_malformed_ids(cli: Any, data: Path) -> None:
    unknown = "FL-01JD9Y3V2TQK8M4N6P0R5S7W9X"
    for action in ("show", "cancel"):
        result = cli("jobs", action, unknown, "--data", str(data))
        assert result.returncode == 4, result
        assert "not found" in result.stderr
        bad = cli("jobs", action, "FL-nope", "--data", str(data))
        assert bad.returncode == 2
        assert "malformed job id" in bad.stderr


def test_unknown_status_filter_is_a_usage_error(cli: Any, data: Path) -> None:
    result = cli("jobs", "list", "--data", str(data), "--status", "Sleeping")
    assert result.returncode == 2
    assert "unknown job status 'Sleeping'" in result.stderr


# --------------------------------------------------------------------------- store, no runtime


def test_submit_list_show_cancel_without_a_runtime(cli: Any, submit: Any, data: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    first = submit(data, "Flush", FLUSH)
    assert first.returncode == 0, first.stderr
    job_id = first.stdout.strip()
    assert job_id.startswith("FL-")
    second = submit(data, "FL", FLUSH, "--max-retries", "5").stdout.strip()

    rows = json_lines(cli("jobs", "list", "--data", str(data), "--json").stdout)
    assert [r["job_id"] for r in rows] == [job_id, second]
    assert all(list(r) == list(SYSTEM_JOBS_COLUMNS) for r in rows)
    assert rows[0]["status"] == "New" and rows[1]["max_retries"] == 5
    assert rows[0]["parameters"] == FLUSH, "an object, as progress is"

    shown = json_lines(cli("jobs", "show", job_id, "--data", str(data), "--json").stdout)
    assert shown == [rows[0]]
    monkeypatch.setenv("COLUMNS", "400")  # wide enough for every column
    table = cli("jobs", "list", "--data", str(data)).stdout
    assert job_id in table and second in table
    for column in SYSTEM_JOBS_COLUMNS:
        assert column in table

    cancelled = cli("jobs", "cancel", job_id, "--data", str(data))
    assert cancelled.returncode == 0, cancelled.stderr
    assert f"{job_id} Cancelled" in cancelled.stdout
    again = cli("jobs", "cancel", job_id, "--data", str(data))
    assert again.returncode == 1
    assert "Cannot cancel job in status Cancelled" in again.stderr

    only_new = json_lines(cli("jobs", "list", "--data", str(data), "--json",
                              "--status", "new").stdout)
    assert [r["job_id"] for r in only_new] == [second]
    by_prefix = json_lines(cli("jobs", "list", "--data", str(data), "--json", "--type", "CL"
                               ).stdout)
    assert by_prefix == []
    limited = json_lines(cli("jobs", "list", "--data", str(data), "--json", "--limit", "1"
                             ).stdout)
    assert [r["job_id"] for r in limited] == [second]


def test_idempotency_conflict_prints_the_holder_and_exits_3(submit: Any, data: Path) -> None:
    holder = submit(data, "Flush", FLUSH, "--key", "nightly").stdout.strip()
    result = submit(data, "Flush", FLUSH, "--key", "nightly")
    assert result.returncode == 3
    assert result.stdout.strip() == holder
    assert "nightly" in result.stderr
    other = submit(data, "Flush", FLUSH, "--key", "NIGHTLY")
    assert other.returncode == 0, "keys are case-sensitive"


def test_params_from_a_file_and_from_stdin(cli: Any, submit: Any, data: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "params.json"
    path.write_bytes(orjson.dumps(FLUSH))
    assert submit(data, "Flush", f"@{path}").returncode == 0
    monkeypatch.setattr(sys, "stdin", io.StringIO(orjson.dumps(FLUSH).decode()))
    piped = cli("submit", "Flush", "--data", str(data), "--params", "-")
    assert piped.returncode == 0, piped.stderr
    missing = submit(data, "Flush", f"@{tmp_path / 'none.json'}")
    assert missing.returncode == 2 and "cannot read parameters" in missing.stderr


def test_stats_counts_by_type_and_status(cli: Any, submit: Any, data: Path) -> None:
    submit(data, "Flush", FLUSH)
    submit(data, "Cleanup", CLEANUP)
    stats = orjson.loads(cli("stats", "--data", str(data), "--json").stdout)
    assert stats["total"] == 2
    assert stats["runtime_pid"] is None
    assert stats["by_status"]["New"] == 2
    assert stats["by_type"] == {**{k: 0 for k in stats["by_type"]}, "Flush": 1, "Cleanup": 1}
    table = cli("stats", "--data", str(data))
    assert table.returncode == 0 and "runtime: not running" in table.stdout


def test_list_orders_by_creation_across_types(cli: Any, submit: Any, data: Path) -> None:
    """Ids sort by type first; listings merge the types back into creation order."""
    order = [submit(data, t, p).stdout.strip()
             for t, p in (("Restore", {"backup_location": "x", "target_namespace": "a",
                                        "target_table_name": "b"}),
                          ("Flush", FLUSH), ("Cleanup", CLEANUP), ("Flush", FLUSH))]
    rows = json_lines(cli("jobs", "list", "--data", str(data), "--json").stdout)
    assert [r["job_id"] for r in rows] == order
    latest = json_lines(cli("jobs", "list", "--data", str(data), "--json", "--limit", "2",
                            "--newest-first").stdout)
    assert [r["job_id"] for r in latest] == order[:1:-1]
    flushes = json_lines(cli("jobs", "list", "--data", str(data), "--json", "--prefix", "FL-"
                             ).stdout)
    assert [r["job_id"] for r in flushes] == [order[1], order[3]]
