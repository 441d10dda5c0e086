"""What the ``kalam-actors`` command and its demo share: exit codes, the data directory's
layout, the executors a runtime serves, and how the command turns the library's logs on.

It imports neither ``cli`` nor ``demo``, so those two do not import each other.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

from loguru import logger

from . import _runtime_lock
from .executor import JobExecutor
from .ids import JobType

__all__ = [
    "DATA_ENV",
    "EXIT_CONFLICT",
    "EXIT_FAILED",
    "EXIT_LOCKED",
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_USAGE",
    "LOGGERS",
    "CliError",
    "DataDir",
    "enable_logs",
    "load_plugin",
    "runtime_executors",
]

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_CONFLICT: Final = 3
EXIT_NOT_FOUND: Final = 4
EXIT_LOCKED: Final = 5

DATA_ENV: Final = "KALAM_ACTORS_DATA"

LOGGERS: Final = ("kalam_actors", "supervisors")
"""The packages whose loguru loggers are off on import (a library is quiet)."""


class CliError(Exception):
    """An error the command reports in one line and exits with ``code`` for."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


def enable_logs(level: str | None) -> None:
    """Turn the library's logs on, replacing loguru's handlers: to stderr at ``level``, or to
    no sink at all when ``level`` is None (the caller adds its own, as the demo does)."""
    logger.remove()
    for name in LOGGERS:
        logger.enable(name)
    if level is not None:
        logger.add(sys.stderr, level=level, colorize=False,
                   format="{time:HH:mm:ss.SSS} {level: <7} {message}")


class DataDir:
    """The layout of a data directory: ``jobs`` (job store) and ``engine`` (storage engine)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser()
        self.jobs = self.root / "jobs"
        self.engine = self.root / "engine"
        self.policy_file = self.root / "maintenance.json"

    def require(self) -> DataDir:
        """Raise CliError (exit 2) unless the directory and its job store exist."""
        if not self.root.is_dir():
            raise CliError(
                f"data directory {self.root} does not exist (pass --data DIR, set "
                f"${DATA_ENV}, or create one with `kalam-actors run --data DIR --create`)"
            )
        if not (self.jobs / "jobs.lmdb").is_dir():
            raise CliError(
                f"{self.root} holds no job store ({self.jobs} is missing); "
                f"start one with `kalam-actors run --data {self.root}`"
            )
        return self

    def runtime_pid(self) -> int | None:
        """The pid of the runtime that owns the store; -1 when one does but its pid cannot
        be read; None when none runs."""
        return _runtime_lock.runtime_pid(self.jobs)


def load_plugin(spec: str) -> Callable[..., Any]:
    """``module:callable`` → the callable."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise CliError(f"--plugin must look like module:callable, not {spec!r}")
    try:
        module = importlib.import_module(module_name)
        fn = getattr(module, attr)
    except (ImportError, AttributeError) as exc:
        raise CliError(f"cannot load plugin {spec}: {exc}") from exc
    if not callable(fn):
        raise CliError(f"plugin {spec} is not callable")
    result: Callable[..., Any] = fn
    return result


def runtime_executors(engine: Any, store: Any, plugins: Sequence[str] = ()) -> list[JobExecutor]:
    """The built-in executors on ``engine``, JobCleanup on ``store``, then each plugin's
    executors (``plugin(engine)`` returns executors that replace those of the same type)."""
    from .executors import builtin_executors
    from .executors.job_cleanup import JobCleanupExecutor

    by_type: dict[JobType, JobExecutor] = {e.job_type: e for e in builtin_executors(engine)}
    by_type[JobType.JOB_CLEANUP] = JobCleanupExecutor(store)
    for spec in plugins:
        plugin = load_plugin(spec)
        try:
            made = list(plugin(engine))
        except Exception as exc:
            raise CliError(f"plugin {spec} failed: {type(exc).__name__}: {exc}") from exc
        for executor in made:
            if not isinstance(executor, JobExecutor):
                raise CliError(f"plugin {spec} returned {executor!r}, not a JobExecutor")
            by_type[executor.job_type] = executor
    return list(by_type.values())
