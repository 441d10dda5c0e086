"""Smoke test of the benchmark harness (``python -m bench --quick``): it runs and reports.

It checks the harness, not the figures: the machine running tests is busy and the numbers of a
quick run mean little. A subset of figures keeps it well under a minute; set
``KALAM_BENCH_SMOKE_ALL=1`` to run every figure (about 45 s on 2 idle cores).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytest.importorskip("huey")


def _run(out: Path, only: str | None) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "bench", "--quick", "--out", str(out)]
    if only:
        cmd += ["--only", only]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=170)


def test_quick_run_writes_table_and_json(tmp_path: Path) -> None:
    only = None if os.environ.get("KALAM_BENCH_SMOKE_ALL") else "B1,B4,B6,B8"
    proc = _run(tmp_path, only)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads((tmp_path / "results.json").read_text())
    figures = {row["figure"] for row in results["rows"]}
    expected = {"B1", "B4", "B6", "B8"} if only else {f"B{i}" for i in range(1, 10)}
    assert expected <= figures
    assert results["meta"]["quick"] is True
    for row in results["rows"]:
        assert row["ours"] is not None and row["ours"] == row["ours"], row  # not NaN
    b1 = next(r for r in results["rows"] if r["figure"] == "B1")
    assert b1["peer"] > 0 and b1["ratio"] > 0
    table = (tmp_path / "RESULTS.md").read_text()
    assert "| # | figure | ours | peer | ratio | target | met |" in table
    assert "QUICK RUN" in table


def test_unknown_figure_is_refused(tmp_path: Path) -> None:
    proc = _run(tmp_path, "B99")
    assert proc.returncode == 2
    assert "unknown figures" in proc.stderr
