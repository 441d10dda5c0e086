"""Erlang/OTP-style supervisors for trio tasks and pykka actors.

Open a ``Supervisor`` with ``Supervisor.open()``, give it children described by
``ChildSpec`` (a trio task, or a pykka actor via ``actor_child``), and it keeps
them running according to its strategy, restart types, intensity and backoff.
"""

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
