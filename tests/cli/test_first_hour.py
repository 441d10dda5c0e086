"""A new user's first hour with the command (issue 17): one-line errors with the documented
exit codes for a data directory that is a file, holds files where folders belong, or sits on
a read-only file system; reading on a read-only file system; a hint when no runtime serves
the store; tables that fit the terminal; help, ``--version`` and JSON output."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

import kalam_actors
from kalam_actors import JobStatus, JobStore, JobType, start_job_manager
from kalam_actors.storage import Engine

from .conftest import Result, cli, cli_env, json_lines, run_main

FLUSH = {"namespace_id": "app", "table_name": "t", "table_type": "Shared"}
TRACEBACK = "Traceback (most recent call last)"


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Any:
    """``kalam-actors ARGS`` in-process."""
    def call(*args: str) -> Result:
        return run_main(capsys, list(args))

    return call


def one_line_error(result: Any, code: int, *needles: str) -> None:
    assert result.returncode == code, result
    assert TRACEBACK not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kalam-actors: "), result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """A data directory with an empty job store and no runtime."""
    root = tmp_path / "data"
    JobStore(root / "jobs").close()
    return root


def submit(run: Any, data: Path, *extra: str, params: Any = FLUSH) -> Result:
    result: Result = run("submit", "Flush", "--data", str(data), "--params",
                         orjson.dumps(params).decode(), *extra)
    return result


# --------------------------------------------------------------------------- 1. paths


@pytest.mark.parametrize("args", [
    ("run", "--create"), ("run",), ("demo", "--view", "plain"), ("jobs", "list"), ("stats",),
    ("submit", "Flush", "--params", "{}"), ("tables", "list"),
])
def test_a_data_dir_that_is_a_file_is_named_as_one(run: Any, tmp_path: Path,
                                                   args: tuple[str, ...]) -> None:
    path = tmp_path / "afile"
    path.write_text("not a folder")
    result = run(*args, "--data", str(path))
    one_line_error(result, 2, f"{path} is a file, not a data directory")
    assert path.read_text() == "not a folder"


@pytest.mark.parametrize("args", [("run",), ("jobs", "list"), ("stats",),
                                  ("demo", "--view", "plain")])
def test_jobs_that_is_a_file_is_named_as_one(run: Any, tmp_path: Path,
                                             args: tuple[str, ...]) -> None:
    (tmp_path / "jobs").write_text("")
    result = run(*args, "--data", str(tmp_path))
    one_line_error(result, 2, f"{tmp_path / 'jobs'} is a file, not a folder", "job store")


def test_engine_that_is_a_file_is_named_as_one(run: Any, tmp_path: Path) -> None:
    (tmp_path / "engine").write_text("")
    for args in (("run",), ("tables", "list")):
        one_line_error(run(*args, "--data", str(tmp_path)), 2,
                       f"{tmp_path / 'engine'} is a file, not a folder", "storage engine")


def test_the_real_command_prints_one_line_for_a_file(tmp_path: Path) -> None:
    path = tmp_path / "afile"
    path.write_text("")
    for args in (("run", "--create"), ("demo",)):
        result = cli(*args, "--data", str(path))
        one_line_error(result, 2, "is a file, not a data directory")


# --------------------------------------------------------------------------- 1. read-only


def _read_only_supported() -> bool:
    if sys.platform != "linux" or shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-rm", "true"], capture_output=True)
    return probe.returncode == 0


read_only_fs = pytest.mark.skipif(
    not _read_only_supported(),
    reason="needs `unshare -rm` (a private mount namespace) to mount a folder read-only")


def on_read_only(folder: Path,
                 *commands: tuple[str, ...]) -> list[subprocess.CompletedProcess[str]]:
    """Run each ``kalam-actors`` command with ``folder`` bind-mounted read-only over itself,
    in a private mount namespace (nothing outside this call sees the mount)."""
    script = ['mount --bind "$0" "$0" && mount -o remount,ro,bind "$0" || exit 99',
              'touch "$0/probe" 2>/dev/null && exit 98']
    for i, args in enumerate(commands):
        quoted = " ".join(f"'{a}'" for a in args)
        script.append(f'"{sys.executable}" -m kalam_actors {quoted} >"$1/out{i}" '
                      f'2>"$1/err{i}"; echo $? >"$1/rc{i}"')
    results_dir = folder.parent / f"{folder.name}-results"
    results_dir.mkdir(exist_ok=True)
    done = subprocess.run(["unshare", "-rm", "sh", "-c", "\n".join(script), str(folder),
                           str(results_dir)], env=cli_env(), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, (done.returncode, done.stderr)
    return [subprocess.CompletedProcess(
        args, int((results_dir / f"rc{i}").read_text()), (results_dir / f"out{i}").read_text(),
        (results_dir / f"err{i}").read_text()) for i, args in enumerate(commands)]


@pytest.fixture
def filled(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A data directory with a table and a finished job, made by a runtime now stopped."""
    data = tmp_path / "data"
    with Engine.open(data / "engine") as engine:
        engine.create_table("app", "t", "Shared")
        engine.insert_many("app", "t", [{"id": i} for i in range(10)])
        with start_job_manager(data / "jobs", storage=engine) as manager:
            job_id = manager.create_job(JobType.FLUSH, FLUSH)
            assert manager.wait_job(job_id, timeout_s=30).status is JobStatus.COMPLETED
    yield data, job_id


@read_only_fs
def test_reading_works_and_writing_says_why_on_a_read_only_file_system(
    filled: tuple[Path, str],
) -> None:
    data, job_id = filled
    d = str(data)
    listed, stats, shown, watched, run_, submitted, cancel, tables = on_read_only(
        data,
        ("jobs", "list", "--json", "--data", d),
        ("stats", "--json", "--data", d),
        ("jobs", "show", job_id, "--data", d),
        ("jobs", "watch", "--until-idle", "--view", "plain", "--data", d),
        ("run", "--data", d),
        ("submit", "Flush", "--params", orjson.dumps(FLUSH).decode(), "--data", d),
        ("jobs", "cancel", job_id, "--data", d),
        ("tables", "create", "app", "u", "--type", "Shared", "--data", d),
    )
    assert listed.returncode == 0, listed.stderr
    assert [r["job_id"] for r in json_lines(listed.stdout)] == [job_id]
    assert stats.returncode == 0 and orjson.loads(stats.stdout)["total"] == 1, stats.stderr
    assert shown.returncode == 0 and "Completed" in shown.stdout, shown.stderr
    assert watched.returncode == 0 and f"{job_id} Flush app:t: Completed" in watched.stdout
    for result, command in ((run_, "run"), (submitted, "submit"), (cancel, "jobs cancel"),
                            (tables, "tables create")):
        one_line_error(result, 1, "read-only file system", f"`{command}` writes")


@read_only_fs
def test_create_and_demo_on_a_read_only_file_system(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    new = str(folder / "new")
    created, demo = on_read_only(folder, ("run", "--create", "--data", new),
                                 ("demo", "--view", "plain", "--data", new))
    for result in (created, demo):
        one_line_error(result, 1, f"cannot create data directory {new}", "Read-only file system")


def test_the_job_store_reads_through_a_read_only_lmdb_environment(
    filled: tuple[Path, str],
) -> None:
    """What makes reading work on a read-only file system, seen without one: a JobStore
    that only reads opens LMDB read-only, and only a write reopens it writable."""
    data, job_id = filled
    with JobStore(data / "jobs") as store:
        assert store.env.flags()["readonly"] is True
        assert store.get_job(job_id) is not None
        assert store.env.flags()["readonly"] is True, "reading did not reopen it"


# --------------------------------------------------------------------------- 4. no runtime


def test_submit_says_when_no_runtime_serves_the_store(run: Any, data: Path) -> None:
    result = submit(run, data)
    assert result.returncode == 0, result
    assert result.stdout.strip().startswith("FL-")
    assert f"no runtime serves {data}" in result.stderr
    assert f"kalam-actors run --data {data}" in result.stderr


def test_submit_wait_with_no_runtime_ends_with_a_hint(run: Any, data: Path) -> None:
    result = submit(run, data, "--wait", "0.2")
    one_line_error_in_last_line(result, 1, "still New after 0.2 s", f"no runtime serves {data}",
                                f"kalam-actors run --data {data}")


def one_line_error_in_last_line(result: Any, code: int, *needles: str) -> None:
    assert result.returncode == code, result
    assert TRACEBACK not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    for needle in needles:
        assert needle in last, (needle, last)


def test_submit_to_a_running_runtime_has_no_note(shared_runtime: Any) -> None:
    rt = shared_runtime
    result = rt.run_cli("submit", "Flush", "--params", orjson.dumps(FLUSH).decode())
    assert result.returncode == 0 and "no runtime" not in result.stderr, result.stderr
    job_id = result.stdout.strip()
    rt.release(job_id)
    rt.wait_status(job_id, JobStatus.COMPLETED)


# --------------------------------------------------------------------------- 5. tables, help


@pytest.fixture
def mixed(data: Path) -> tuple[Path, list[str]]:
    """Jobs that ended Completed, Cancelled and Skipped, with long messages."""
    with Engine.open(data / "engine") as engine:
        engine.create_table("app", "t", "Shared")
        engine.create_table("app", "s", "Stream", ttl_seconds=60)
        engine.insert_many("app", "t", [{"id": i} for i in range(5)])
        with start_job_manager(data / "jobs", storage=engine) as manager:
            ids = [manager.create_job(JobType.FLUSH, FLUSH),
                   manager.create_job(JobType.STREAM_EVICTION, {
                       "namespace_id": "app", "table_name": "s", "table_type": "Stream",
                       "ttl_seconds": 60})]
            for job_id in ids:
                manager.wait_job(job_id, timeout_s=30)
    with JobStore(data / "jobs") as store:
        new = store.create_job(JobType.FLUSH, FLUSH)
        store.cancel_job(new)
    return data, [*ids, new]


@pytest.mark.parametrize("width", [80, 100, 120, 160])
def test_jobs_list_fits_the_terminal_without_cutting_statuses(
    run: Any, mixed: tuple[Path, list[str]], width: int, monkeypatch: pytest.MonkeyPatch,
) -> None:
    data, ids = mixed
    monkeypatch.setenv("COLUMNS", str(width))
    result = run("jobs", "list", "--data", str(data))
    assert result.returncode == 0, result
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= width
    header = next(line for line in lines if "job_id" in line)
    assert "message" in header and "status" in header
    for word in ("Completed", "Cancelled", "Skipped", "StreamEviction"):
        assert any(word in line.split() for line in lines), word
    for job_id in ids:
        assert job_id in result.stdout


def test_stats_fits_80_columns(run: Any, mixed: tuple[Path, list[str]],
                               monkeypatch: pytest.MonkeyPatch) -> None:
    data, _ = mixed
    monkeypatch.setenv("COLUMNS", "80")
    result = run("stats", "--data", str(data))
    assert result.returncode == 0
    assert max(len(line) for line in result.stdout.splitlines()) <= 80
    for status in ("Completed", "Cancelled", "Skipped"):
        assert status in result.stdout


@pytest.mark.parametrize("width", [80, 140])
def test_the_live_board_fits_the_terminal(mixed: tuple[Path, list[str]], width: int) -> None:
    from rich.console import Console

    from kalam_actors.live import JobBoard

    data, ids = mixed
    with JobStore(data / "jobs") as store:
        rows = list(store.system_jobs())
    for show_table in (True, False):
        board = JobBoard(show_table=show_table)
        board.update(rows)
        console = Console(record=True, width=width, force_terminal=True)
        console.print(board)
        lines = console.export_text().splitlines()
        assert max(len(line) for line in lines) <= width
        for job_id in ids[:2]:  # the jobs that ran have bars
            bar = next(line for line in lines if line.startswith(job_id))
            assert {"Completed", "Skipped"} & set(bar.split()), bar
        if show_table:
            header = next(line for line in lines if "job_id" in line)
            assert "status" in header and "message" in header
            assert any("Cancelled" in line.split() for line in lines)


def test_piped_output_follows_columns_else_120(mixed: tuple[Path, list[str]]) -> None:
    data, ids = mixed
    env = cli_env()
    env["COLUMNS"] = "90"
    narrow = cli("jobs", "list", "--data", str(data), env=env)
    assert narrow.returncode == 0, narrow.stderr
    assert max(len(line) for line in narrow.stdout.splitlines()) <= 90
    env.pop("COLUMNS")
    default = cli("jobs", "list", "--data", str(data), env=env)
    widths = [len(line) for line in default.stdout.splitlines()]
    assert 90 < max(widths) <= 120
    assert all(job_id in default.stdout for job_id in ids)


def test_demo_through_a_pipe_keeps_one_line_per_job(tmp_path: Path) -> None:
    env = cli_env()
    env.pop("COLUMNS")
    result = cli("demo", "--data", str(tmp_path / "d"), env=env, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = [line for line in result.stdout.splitlines() if line.startswith("✓ ")]
    assert len(summary) == 14
    assert any(line.startswith("✓ JC-") and "no terminal jobs finished more than 7 days "
               "ago" in line for line in summary)
    table = result.stdout[result.stdout.index("system.jobs — 14 jobs"):]
    assert max(len(line) for line in table.split("✓ ")[0].splitlines()) <= 120


def test_the_long_help_block_is_shown_once_at_the_top(run: Any) -> None:
    top = run("--help")
    assert top.returncode == 0 and top.stdout.count("exit codes:") == 1
    for args in (("run",), ("submit",), ("jobs", "list"), ("jobs", "show"), ("stats",),
                 ("tables", "create"), ("demo",)):
        sub = run(*args, "--help")
        assert sub.returncode == 0, args
        assert "exit codes:" not in sub.stdout and "DIR/jobs " not in sub.stdout, args
        assert "kalam-actors --help" in sub.stdout, args


@pytest.mark.parametrize("args", [("jobs", "list"), ("jobs", "show"), ("jobs", "cancel"),
                                  ("stats",), ("tables", "list")])
def test_json_options_have_help(run: Any, args: tuple[str, ...]) -> None:
    text = run(*args, "--help").stdout
    options = text[text.index("options:"):]
    described = options[options.index("--json") + len("--json"):].split("\n  -")[0]
    assert "JSON" in described, text


def test_version(run: Any) -> None:
    result = run("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"kalam-actors {kalam_actors.__version__}"
    real = cli("--version")
    assert real.returncode == 0 and real.stdout.strip() == result.stdout.strip()


def test_json_parameters_are_objects(run: Any, data: Path) -> None:
    job_id = submit(run, data).stdout.strip()
    listed = json_lines(run("jobs", "list", "--data", str(data), "--json").stdout)
    shown = json_lines(run("jobs", "show", job_id, "--data", str(data), "--json").stdout)
    assert listed[0]["parameters"] == FLUSH == shown[0]["parameters"]


# --------------------------------------------------------------------------- environment


def test_no_traceback_for_an_unreadable_params_file_or_missing_env(
    run: Any, data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("KALAM_ACTORS_DATA", raising=False)
    result = run("jobs", "list")
    one_line_error(result, 2, "no data directory")
    bad = run("submit", "Flush", "--data", str(data), "--params", f"@{tmp_path}")
    one_line_error(bad, 2, "cannot read parameters")
