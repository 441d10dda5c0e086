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
    "os_reason",
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


def os_reason(exc: OSError) -> str:
    """What an OSError says, without its errno number: ``"Read-only file system"``."""
    return exc.strerror or str(exc)


class DataDir:
    """The layout of a data directory: ``jobs`` (job store) and ``engine`` (storage engine)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser()
        self.jobs = self.root / "jobs"
        self.engine = self.root / "engine"
        self.policy_file = self.root / "maintenance.json"

    def require_dir(self) -> DataDir:
        """Raise CliError (exit 2) unless the data directory exists and is a directory."""
        if self.root.is_dir():
            return self
        if self.root.exists():
            raise CliError(f"{self.root} is a file, not a data directory (pass --data DIR "
                           f"naming a directory)")
        raise CliError(
            f"data directory {self.root} does not exist (pass --data DIR, set "
            f"${DATA_ENV}, or create one with `kalam-actors run --data DIR --create`)"
        )

    def require(self) -> DataDir:
        """Raise CliError (exit 2) unless the directory and its job store exist."""
        self.require_dir()
        self.check_folder(self.jobs, "the job store")
        if not (self.jobs / "jobs.lmdb").is_dir():
            raise CliError(
                f"{self.root} holds no job store ({self.jobs} is missing); "
                f"start one with `kalam-actors run --data {self.root}`"
            )
        return self

    def prepare(self, *, create: bool, command: str) -> DataDir:
        """Check a data directory the command is about to write (``run``, ``demo``): made
        when missing if ``create``; its ``jobs`` and ``engine`` are folders, if present; and
        it can be written.

        Raises:
            CliError: exit 2 for a path that is a file or a missing directory without
                ``create``; exit 1 when it cannot be made or written (a read-only file
                system, no permission).
        """
        if not self.root.is_dir():
            if self.root.exists():
                raise CliError(f"{self.root} is a file, not a data directory (pass --data DIR "
                               f"naming a directory)")
            if not create:
                raise CliError(f"data directory {self.root} does not exist (pass --create to "
                               f"make it)")
            try:
                self.root.mkdir(parents=True)
            except OSError as exc:
                raise CliError(f"cannot create data directory {self.root}: {os_reason(exc)}",
                               EXIT_FAILED) from exc
        self.check_folder(self.jobs, "the job store")
        self.check_folder(self.engine, "the storage engine")
        self.require_writable(command)
        return self

    def require_writable(self, command: str, *paths: Path,
                         what: str = "the job store and the engine") -> None:
        """Raise CliError (exit 1) when ``paths`` (default: the data directory, its job store
        and engine) cannot be written, naming why (a read-only file system, no permission)."""
        for path in paths or (self.root, self.jobs, self.engine):
            if path.is_dir() and not os.access(path, os.W_OK):
                raise CliError(
                    f"cannot write to {path} ({_access_reason(path)}): `{command}` writes "
                    f"{what}; `jobs list`, `jobs show` and `stats` still read it", EXIT_FAILED)

    @staticmethod
    def check_folder(path: Path, what: str) -> None:
        """Raise CliError (exit 2) when ``path`` exists and is not a folder."""
        if path.exists() and not path.is_dir():
            raise CliError(f"{path} is a file, not a folder: it should hold {what} (move the "
                           f"file away, or pick another data directory)")

    def runtime_pid(self) -> int | None:
        """The pid of the runtime that owns the store; -1 when one does but its pid cannot
        be read; None when none runs."""
        return _runtime_lock.runtime_pid(self.jobs)


def _access_reason(path: Path) -> str:
    """Why ``path`` cannot be written: ``os.access`` says only yes or no."""
    try:
        probe = os.statvfs(path)
    except OSError as exc:
        return os_reason(exc)
    if probe.f_flag & os.ST_RDONLY:
        return "read-only file system"
    return "permission denied"


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
