"""Fixtures shared by every test: no actor outlives its test, a virtual clock, and captured
runtime logs."""

from __future__ import annotations

from collections.abc import Iterator

import pykka
import pytest
import trio.testing
from loguru import logger


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", help="also run tests marked slow")
    # Declared here, at the root, so `pytest --soak` works from the repository root too.
    parser.addoption(
        "--soak",
        action="store_true",
        default=False,
        help="reliability suite: run the long soak (more kill -9 cycles, more examples)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _stop_all_actors() -> Iterator[None]:
    """Stop every pykka actor a test left behind, as pykka's own suite does."""
    try:
        yield
    finally:
        pykka.ActorRegistry.stop_all(block=True, timeout=5)


@pytest.fixture
def vclock() -> trio.testing.MockClock:
    """Virtual time that jumps ahead only after 20 ms of real idleness.

    The runtime's actors work in real threads; with a zero threshold, virtual time would race
    through timers while a thread runs a one-millisecond job. 20 ms keeps every virtual duration
    exact while a whole retry schedule still passes in a blink of real time.
    """
    return trio.testing.MockClock(autojump_threshold=0.02)


@pytest.fixture
def log_lines() -> Iterator[list[str]]:
    """Every message the runtime logs during the test, at any level."""
    lines: list[str] = []
    # The library is quiet until the application turns it on; this test is that application.
    logger.enable("kalam_actors")
    logger.enable("supervisors")
    sink = logger.add(lambda m: lines.append(m.record["message"]), level="TRACE")
    try:
        yield lines
    finally:
        logger.remove(sink)
        logger.disable("kalam_actors")
        logger.disable("supervisors")
