"""Fixtures for the executor tests: an engine in a temporary folder, on a fake clock."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from executor_support import FakeClock

from kalam_actors.storage import Engine


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def engine(tmp_path: Path, clock: FakeClock) -> Iterator[Engine]:
    eng = Engine.open(tmp_path / "engine", clock=clock, durable=False)  # crashes are simulated
    try:
        yield eng
    finally:
        eng.close()
