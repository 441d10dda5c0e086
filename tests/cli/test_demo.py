"""``kalam-actors demo``: the real command in a subprocess (plain and under a pseudo-terminal),
and the live view's renderers in-process."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson
from rich.console import Console

from kalam_actors.live import JobBoard, PlainReporter, jobs_table
from kalam_actors.model import JobRow

from .conftest import DEADLINE_S, cli, cli_env, json_lines

EIGHT = ("Flush", "Compact", "Retention", "StreamEviction", "UserCleanup", "Backup", "Restore",
         "Cleanup")
SUMMARY = re.compile(r"^✓ (?P<id>[A-Z]{2}-\w{26}) (?P<type>\w+) +(?P<status>\w+)", re.M)


def test_demo_runs_every_job_type_and_leaves_a_store_to_inspect(tmp_path: Path) -> None:
    data = tmp_path / "demo"
    result = cli("demo", "--data", str(data), "--view", "plain", timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    summary = {m["type"]: m["status"] for m in SUMMARY.finditer(out)}
    assert {t: summary.get(t) for t in EIGHT} == dict.fromkeys(EIGHT, "Completed")
    assert summary["JobCleanup"] == "Skipped"
    assert "no terminal jobs finished more than 7 days ago" in out
    assert "demo OK: 14 jobs of 9 types ended as expected" in out
    assert "Retrying (retry 1/3) OSError: injected transient fault" in out
    assert "✗" not in out

    rows = json_lines(cli("jobs", "list", "--data", str(data), "--json").stdout)
    assert len(rows) == 14
    assert {r["job_id"] for r in rows} == {m["id"] for m in SUMMARY.finditer(out)}
    for row in rows:
        assert row["job_id"] in out, "the final table lists every job"
    assert sum(r["retry_count"] for r in rows) == 1
    log = (data / "demo.log").read_text()
    for row in rows:
        assert f"[{row['job_id']}] Running (attempt 1)" in log, "the demo logs in DEBUG"
    assert re.search(r"\[[A-Z]{2}-\w{26}\] attempt failed: OSError: injected transient fault",
                     log)

    again = cli("demo", "--data", str(data), "--view", "plain", timeout=120)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "in namespace demo_2" in again.stdout


def run_in_pty(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run a command on a pseudo-terminal (so rich sees a TTY); return its code and output."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(args, stdin=follower, stdout=follower, stderr=follower, env=env,
                            close_fds=True)
    os.close(follower)
    chunks: list[bytes] = []
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 1.0)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        code = proc.wait(timeout=DEADLINE_S)
    finally:
        os.close(leader)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return code, b"".join(chunks).decode(errors="replace")


def test_demo_live_view_on_a_terminal(tmp_path: Path) -> None:
    """A terminal screenshot, as a byte stream: the live view redraws itself (cursor moves
    between frames), its bars change between frames, and the final table lists every job."""
    env = {**cli_env(), "COLUMNS": "180", "LINES": "60", "TERM": "xterm-256color"}
    env.pop("NO_COLOR", None)
    code, out = run_in_pty([sys.executable, "-m", "kalam_actors", "demo", "--data",
                            str(tmp_path / "d")], env)
    assert code == 0, out[-3000:]
    (tmp_path / "screen.txt").write_text(out)
    assert "\x1b[" in out, "rich drew with terminal control sequences"
    redraws = out.count("\x1b[2K")
    assert redraws > 10, f"the live view redrew only {redraws} lines"
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out)
    bar_lines: dict[str, set[str]] = {}
    for line in plain.splitlines():
        found = re.match(r"\s*([A-Z]{2}-\w{26}) .*━", line)
        if found:
            bar_lines.setdefault(found[1], set()).add(" ".join(line.split()))
    assert len(bar_lines) == 14, "a progress bar for every job"
    moved = [job for job, states in bar_lines.items() if len(states) > 1]
    assert moved, "some bar changed between frames"
    assert "demo OK" in plain
    final = plain[plain.rindex("system.jobs — 14 jobs"):]
    for job in bar_lines:
        assert job in final


def row(job_id: str, status: str, done: int | None, total: int | None = 4,
        retry: int = 0, message: str | None = None) -> JobRow:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    return JobRow(job_id, "Flush", status,
                  orjson.dumps({"namespace_id": "app", "table_name": "t",
                                "table_type": "Shared"}).decode(),
                  message, None, None, retry, 3,
                  None if done is None else {"done": done, "total": total, "note": "segments"},
                  now, now, now if status != "Queued" else None,
                  now if status in ("Completed", "Failed") else None)


def screenshot(board: JobBoard) -> str:
    console = Console(record=True, width=140, force_terminal=True, color_system="truecolor")
    console.print(board)
    return console.export_text()


def test_job_board_bars_move_with_progress() -> None:
    job = "FL-06H28Q8E3891PJNRJQX7E1F0WM"
    board = JobBoard()
    board.update([row(job, "Queued", None)])
    assert job not in str(board.progress.tasks), "no bar before the job runs"
    frames = []
    for done in (0, 2, 4):
        board.update([row(job, "Running", done)])
        frames.append(screenshot(board))
    board.update([row(job, "Completed", 4, message="flushed 40 rows")])
    frames.append(screenshot(board))
    assert [("0/4" in f, "2/4" in f, "4/4" in f) for f in frames[:3]] == [
        (True, False, False), (False, True, False), (False, False, True)]
    assert "Completed" in frames[-1] and "flushed 40 rows" in frames[-1]
    assert len(set(frames)) == 4
    retried = JobBoard()
    retried.update([row(job, "Retrying", 1, retry=1)])
    assert "retry 1/3" in screenshot(retried)


def test_plain_reporter_prints_a_line_per_change(tmp_path: Path) -> None:
    path = tmp_path / "out.txt"
    with path.open("w") as f:
        reporter = PlainReporter(Console(file=f, width=200))
        job = "FL-06H28Q8E3891PJNRJQX7E1F0WM"
        for state in (row(job, "Queued", None), row(job, "Running", 1),
                      row(job, "Running", 1), row(job, "Running", 3),
                      row(job, "Completed", 4, message="flushed")):
            reporter.update([state])
    lines = path.read_text().splitlines()
    assert lines == [
        f"{job} Flush app:t: Queued",
        f"{job} Flush app:t: Running 1/4 segments",
        f"{job} Flush app:t: Running 3/4 segments",
        f"{job} Flush app:t: Completed flushed",
    ]


def test_jobs_table_has_every_column_in_order() -> None:
    console = Console(record=True, width=400)
    console.print(jobs_table([row("FL-06H28Q8E3891PJNRJQX7E1F0WM", "Running", 1)]))
    header = next(line for line in console.export_text().splitlines() if "job_id" in line)
    positions = [header.index(c) for c in JobRow._fields]
    assert positions == sorted(positions)


def test_jobs_table_in_a_narrow_terminal_keeps_every_job_and_says_what_is_hidden() -> None:
    from kalam_actors.live import NARROW_COLUMNS, table_columns

    assert table_columns(120) == NARROW_COLUMNS
    console = Console(record=True, width=120)
    jobs = [row(f"FL-06H28Q8E3891PJNRJQX7E1F0W{c}", "Completed", 4, message="ok")
            for c in "MNP"]
    console.print(jobs_table(jobs, title="t", columns=table_columns(120)))
    text = console.export_text()
    assert all(j.job_id in text for j in jobs)
    assert "8 more columns in a wider terminal, with --json" in text
    assert max(len(line) for line in text.splitlines()) <= 120
