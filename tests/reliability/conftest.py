"""Fixtures and options of the reliability suite (issue 7).

``--soak`` (run as ``pytest tests/reliability --soak``, so that this conftest is loaded before
the command line is parsed) makes the kill -9 harness run 200 cycles instead of 20, the
hypothesis state machine run ten times as many examples, and the fuzzers try more inputs.
At the end of the session one summary line per test reports its figures.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pykka
import pytest
from hypothesis import HealthCheck, Phase, settings
from reliability_support import FIGURES

settings.register_profile(
    "reliability-ci",
    max_examples=60,
    stateful_step_count=30,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    # A disagreement costs seconds (the runtime is given time to catch up): CI reports the
    # failing run as found; the soak profile shrinks it to a minimal one.
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile(
    "reliability-soak",
    max_examples=250,
    stateful_step_count=40,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def soak(config: Any) -> bool:
    try:
        return bool(config.getoption("--soak"))
    except ValueError:  # the option is not registered (this conftest loaded late)
        return False


@pytest.fixture
def soak_mode(request: pytest.FixtureRequest) -> bool:
    """True under ``--soak``."""
    return soak(request.config)


@pytest.fixture(autouse=True)
def _stop_all_actors() -> Iterator[None]:
    """Stop every pykka actor a test left behind (a timeout, not a hang, for a stuck one)."""
    try:
        yield
    finally:
        pykka.ActorRegistry.stop_all(block=True, timeout=5)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not FIGURES:
        return
    terminalreporter.section("reliability figures")
    for test, figures in sorted(FIGURES.items()):
        shown = ", ".join(f"{k}={v}" for k, v in figures.items())
        terminalreporter.write_line(f"{test}: {shown}")
