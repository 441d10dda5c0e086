"""One runtime per job store: the lock protocol, written once for the runtime and the CLI.

The lock is an exclusive ``flock`` on the store's folder itself, not on a file inside it:
deleting a file cannot release it (a second runtime started after someone removed a lock file
would otherwise serve the same store). The holder's pid is written beside it, in
``<store>/runtime.lock``, only to name the holder in messages: that file is information, not
the lock, and a runtime whose pid file was deleted still holds the store.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Final

from .errors import StoreLocked

__all__ = ["PID_FILE", "RuntimeLock", "runtime_pid"]

PID_FILE: Final = "runtime.lock"


class RuntimeLock:
    """Held by the one runtime that serves the store at ``path`` (made if missing).

    Raises:
        StoreLocked: another runtime holds the store; it names the holder's pid when known.
    """

    def __init__(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            raise StoreLocked(str(path), _read_pid(path)) from None
        _write_pid(path)

    def release(self) -> None:
        with contextlib.suppress(OSError):
            (self.path / PID_FILE).unlink()
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)


def runtime_pid(path: Path) -> int | None:
    """The pid of the runtime serving the store at ``path``; -1 when one runs but its pid
    cannot be read; None when none runs (or there is no store)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(path)
            return -1 if pid is None else pid
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _write_pid(path: Path) -> None:
    # Written whole, then renamed into place: a reader never sees half a pid.
    tmp = path / f".{PID_FILE}.{os.getpid()}"
    tmp.write_text(f"{os.getpid()}\n")
    os.replace(tmp, path / PID_FILE)


def _read_pid(path: Path) -> int | None:
    try:
        text = (path / PID_FILE).read_text(errors="replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
