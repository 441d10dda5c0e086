"""One rule of LMDB that both the job store and the storage engine must keep."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator

__all__ = ["TxnGate"]


class TxnGate:
    """Lets ``set_mapsize`` run only while no transaction of this process is open (LMDB's
    rule: resizing under an open transaction hangs or crashes the process), without a global
    lock on the common path. Every transaction is opened inside :meth:`txn`; a resize runs in
    :meth:`exclusive`, which waits for open transactions to end and holds new ones back."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._active = 0
        self._resizing = False

    @contextlib.contextmanager
    def txn(self) -> Iterator[None]:
        with self._cond:
            while self._resizing:
                self._cond.wait()
            self._active += 1
        try:
            yield
        finally:
            with self._cond:
                self._active -= 1
                if self._active == 0:
                    self._cond.notify_all()

    def exclusive(self, action: Callable[[], None]) -> None:
        with self._cond:
            while self._resizing:
                self._cond.wait()
            self._resizing = True
            while self._active:
                self._cond.wait()
        try:
            action()
        finally:
            with self._cond:
                self._resizing = False
                self._cond.notify_all()
