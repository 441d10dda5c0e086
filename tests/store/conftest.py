"""Fixtures for the store tests: every contract test runs once per backend in BACKENDS."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from store_support import BACKENDS, Backend

from kalam_actors import JobStore


@pytest.fixture(params=BACKENDS, ids=lambda backend: backend.name)
def backend(request: pytest.FixtureRequest) -> Backend:
    """One backend of the store contract."""
    chosen: Backend = request.param
    return chosen


@pytest.fixture
def store(backend: Backend, tmp_path: Path) -> Iterator[JobStore]:
    """An empty store of the backend, closed after the test."""
    opened = backend.open(tmp_path / "jobs", ())
    try:
        yield opened
    finally:
        opened.close()
