"""Exceptions raised by supervisors."""

from __future__ import annotations


class SupervisorError(Exception):
    """Base class of every error the ``supervisors`` package raises itself."""


class EscalationError(SupervisorError):
    """Raised out of ``Supervisor.open()`` when its children restart too often.

    More than ``Intensity.max_restarts`` restarts within ``Intensity.period_s``
    seconds mean restarting is not helping; the supervisor stops every child and
    hands the problem to whoever runs it (often a parent supervisor, which then
    sees an ordinary crash). ``__cause__`` is the last crash.

    Attributes:
        supervisor_name: The ``name`` the supervisor was opened with.
        child_id: The child whose crash breached the intensity.
        restarts: Restarts counted inside the window, including the refused one.
    """

    def __init__(self, supervisor_name: str, child_id: str | None, restarts: int) -> None:
        super().__init__(
            f"supervisor {supervisor_name!r} gave up after {restarts} restarts "
            f"(last crash in child {child_id!r})"
        )
        self.supervisor_name = supervisor_name
        self.child_id = child_id
        self.restarts = restarts


class TooManyChildrenError(SupervisorError):
    """Raised by ``start_child`` when ``max_children`` children are already running."""


class SupervisorClosedError(SupervisorError):
    """Raised when a child operation reaches a supervisor that is closing or closed."""
