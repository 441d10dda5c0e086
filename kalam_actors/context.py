"""What a running job sees of the runtime: its identity, parameters, storage, cancellation,
logging with the ``[<job_id>]`` prefix, and progress reporting."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import orjson
from loguru import logger

from .ids import JobId, JobType
from .model import Job, Progress
from .store.values import check_progress

__all__ = ["CancelFlag", "JobContext"]


class CancelFlag:
    """A one-way flag, set from any thread, read by the job's thread: what JobContext needs
    of a threading.Event at a tenth of its cost (an Event builds a Condition and a lock)."""

    __slots__ = ("_set",)

    def __init__(self) -> None:
        self._set = False

    def set(self) -> None:
        self._set = True  # a single attribute store: atomic under the GIL

    def is_set(self) -> bool:
        return self._set


ProgressSink = Callable[[JobId, Progress], None]


class JobContext:
    """Handed to ``JobExecutor.execute`` and ``cancel`` for one attempt of one job.

    The runtime makes these; executors only read them and call their methods, from any thread.

    Attributes:
        job_id: the job's id.
        job_type: its type.
        attempt: 1 for the first run, 2 for the first retry, and so on.
        storage: whatever the runtime was opened with as ``storage``.
    """

    __slots__ = ("_cancel", "_log", "_params", "_params_text", "_progress", "attempt",
                 "job_id", "job_type", "storage")

    def __init__(
        self,
        job: Job,
        *,
        storage: Any,
        attempt: int,
        progress_sink: ProgressSink,
        cancel_event: threading.Event | CancelFlag | None = None,
    ) -> None:
        self._setup(job.job_id, job.job_type, job.parameters, attempt, storage, progress_sink,
                    cancel_event if cancel_event is not None else CancelFlag())

    @classmethod
    def _for_attempt(
        cls, job_id: JobId, job_type: JobType, params_text: str, attempt: int, storage: Any,
        progress_sink: ProgressSink, cancel_event: CancelFlag,
    ) -> JobContext:
        """The runtime's constructor: from a stored record's fields, without a Job (the actor
        builds that, off the runtime's loop)."""
        ctx = cls.__new__(cls)
        ctx._setup(job_id, job_type, params_text, attempt, storage, progress_sink, cancel_event)
        return ctx

    def _setup(
        self, job_id: JobId, job_type: JobType, params_text: str, attempt: int, storage: Any,
        progress_sink: ProgressSink, cancel_event: threading.Event | CancelFlag,
    ) -> None:
        self.job_id = job_id
        self.job_type = job_type
        self.attempt = attempt
        self.storage = storage
        self._params_text = params_text
        self._params: dict[str, Any] | None = None  # decoded on first use, in the job's thread
        self._progress = progress_sink
        self._cancel = cancel_event
        self._log: Any = None  # bound on first use: most attempts never log

    @property
    def params(self) -> dict[str, Any]:
        """The job's parameters: a dict of its own (changing it changes nothing stored)."""
        params = self._params
        if params is None:
            params = self._params = orjson.loads(self._params_text)
        return params

    def _logger(self) -> Any:
        # Logged as kalam_actors.context, not as the calling executor's module: job lines
        # follow the library's switch (quiet until logger.enable("kalam_actors")), whoever
        # wrote the executor.
        if self._log is None:
            self._log = logger.bind(job_id=self.job_id)
        return self._log

    @property
    def cancelled(self) -> bool:
        """True once a cancel of this job was accepted: stop at the next safe point."""
        return self._cancel.is_set()

    def log_debug(self, msg: str) -> None:
        """Log ``msg`` at DEBUG as a line about this job: ``[<job_id>] msg``."""
        self._logger().debug(f"[{self.job_id}] {msg}")

    def log_info(self, msg: str) -> None:
        """Log ``msg`` at INFO as a line about this job: ``[<job_id>] msg``."""
        self._logger().info(f"[{self.job_id}] {msg}")

    def log_warn(self, msg: str) -> None:
        """Log ``msg`` at WARNING as a line about this job: ``[<job_id>] msg``."""
        self._logger().warning(f"[{self.job_id}] {msg}")

    def log_error(self, msg: str) -> None:
        """Log ``msg`` at ERROR as a line about this job: ``[<job_id>] msg``."""
        self._logger().error(f"[{self.job_id}] {msg}")

    def report_progress(self, done: int, total: int | None = None, note: str | None = None) -> None:
        """Record how far the job has come; it is persisted and shown as ``Job.progress``.

        Raises:
            InvalidParams: ``done`` or ``total`` is not a whole number from 0 to 2**63-1, or
                ``note`` is not text (a long note is cut; a lone surrogate kept as its escape).
        """
        self._progress(self.job_id, check_progress(done, total, note))

    def __repr__(self) -> str:
        return f"<JobContext {self.job_id} attempt={self.attempt}>"
