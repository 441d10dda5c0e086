"""One rule of LMDB that both the job store and the storage engine must keep."""

from __future__ import annotations

import threading
from collections.abc import Callable
from types import TracebackType

__all__ = ["TxnGate"]


class TxnGate:
    """Lets ``set_mapsize`` run only while no transaction of this process is open (LMDB's
    rule: resizing under an open transaction hangs or crashes the process), without a global
    lock on the common path. Every transaction is opened between :meth:`enter` and
    :meth:`leave` (or inside ``with gate.txn():``); a resize runs in :meth:`exclusive`, which
    waits for open transactions to end and holds new ones back.

    The common path is one uncontended lock taken twice: a read of one record costs a few
    microseconds, and the gate must not double that.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._active = 0
        self._resizing = False
        self._entered = _Entered(self)

    def enter(self) -> None:
        with self._lock:
            while self._resizing:
                self._cond.wait()
            self._active += 1

    def leave(self) -> None:
        with self._lock:
            self._active -= 1
            if self._active == 0 and self._resizing:
                self._cond.notify_all()

    def txn(self) -> _Entered:
        """``with gate.txn():`` around opening and using one transaction."""
        return self._entered

    def exclusive(self, action: Callable[[], None]) -> None:
        with self._lock:
            while self._resizing:
                self._cond.wait()
            self._resizing = True
            while self._active:
                self._cond.wait()
        try:
            action()
        finally:
            with self._lock:
                self._resizing = False
                self._cond.notify_all()


class _Entered:
    """The context manager :meth:`TxnGate.txn` returns; it holds no state of its own, so one
    instance serves every thread."""

    __slots__ = ("_gate",)

    def __init__(self, gate: TxnGate) -> None:
        self._gate = gate

    def __enter__(self) -> None:
        self._gate.enter()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._gate.leave()
