"""Serving the app with hypercorn on trio: on its own (``kalam-actors web``) or as one more
task in a running runtime's nursery (``kalam-actors run --web PORT``)."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Coroutine
from functools import partial
from typing import cast

import trio
from hypercorn.config import Config
from hypercorn.trio import serve as hypercorn_serve
from hypercorn.typing import ASGIFramework

from ..manager import JobManager
from .app import create_app, resolve_store_path
from .auth import is_loopback
from .errors import WebConfigError

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "check_bind", "serve", "web_task"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765


def check_bind(host: str, token: str | None) -> None:
    """Refuse to serve beyond this machine without a token.

    Raises:
        WebConfigError: ``host`` is not a loopback address and no token is given (or the
            token is empty).
    """
    if token is not None and not token.strip():
        raise WebConfigError("the token must not be empty")
    if token is None and not is_loopback(host):
        raise WebConfigError(
            f"refusing to serve on {host} without a token: anyone who can reach it could "
            "read every job; pass --token T (actions then need it too), or bind 127.0.0.1"
        )


def _bind(host: str, port: int) -> str:
    host = host.strip("[]")
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def web_task(
    source: str | os.PathLike[str] | None,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    token: str | None = None,
    log_file: str | os.PathLike[str] | None = None,
    manager: JobManager | None = None,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the web until cancelled: a trio task, to start with ``nursery.start``.

    ``await nursery.start(partial(web_task, None, port=8765, manager=manager))`` returns the
    URL it listens on once the port is bound (``port=0`` picks a free one). Give ``manager``
    when the runtime runs in this trio run (``run --web``); otherwise ``source`` names a data
    directory or a job store folder. The other arguments are those of :func:`create_app`.

    Raises:
        WebConfigError: a non-loopback ``host`` without a token, no job store at ``source``.
        OSError: the port cannot be bound.
    """
    check_bind(host, token)
    app = create_app(source, token=token, log_file=log_file, manager=manager)
    config = Config()
    config.bind = [_bind(host, port)]
    config.accesslog = None
    config.graceful_timeout = 1.0
    try:
        async with trio.open_nursery() as nursery:
            # Starlette is an ASGI app; its signature is typed looser than hypercorn's.
            asgi = cast(ASGIFramework, app)
            binds: list[str] = await nursery.start(partial(hypercorn_serve, asgi, config,
                                                           mode="asgi"))
            task_status.started(binds[0] if binds else f"http://{_bind(host, port)}")
    finally:
        if manager is None:
            app.state.store.close()


def serve(
    source: str | os.PathLike[str],
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    token: str | None = None,
    log_file: str | os.PathLike[str] | None = None,
) -> None:
    """Serve the web on ``host:port`` until SIGINT or SIGTERM (blocking; runs trio).

    ``source`` is a data directory (``DIR/jobs``) or a job store folder; a runtime may run
    beside it in another process. See :func:`create_app` for ``token`` and ``log_file``.

    Raises:
        WebConfigError: a non-loopback ``host`` without a token, or no job store at
            ``source`` (both before anything is served).
        OSError: the port cannot be bound.
    """
    check_bind(host, token)
    resolve_store_path(source)
    trio.run(_serve_until_signal, partial(web_task, source, host=host, port=port, token=token,
                                          log_file=log_file))


async def _serve_until_signal(task: partial[Coroutine[object, object, None]]) -> None:
    async with trio.open_nursery() as nursery:
        await nursery.start(task)
        if threading.current_thread() is threading.main_thread():
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for _ in signals:
                    break
        else:
            await trio.sleep_forever()
        nursery.cancel_scope.cancel()
