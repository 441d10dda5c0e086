"""A ``table_type`` that contradicts the table is refused at submission when the executor's
engine knows the table, and still caught at run time when the table changed in between."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from executor_support import table_params

from kalam_actors import InvalidParams, Outcome
from kalam_actors.executors import (
    BackupExecutor,
    CleanupExecutor,
    CompactExecutor,
    FlushExecutor,
    RetentionExecutor,
    StreamEvictionExecutor,
)
from kalam_actors.executors._base import EngineExecutor
from kalam_actors.storage import Engine, TableType
from kalam_actors.testing import make_context, make_job

NS = "default"


def _backup(kind: str, engine: Any) -> dict[str, Any]:
    roots = getattr(engine, "backup_roots", None) or (Path("/b"),)
    return table_params("t", kind, backup_location=str(roots[0]))


# Each executor that works on one table, with parameters naming ``kind`` as its type.
JOBS: dict[str, tuple[type[EngineExecutor], Callable[[str, Any], dict[str, Any]]]] = {
    "flush": (FlushExecutor, lambda kind, _: table_params("t", kind)),
    "compact": (CompactExecutor, lambda kind, _: table_params("t", kind)),
    "retention": (RetentionExecutor,
                  lambda kind, _: table_params("t", kind, retention_hours=1)),
    "eviction": (StreamEvictionExecutor,
                 lambda kind, _: table_params("t", kind, ttl_seconds=60)),
    "backup": (BackupExecutor, _backup),
    "cleanup": (CleanupExecutor, lambda kind, _: {"table_id": "default:t", "table_type": kind,
                                                  "operation": "truncate"}),
}


@dataclasses.dataclass(frozen=True)
class RootsOnly:
    """What the CLI hands its validators instead of an engine (cli.validators)."""

    backup_roots: tuple[Path, ...]


@pytest.mark.parametrize("job", sorted(JOBS))
def test_a_contradicting_table_type_is_refused_naming_the_field(engine: Engine, job: str
                                                               ) -> None:
    executor, params = JOBS[job]
    engine.create_table(NS, "t", TableType.USER)
    with pytest.raises(InvalidParams) as refused:
        executor(engine).validate_params(params("Stream", engine))
    assert refused.value.field == "table_type"
    assert str(refused.value) == ("parameter 'table_type' is Stream, but table default:t is a "
                                  "User table")


@pytest.mark.parametrize("job", sorted(JOBS))
def test_without_an_engine_that_can_answer_only_the_syntax_is_checked(
    engine: Engine, tmp_path: Path, job: str
) -> None:
    executor, params = JOBS[job]
    engine.create_table(NS, "t", TableType.USER)
    closed = Engine.open(tmp_path / "closed", durable=False)
    closed.create_table(NS, "t", TableType.USER)
    closed.close()
    for stand_in in (None, RootsOnly((engine.path / "backups",)), closed):
        executor(stand_in).validate_params(params("Stream", stand_in))  # type: ignore[arg-type]


@pytest.mark.parametrize("job", sorted(JOBS))
def test_a_missing_or_matching_table_is_accepted(engine: Engine, job: str) -> None:
    executor, params = JOBS[job]
    executor(engine).validate_params(params("Stream", engine))  # no such table yet
    engine.create_table(NS, "t", TableType.STREAM, ttl_seconds=60)
    executor(engine).validate_params(params("Stream", engine))


@pytest.mark.parametrize("job", sorted(JOBS))
def test_a_table_changed_after_submission_is_caught_when_the_job_runs(engine: Engine, job: str
                                                                     ) -> None:
    executor, params = JOBS[job]
    engine.create_table(NS, "t", TableType.STREAM, ttl_seconds=60)
    checked = executor(engine)
    job_params = params("Stream", engine)
    checked.validate_params(job_params)
    # Dropped and created again as another type between create_job and the attempt
    engine.drop_table_data(NS, "t", keep_metadata=False)
    engine.create_table(NS, "t", TableType.USER)
    record = make_job(checked.job_type, job_params)
    decision = checked.execute(make_context(record, storage=engine)[0], record)
    assert (decision.outcome, decision.message) == (
        Outcome.FAILED, "table default:t is a User table, not Stream as the job says")
