"""Issue 7.6 (CLI) — bad command-line input, fuzzed: every bad argument gets a one-line error
and a documented exit code (2 usage, 3 conflict, 4 not found, 5 locked, 1 failed), never a
traceback; nothing is written to the store; the process (here: the test) stays alive.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from reliability_support import audit_store, report

from kalam_actors import JobStore

cli = pytest.importorskip("kalam_actors.cli")

DOCUMENTED = {1, 2, 3, 4, 5}
FLUSH = {"namespace_id": "app", "table_name": "events", "table_type": "Shared"}


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    assert cli.main(["submit", "--data", str(path), "FL", "--params", json.dumps(FLUSH)],
                    configure_logging=False) in (0, 2)
    return path


def _jobs(data: Path) -> set[str]:
    job_dir = data
    try:
        with JobStore(job_dir if (job_dir / "jobs.lmdb").exists() else job_dir / "jobs") as store:
            return set(audit_store(store).records)
    except Exception:
        return set()


def _run(argv: list[str], capsys: pytest.CaptureFixture[str],
         monkeypatch: pytest.MonkeyPatch, stdin: str = "") -> tuple[int, str]:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    try:
        code = cli.main(argv, configure_logging=False)
    except SystemExit as exc:  # argparse's own usage errors
        code = exc.code if isinstance(exc.code, int) else 2
    err = capsys.readouterr().err
    return code, err


def bad_argvs(data: Path, tmp_path: Path) -> list[list[str]]:
    d = ["--data", str(data)]
    deep = "[" * 5000 + "]" * 5000
    not_json = tmp_path / "params.txt"
    not_json.write_bytes(b"\xff\xfe not json")
    return [
        ["submit", *d, "NOPE", "--params", "{}"],
        ["submit", *d, "", "--params", "{}"],
        ["submit", *d, "FL", "--params", "{"],
        ["submit", *d, "FL", "--params", "[]"],
        ["submit", *d, "FL", "--params", '{"a": NaN}'],
        ["submit", *d, "FL", "--params", deep],
        ["submit", *d, "FL", "--params", json.dumps({"x": "y" * (1 << 20)})],
        ["submit", *d, "FL", "--params", "@" + str(tmp_path / "missing.json")],
        ["submit", *d, "FL", "--params", "@" + str(tmp_path)],
        ["submit", *d, "FL", "--params", "-"],
        ["submit", *d, "FL", "--params", json.dumps({**FLUSH, "table_name": "../../etc"})],
        ["submit", *d, "FL", "--params", json.dumps({**FLUSH, "namespace_id": "a/b"})],
        ["submit", *d, "BK", "--params", json.dumps({**FLUSH, "backup_location": "../../x"})],
        ["submit", *d, "BK", "--params",
         json.dumps({**FLUSH, "backup_location": "file:///../../etc"})],
        ["submit", *d, "RS", "--params", json.dumps({"backup_location": "../../../etc/passwd",
                                                     "target_namespace": "a",
                                                     "target_table_name": "b"})],
        ["submit", *d, "FL", "--params", json.dumps(FLUSH), "--key", ""],
        ["submit", *d, "FL", "--params", json.dumps(FLUSH), "--key", "k" * 300],
        ["submit", *d, "FL", "--params", json.dumps(FLUSH), "--max-retries", "-1"],
        ["submit", *d, "FL", "--params", json.dumps(FLUSH), "--max-retries", "x"],
        ["submit", *d, "FL", "--params", json.dumps(FLUSH), "--timeout", "0"],
        ["submit", *d, "FL", "--params", json.dumps(FLUSH), "--timeout", "nan"],
        ["submit", *d, "FL", "--params", json.dumps(FLUSH), "--timeout", "-1"],
        ["submit", "--data", str(tmp_path / "nowhere"), "FL", "--params", json.dumps(FLUSH)],
        ["submit", "--data", str(not_json), "FL", "--params", json.dumps(FLUSH)],
        ["jobs", "show", *d, "../../etc/passwd"],
        ["jobs", "show", *d, ""],
        ["jobs", "show", *d, "FL-" + "Z" * 26],
        ["jobs", "show", *d, "FL-01JD9Y3V2TQK8M4N6P0R5S7W9X"],
        ["jobs", "cancel", *d, "x" * 10_000],
        ["jobs", "cancel", *d, "FL-01JD9Y3V2TQK8M4N6P0R5S7W9X"],
        ["jobs", "list", *d, "--status", "Bogus"],
        ["jobs", "list", *d, "--type", "Bogus"],
        ["jobs", "list", *d, "--limit", "-1"],
        ["jobs", "list", *d, "--limit", "many"],
        ["jobs", "watch", *d, "--interval", "0"],
        ["stats", "--data", str(tmp_path / "nowhere")],
        ["run", "--data", str(data), "--max-concurrent", "0"],
        ["run", "--data", str(data), "--plugin", "no_such_module:x"],
        ["bogus-command"],
        [],
    ]


def test_bad_cli_arguments_get_documented_errors(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    before = _jobs(data)
    tried = 0
    problems = []
    for argv in bad_argvs(data, tmp_path):
        shown = " ".join(a if len(a) < 60 else a[:57] + "..." for a in argv[2:] or argv)
        try:
            code, err = _run(argv, capsys, monkeypatch)
        except Exception as exc:
            problems.append(f"{shown}: raised {type(exc).__name__}: {exc}")
            continue
        finally:
            tried += 1
        if code not in DOCUMENTED:
            problems.append(f"{shown}: exited {code}: {err[-300:]}")
        elif "Traceback" in err or not err.strip():
            problems.append(f"{shown}: no clear one-line error: {err[-300:]!r}")
        after = _jobs(data)
        if after != before:
            problems.append(f"{shown}: wrote a job")
            before = after
    assert not problems, "\n".join(problems)
    report("cli_fuzz", inputs_tried=tried)


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(args=st.lists(st.text(max_size=20).filter(lambda s: "\x00" not in s), max_size=6),
       params=st.text(max_size=60))
def test_fuzzed_cli_submit(args: list[str], params: str, tmp_path_factory: Any) -> None:
    data = tmp_path_factory.mktemp("cli") / "data"
    argv = ["submit", "--data", str(data), "FL", "--params", params, *args]
    out, err = io.StringIO(), io.StringIO()
    import contextlib

    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            code = cli.main(argv, configure_logging=False)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 2
    assert code in DOCUMENTED | {0}, f"{argv} exited {code}: {err.getvalue()[-500:]}"
    assert "Traceback" not in err.getvalue()
    report("cli_fuzz", fuzzed=1)


# Inputs that once got a traceback or wrote a job; each fixed in the CLI.
FAULTS = {
    "non-utf8-file": lambda d, t: ["submit", *d, "FL", "--params", "@" + str(t)],
    "plugin-os-system": lambda d, t: ["run", *d, "--plugin", "os:system"],
    "backup-outside-roots": lambda d, t: [
        "submit", *d, "BK", "--params", json.dumps({**FLUSH, "backup_location": "/etc"})],
}


@pytest.mark.parametrize("case", list(FAULTS))
def test_cli_faults(case: str, data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                    monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "params.bin"
    bad.write_bytes(b"\xff\xfe not utf-8")
    argv = FAULTS[case](["--data", str(data)], bad)
    before = _jobs(data)
    code, err = _run(argv, capsys, monkeypatch)
    assert code in DOCUMENTED and code != 0, f"exited {code}: {err[-300:]}"
    assert "Traceback" not in err and err.strip()
    assert _jobs(data) == before, "wrote a job"
