"""What the eight built-in executors share: the engine they may be given for checks at
submission, and an ``execute`` that runs the job's work against its storage."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..executor import JobExecutor
from ..model import JobDecision
from ..storage.interface import StorageEngine, TableType
from . import _params as p

if TYPE_CHECKING:
    from ..context import JobContext
    from ..model import Job

__all__ = ["EngineExecutor"]

Target = tuple[str, str, TableType]
"""``(namespace, table, table_type)`` of a job on one table."""


class EngineExecutor(JobExecutor):
    """A built-in executor. ``engine``, if given, is used only to check parameters at
    submission (backup roots, the type of a table it holds); every attempt runs against
    ``ctx.storage``."""

    def __init__(self, engine: StorageEngine | None = None) -> None:
        self._engine = engine

    def validate_params(self, params: dict[str, Any]) -> None:
        """The parameters on their own, then, for a job on one table, its type against the
        table the engine holds now (the job checks again when it runs: a table may be
        dropped and re-created in between)."""
        target = self._check_params(params)
        if target is not None:
            p.known_table_type(self._engine, *target)

    def _check_params(self, params: dict[str, Any]) -> Target | None:
        """Check the parameters without asking the engine about tables (runs again at the
        start of every attempt); return the table the job works on, if it works on one."""
        raise NotImplementedError

    def execute(self, ctx: JobContext, job: Job) -> JobDecision:
        return p.guard(ctx, lambda engine: self._run(ctx, engine))

    def _run(self, ctx: JobContext, engine: StorageEngine) -> JobDecision:
        """The job's work, with the job's engine; guard() turns expected failures into data."""
        raise NotImplementedError
