"""The README's examples run as written: each Python example twice in a row in a fresh folder
(a second run must not trip over the first one's data), printing what the README says and
nothing on stderr (the library is quiet unless asked)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
SET_UP = (
    "python3 -m venv .venv && . .venv/bin/activate && pip install . && kalam-actors demo",
    "python3 -m venv .venv && . .venv/bin/activate && pip install '.[test]' && python -m pytest",
)


def python_examples() -> list[str]:
    """The fenced ``python`` blocks of the README that run something (``.run(``)."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    return [block for block in blocks if ".run(" in block]


def run_example(code: str, folder: Path) -> subprocess.CompletedProcess[str]:
    script = folder / "example.py"
    script.write_text(code)
    return subprocess.run([sys.executable, str(script)], cwd=folder, capture_output=True,
                          text=True, timeout=120)


def test_the_readme_has_its_examples() -> None:
    examples = python_examples()
    assert len(examples) == 2
    assert "trio.run(main)" in examples[0] and "asyncio.run(main())" in examples[1]


def test_the_embedding_example_runs_twice_prints_completed_and_nothing_on_stderr(
    tmp_path: Path,
) -> None:
    code = python_examples()[0]
    for attempt in (1, 2):
        result = run_example(code, tmp_path)
        assert result.returncode == 0, (attempt, result.stderr)
        assert result.stderr == "", (attempt, result.stderr)
        assert result.stdout.startswith("Completed flushed 1 rows into 1 files"), result.stdout
        assert result.stdout.endswith("for default:users\n"), result.stdout
        assert "JobStatus." not in result.stdout


def test_the_asyncio_example_runs_twice(tmp_path: Path) -> None:
    code = python_examples()[1]
    for attempt in (1, 2):
        result = run_example(code, tmp_path)
        assert result.returncode == 0, (attempt, result.stderr)
        assert result.stderr == "", (attempt, result.stderr)
        statuses = result.stdout.split()
        assert statuses[-1] == "Completed", result.stdout
        assert set(statuses) <= {"New", "Queued", "Running", "Completed"}


@pytest.mark.parametrize("command", SET_UP)
def test_the_set_up_commands_are_unchanged(command: str) -> None:
    assert f"```bash\n{command}\n```" in README.read_text()
