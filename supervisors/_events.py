"""What a supervisor reports about its children."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class EventKind(enum.Enum):
    """What happened to a child (or to the supervisor, for ``ESCALATED``)."""

    STARTED = "started"
    """``start_child`` started the child."""
    EXITED = "exited"
    """The child returned (a task) or stopped normally (an actor)."""
    CRASHED = "crashed"
    """The child raised, or ``restart_child`` forced it down; ``reason`` says why."""
    RESTARTED = "restarted"
    """The supervisor started the child again; ``reason`` is what caused it."""
    START_FAILED = "start_failed"
    """The child raised before it counted as started."""
    ABANDONED = "abandoned"
    """The child did not stop within its ``shutdown_s``; the supervisor moved on."""
    ESCALATED = "escalated"
    """Restart intensity was exceeded; ``reason`` is the ``EscalationError``."""
    TERMINATED = "terminated"
    """The supervisor stopped the child (shutdown, ``terminate_child``, or a sibling's restart)."""


@dataclass(frozen=True)
class SupervisorEvent:
    """One thing that happened to a child.

    Attributes:
        child_id: The child concerned; ``None`` only for supervisor-wide events.
        kind: What happened.
        reason: The exception behind it, a short explanation, or ``None``.
        time: ``trio.current_time()`` when it happened.
    """

    child_id: str | None
    kind: EventKind
    reason: BaseException | str | None
    time: float
