"""Acceptance: the README's first command, ``kalam-actors demo``, as a user runs it — the
installed console script, a fresh temporary data directory, output to a pipe."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

EIGHT = ("Flush", "Compact", "Retention", "StreamEviction", "UserCleanup", "Backup", "Restore",
         "Cleanup")


def test_readme_first_command_completes_the_demo(tmp_path: Path) -> None:
    """(``python -m kalam_actors demo`` is driven by tests/cli/test_demo.py.)"""
    script = shutil.which("kalam-actors", path=str(Path(sys.executable).parent))
    if script is None:
        pytest.skip("the kalam-actors console script is not installed next to this Python")
    argv = [script, "demo"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    for job_type in EIGHT:
        assert re.search(rf"^✓ [A-Z]{{2}}-\w{{26}} {job_type} +Completed", out, re.M), job_type
    assert re.search(r"^✓ JC-\w{26} JobCleanup +Skipped .*: no terminal jobs finished more "
                     r"than 7 days ago", out, re.M)
    assert "demo OK" in out
    temp = re.search(r"data directory (\S+)", out)
    assert temp is not None and not Path(temp[1]).exists(), "the temporary folder is removed"


@pytest.mark.slow
def test_readme_first_command_in_a_fresh_virtual_environment(tmp_path: Path) -> None:
    """``pip install`` the project into a new virtual environment (from the configured
    package index), then run ``kalam-actors demo`` there."""
    root = Path(__file__).resolve().parents[2]
    source = tmp_path / "src"
    shutil.copytree(root, source, ignore=shutil.ignore_patterns(
        ".git", "tests", "bench", "build", "*.egg-info", "__pycache__", ".*cache"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = venv / "bin" / "pip"
    install = subprocess.run([str(pip), "install", "-q", str(source)], capture_output=True,
                             text=True, timeout=900)
    assert install.returncode == 0, install.stderr[-3000:]
    result = subprocess.run([str(venv / "bin" / "kalam-actors"), "demo"], capture_output=True,
                            text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for job_type in EIGHT:
        assert re.search(rf"^✓ [A-Z]{{2}}-\w{{26}} {job_type} +Completed", result.stdout,
                         re.M), job_type
    assert "demo OK" in result.stdout
