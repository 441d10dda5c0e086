"""See and steer a job store from a browser, and scrape it with Prometheus.

Server-rendered pages (overview, jobs, a job) that read without JavaScript, actions (cancel,
retry, delete) behind the operator's token, ``/metrics`` and ``/healthz``; a starlette app
served by hypercorn on trio. It reads through :class:`~kalam_actors.JobStore`, so it runs
beside a runtime in another process (``kalam-actors web``) or inside the runtime's own trio
run (``kalam-actors run --web PORT``).

Optional: it needs the ``web`` extra (``pip install 'kalam-actors[web]'``); importing
``kalam_actors`` never imports it.
"""

try:
    import hypercorn  # noqa: F401
    import jinja2  # noqa: F401
    import prometheus_client  # noqa: F401
    import starlette  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on what is installed
    raise ImportError(
        f"kalam_actors.web needs the web extra ({exc.name} is missing): "
        "pip install 'kalam-actors[web]'"
    ) from exc

from .app import create_app as create_app
from .errors import WebConfigError as WebConfigError
from .server import DEFAULT_HOST as DEFAULT_HOST
from .server import DEFAULT_PORT as DEFAULT_PORT
from .server import check_bind as check_bind
from .server import serve as serve
from .server import web_task as web_task

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "WebConfigError",
    "check_bind",
    "create_app",
    "serve",
    "web_task",
]
