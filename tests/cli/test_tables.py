"""``kalam-actors tables|rows|users``: sample data from the shell, so that every job type can
be tried with the command alone; names are checked by the engine's rule before anything is
opened (no path hides in a name)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from kalam_actors.cli import main
from kalam_actors.storage import Engine

from .conftest import Result, json_lines, run_main


@pytest.fixture
def data(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    root.mkdir()
    return root


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str], data: Path) -> Any:
    """``kalam-actors ARGS --data DATA`` in-process."""
    def call(*args: str) -> Result:
        return run_main(capsys, [*args, "--data", str(data)])

    return call


def test_create_fill_list_and_drop_a_table(run: Any, data: Path) -> None:
    assert run("tables", "list").stderr.startswith("no tables")
    assert not (data / "engine").exists(), "listing made no engine"
    created = run("tables", "create", "app", "events", "--type", "shared", "--options",
                  '{"flush_row_limit": 500}')
    assert created.returncode == 0, created
    assert created.stdout.strip() == "created Shared table app:events"
    assert "tables fill app events" in created.stderr
    filled = run("tables", "fill", "app", "events", "--rows", "250")
    assert filled.returncode == 0, filled
    assert "wrote 250 rows into app:events" in filled.stdout
    assert "submit Flush" in filled.stderr
    listed = json_lines(run("tables", "list", "--json").stdout)
    assert listed == [{"namespace": "app", "table": "events", "table_type": "Shared",
                       "primary_key": "id", "ttl_seconds": None,
                       "options": {"flush_row_limit": 500}, "hot_rows": 250, "segments": 0,
                       "cold_rows": 0, "bytes": 0}]
    table = run("tables", "list").stdout
    assert "app:events" in table and "250" in table
    with Engine.open(data / "engine") as engine:
        rows = engine.scan("app", "events")
    assert len(rows) == 250 and rows[0] == {"id": 1, "name": "row 1", "value": 919}

    again = run("tables", "create", "app", "events", "--type", "Shared")
    assert again.returncode == 3 and "already exists" in again.stderr
    dropped = run("tables", "drop", "app", "events")
    assert dropped.returncode == 0 and "dropped table app:events" in dropped.stdout
    gone = run("tables", "drop", "app", "events")
    assert gone.returncode == 4 and "does not exist" in gone.stderr


def test_rows_put_delete_list(run: Any, data: Path, tmp_path: Path) -> None:
    run("tables", "create", "app", "t", "--type", "Shared", "--pk", "key")
    put = run("rows", "put", "app", "t", '[{"key": "a", "n": 1}, {"key": "b", "n": 2}]')
    assert put.returncode == 0 and "wrote 2 row(s)" in put.stdout, put
    one = tmp_path / "row.json"
    one.write_text('{"key": 7, "n": 3}')
    assert run("rows", "put", "app", "t", f"@{one}").returncode == 0
    listed = json_lines(run("rows", "list", "app", "t").stdout)
    assert [r["key"] for r in listed] == [7, "a", "b"]
    deleted = run("rows", "delete", "app", "t", "a", "7", "nope")
    assert deleted.returncode == 0 and "soft-deleted 2 row(s)" in deleted.stdout, deleted
    assert "1 had no live row" in deleted.stdout
    assert json_lines(run("rows", "list", "app", "t").stdout) == [{"key": "b", "n": 2}]
    limited = run("rows", "list", "app", "t", "--limit", "0")
    assert limited.returncode == 0
    for bad, needle in (("[]", "non-empty array"), ("{nope", "not valid JSON"),
                        ('[{"n": 1}]', "no primary key 'key'")):
        result = run("rows", "put", "app", "t", bad)
        assert result.returncode == 2 and needle in result.stderr, (bad, result)


def test_user_tables_need_users_and_users_can_be_deleted(run: Any, data: Path) -> None:
    run("tables", "create", "app", "notes", "--type", "User")
    no_user = run("tables", "fill", "app", "notes")
    assert no_user.returncode == 2 and "pass --user ID" in no_user.stderr
    assert run("users", "create", "ann", "Ann").stdout.strip() == "created user ann (Ann)"
    filled = run("tables", "fill", "app", "notes", "--rows", "5", "--user", "ann", "--user",
                 "bob")
    assert "wrote 10 rows into app:notes for 2 user(s)" in filled.stdout, filled
    assert len(json_lines(run("rows", "list", "app", "notes", "--user", "ann").stdout)) == 5
    deleted = run("users", "delete", "ann")
    assert deleted.returncode == 0 and "soft-deleted user ann (Ann)" in deleted.stdout
    assert '"user_id":"ann","username":"Ann","cascade":true' in deleted.stderr
    assert run("users", "create", "ann", "Ann").returncode == 3
    assert run("users", "delete", "zed").returncode == 4
    run("tables", "create", "app", "shared", "--type", "Shared")
    wrong = run("tables", "fill", "app", "shared", "--user", "ann")
    assert wrong.returncode == 2 and "User tables only" in wrong.stderr
    owner = run("rows", "put", "app", "notes", '{"id": 1}')
    assert owner.returncode == 2 and "User table: pass user_id" in owner.stderr


@pytest.mark.parametrize("args", [
    ("tables", "create", "..", "t", "--type", "Shared"),
    ("tables", "create", "app", "../../etc", "--type", "Shared"),
    ("tables", "create", "app", "a/b", "--type", "Shared"),
    ("tables", "create", "app", "t", "--type", "Shared", "--pk", "../x"),
    ("tables", "create", "app", "t", "--type", "Weird"),
    ("tables", "create", "app", "t", "--type", "Stream", "--ttl", "0"),
    ("tables", "drop", "../x", "t"),
    ("tables", "fill", "app", "/abs"),
    ("rows", "put", "app", "..", "{}"),
    ("rows", "list", "..", "t"),
    ("rows", "delete", "app", "t/..", "1"),
    ("users", "create", "../u", "U"),
    ("tables", "fill", "app", "t", "--user", "../u"),
    ("tables", "list", "--namespace", "a b"),
])
def test_names_are_checked_before_anything_is_opened(run: Any, data: Path,
                                                     args: tuple[str, ...]) -> None:
    result = run(*args)
    assert result.returncode == 2, result
    assert "kalam-actors: error: invalid" in result.stderr or "unknown table type" in \
        result.stderr or "ttl_seconds" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert not (data / "engine").exists(), "nothing was made"
    assert sorted(p.name for p in data.parent.iterdir()) == ["data"], "nothing outside"


def test_engine_commands_need_the_data_directory(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope"
    code = main(["tables", "create", "app", "t", "--type", "Shared", "--data", str(missing)],
                configure_logging=False)
    assert code == 2 and "does not exist" in capsys.readouterr().err
    assert not missing.exists()


# --------------------------------------------------------------------------- every job type


def test_every_job_type_from_the_shell_alone(start_runtime: Any) -> None:
    """The walk-through of the README, with a real runtime and the built-in executors: each
    job is submitted with ``--wait`` and must end as it should."""
    # The runtime evicts stream tables on its own at each interval's boundary: an hour
    # keeps it out of the way (the eviction below accepts that it might have come first).
    rt = start_runtime("--eviction-interval", "3600", steered=False)

    def call(*args: str) -> Any:
        result = rt.run_cli(*args)
        assert result.returncode == 0, (args, result.stdout, result.stderr)
        assert "no runtime serves" not in result.stderr
        return result

    def ok(*args: str) -> str:
        return str(call(*args).stdout)

    def job(job_type: str, params: dict[str, Any], *statuses: str) -> str:
        result = call("submit", job_type, "--wait", "30", "--params",
                      orjson.dumps(params).decode())
        # --wait ends with "[<job_id>] <status>: <message>" on stderr.
        head = f"[{result.stdout.strip()}] "
        assert result.stderr.startswith(head), result.stderr
        status, _, message = result.stderr[len(head):].partition(": ")
        assert status in (statuses or ("Completed",)), result.stderr
        return message

    events = {"namespace_id": "app", "table_name": "events", "table_type": "Shared"}
    # The first thing a new user tries: a job on a table that is not there yet.
    assert "table app:events does not exist" in job("Flush", events, "Skipped")
    hint = rt.run_cli("submit", "Flush", "--wait", "30", "--params",
                      orjson.dumps(events).decode()).stderr
    assert "make it with: kalam-actors tables create app events --type Shared" in hint
    ok("tables", "create", "app", "events", "--type", "Shared")
    ok("tables", "fill", "app", "events", "--rows", "1000")
    assert "flushed 1000 rows" in job("Flush", events)
    ok("tables", "fill", "app", "events", "--rows", "500", "--start", "1001")
    job("Flush", events)
    assert "compacted 2 files into 1" in job("Compact", events)
    ok("rows", "delete", "app", "events", "1", "2", "3")
    time.sleep(0.5)  # past a retention of 0.0001 h (0.36 s)
    assert "removed 3 soft-deleted rows" in job("Retention", {**events,
                                                             "retention_hours": 0.0001})
    ok("tables", "create", "app", "clicks", "--type", "Stream", "--ttl", "1")
    ok("tables", "fill", "app", "clicks", "--rows", "200")
    time.sleep(1.2)  # past the ttl
    evicted = job("StreamEviction", {"namespace_id": "app", "table_name": "clicks",
                                     "table_type": "Stream", "ttl_seconds": 1},
                  "Completed", "Skipped")
    assert "evicted 200 expired rows" in evicted or "no rows older than 1s" in evicted
    assert ok("rows", "list", "app", "clicks") == ""
    ok("users", "create", "ann", "Ann")
    ok("tables", "create", "app", "notes", "--type", "User")
    ok("tables", "fill", "app", "notes", "--rows", "50", "--user", "ann")
    ok("users", "delete", "ann")
    assert "removed user ann" in job("UserCleanup", {"user_id": "ann", "username": "Ann",
                                                     "cascade": True})
    assert "backed up app:events" in job("Backup", {**events, "backup_location": "nightly"})
    assert "into app:events_copy" in job("Restore", {
        "backup_location": "nightly/app/events", "target_namespace": "app",
        "target_table_name": "events_copy"})
    assert len(json_lines(ok("rows", "list", "app", "events_copy", "--limit", "0"))) == 1497
    job("Cleanup", {"table_id": "app:events_copy", "table_type": "Shared",
                    "operation": "drop_table"})
    job("JobCleanup", {"older_than_days": 7}, "Skipped")
    tables = [t["table"] for t in json_lines(ok("tables", "list", "--json"))]
    assert tables == ["clicks", "events", "notes"]
    stats = orjson.loads(ok("stats", "--json"))
    assert set(stats["by_type"]) >= {"Flush", "Compact", "Retention", "StreamEviction",
                                     "UserCleanup", "Backup", "Restore", "Cleanup"}
    assert all(stats["by_type"][t] >= 1 for t in stats["by_type"]), stats
    assert stats["by_status"]["Skipped"] >= 3
    assert stats["by_status"]["Failed"] == 0
    assert rt.stop() == 0
