"""Child specifications and the handles a supervisor gives out."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pykka
import trio

from ._actor import ActorRun
from ._config import PERMANENT, RestartType
from ._util import NoPublicConstructor


@dataclass(frozen=True)
class ChildSpec:
    """How to start one child and what to do when it stops.

    Attributes:
        id: Unique among the supervisor's running children.
        start: ``async def start(*args, task_status, **kwargs)``; the child counts
            as started when it calls ``task_status.started()``. Returning is a
            normal exit, raising an ``Exception`` is a crash.
        args: Positional arguments for ``start``, on every (re)start.
        kwargs: Keyword arguments for ``start``, on every (re)start.
        restart: When to restart the child after it stops.
        shutdown_s: How long the child may take to stop before it is abandoned.
    """

    id: str
    start: Callable[..., Awaitable[object]]
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    restart: RestartType = PERMANENT
    shutdown_s: float = 5.0

    def __post_init__(self) -> None:
        if not self.id:
            raise ValueError("a child needs a non-empty id")
        if self.shutdown_s < 0:
            raise ValueError(f"shutdown_s must be >= 0, got {self.shutdown_s}")


class _Incarnation:
    """One run of a child, from start to stop. A restart makes a new one.

    The child's code runs in a host task outside the supervisor's nursery (see
    ``Supervisor._host``) so that it can really be abandoned; a runner task in the
    nursery mirrors it. This record is what the two share.
    """

    def __init__(self) -> None:
        self.scope = trio.CancelScope()  # around the child's code; cancelled to stop it
        self.runner_scope = trio.CancelScope()  # around the runner's wait; cancelled to abandon
        self.up_or_done = trio.Event()  # the child called started(), or ended first
        self.done = trio.Event()  # the child's code has ended
        self.error: BaseException | None = None  # what it raised, if anything
        self.value: object = None  # what the child passed to task_status.started()
        self.started = False
        self.stopping = False  # the supervisor stopped it: its end is not news
        self.abandoned = False


class _StatusProxy:
    """The ``task_status`` a child gets: records ``started()`` for the runner."""

    def __init__(self, incarnation: _Incarnation) -> None:
        self._incarnation = incarnation

    def started(self, value: object = None) -> None:
        inc = self._incarnation
        if inc.started:
            raise RuntimeError("called 'started' twice on the same task status")
        inc.value = value
        inc.started = True
        inc.up_or_done.set()


class ChildHandle(metaclass=NoPublicConstructor):
    """A supervisor's view of one child; created by ``Supervisor.start_child``.

    The handle outlives restarts: it always describes the current incarnation.
    """

    def __init__(self, spec: ChildSpec) -> None:
        self._spec = spec
        self._incarnation: _Incarnation | None = None
        self._restart_count = 0
        self._started_at = 0.0
        self._backoff_attempt = 0
        self._finished = False  # stopped and will not be restarted

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<ChildHandle {self.id!r} {state} restarts={self._restart_count}>"

    @property
    def id(self) -> str:
        """The child's id, from its spec."""
        return self._spec.id

    @property
    def spec(self) -> ChildSpec:
        """The spec the child was started with."""
        return self._spec

    @property
    def running(self) -> bool:
        """Whether the current incarnation has started and not yet stopped."""
        inc = self._incarnation
        return inc is not None and inc.started and not inc.done.is_set()

    @property
    def restart_count(self) -> int:
        """How many times the supervisor restarted this child."""
        return self._restart_count

    @property
    def actor_ref(self) -> pykka.ActorRef[Any] | None:
        """The current ``ActorRef`` of an actor child; ``None`` for tasks or while down."""
        inc = self._incarnation
        if self.running and inc is not None and isinstance(inc.value, ActorRun):
            return inc.value.ref
        return None
