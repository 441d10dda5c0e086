"""What the eight built-in executors share: the engine they may be given for checks at
submission, and an ``execute`` that runs the job's work against its storage."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..executor import JobExecutor
from ..model import JobDecision
from ..storage.interface import StorageEngine
from . import _params as p

if TYPE_CHECKING:
    from ..context import JobContext
    from ..model import Job

__all__ = ["EngineExecutor"]


class EngineExecutor(JobExecutor):
    """A built-in executor. ``engine``, if given, is used only to check parameters at
    submission (e.g. backup roots); every attempt runs against ``ctx.storage``."""

    def __init__(self, engine: StorageEngine | None = None) -> None:
        self._engine = engine

    def execute(self, ctx: JobContext, job: Job) -> JobDecision:
        return p.guard(ctx, lambda engine: self._run(ctx, engine))

    def _run(self, ctx: JobContext, engine: StorageEngine) -> JobDecision:
        """The job's work, with the job's engine; guard() turns expected failures into data."""
        raise NotImplementedError
