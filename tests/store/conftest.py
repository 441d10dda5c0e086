"""Fixtures for the store tests: every contract test runs once per backend in BACKENDS (a
backend whose server is unreachable skips, saying so)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from store_support import BACKENDS, PG_SCHEMAS, POSTGRES, POSTGRES_URL, Backend

from kalam_actors import JobStore


@pytest.fixture(
    params=[pytest.param(b, id=b.name, marks=[pytest.mark.skip(reason=b.skip_reason)]
                         if b.skip_reason else []) for b in BACKENDS],
)
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


@pytest.fixture(scope="session", autouse=True)
def _drop_postgres_schemas() -> Iterator[None]:
    """Drop the PostgreSQL schemas the session's tests made."""
    yield
    if not PG_SCHEMAS or POSTGRES.skip_reason:
        return
    import psycopg

    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        for schema in sorted(PG_SCHEMAS):
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    PG_SCHEMAS.clear()
