"""The engine fixtures that the storage and executor tests share: an engine in a temporary
folder, on a clock that moves only when a test says so."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kalam_actors.storage import Engine

__all__ = ["FakeClock", "clock", "engine"]


class FakeClock:
    """Seconds since the epoch that move only when a test says so."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


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
