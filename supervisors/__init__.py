"""Erlang/OTP-style supervisors for trio tasks and pykka actors.

Open a ``Supervisor`` with ``Supervisor.open()``, give it children described by
``ChildSpec`` (a trio task, or a pykka actor via ``actor_child``), and it keeps
them running according to its strategy, restart types, intensity and backoff::

    async def worker(name, *, task_status=trio.TASK_STATUS_IGNORED):
        task_status.started()  # the child counts as started from here
        ...                    # returning = normal exit; raising = crash

    async with Supervisor.open(strategy=ONE_FOR_ONE) as sup:
        await sup.start_child(ChildSpec(id="w1", start=worker, args=("w1",)))
        await sup.start_child(ChildSpec(id="a1", start=actor_child(MyActor)))
        sup.child("a1").actor_ref  # the current ActorRef; a new one after a restart

Leaving the block stops the children in reverse start order. Too many restarts
raise ``EscalationError`` out of the block, so a supervisor can itself be the
child of another supervisor. The package imports nothing from ``kalam_actors``.

Its events are logged through loguru, off on import (a library is quiet): turn them on with
``logger.enable("supervisors")``.
"""

from loguru import logger as _logger

from ._actor import actor_child as actor_child
from ._child import ChildHandle as ChildHandle
from ._child import ChildSpec as ChildSpec
from ._config import ONE_FOR_ALL as ONE_FOR_ALL
from ._config import ONE_FOR_ONE as ONE_FOR_ONE
from ._config import PERMANENT as PERMANENT
from ._config import REST_FOR_ONE as REST_FOR_ONE
from ._config import TEMPORARY as TEMPORARY
from ._config import TRANSIENT as TRANSIENT
from ._config import Backoff as Backoff
from ._config import Intensity as Intensity
from ._config import RestartType as RestartType
from ._config import Strategy as Strategy
from ._errors import EscalationError as EscalationError
from ._errors import SupervisorClosedError as SupervisorClosedError
from ._errors import SupervisorError as SupervisorError
from ._errors import TooManyChildrenError as TooManyChildrenError
from ._events import EventKind as EventKind
from ._events import SupervisorEvent as SupervisorEvent
from ._supervisor import Supervisor as Supervisor

__all__ = [
    "ONE_FOR_ALL",
    "ONE_FOR_ONE",
    "PERMANENT",
    "REST_FOR_ONE",
    "TEMPORARY",
    "TRANSIENT",
    "Backoff",
    "ChildHandle",
    "ChildSpec",
    "EscalationError",
    "EventKind",
    "Intensity",
    "RestartType",
    "Strategy",
    "Supervisor",
    "SupervisorClosedError",
    "SupervisorError",
    "SupervisorEvent",
    "TooManyChildrenError",
    "actor_child",
]

_logger.disable("supervisors")
