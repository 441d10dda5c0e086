"""Run a pykka ``ThreadingActor`` as a supervised child without blocking trio.

The actor thread never waits for trio and trio never waits for the thread: the
actor's lifecycle hooks post notifications into the trio loop with
``TrioToken.run_sync_soon`` (which only queues a callback), and the trio side
waits on ``trio.Event``s. ``future.get()`` is never called on the trio thread.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
from types import TracebackType
from typing import Any

import pykka
import trio

_current_lifecycle: contextvars.ContextVar[_Lifecycle | None] = contextvars.ContextVar(
    "supervisors_actor_lifecycle", default=None
)


class _Lifecycle:
    """What one actor incarnation has told trio so far. Mutated only in the trio thread."""

    def __init__(self, token: trio.lowlevel.TrioToken) -> None:
        self._token = token
        self.up = trio.Event()  # set when on_start finished, successfully or not
        self.down = trio.Event()  # set when the actor stopped, normally or not
        self.start_error: BaseException | None = None
        self.crash: BaseException | None = None

    # --- called from the actor thread -------------------------------------------------
    def post_started(self, error: BaseException | None) -> None:
        self._post(self._started, error)

    def post_stopped(self, error: BaseException | None) -> None:
        self._post(self._stopped, error)

    def _post(self, fn: Any, error: BaseException | None) -> None:
        # RunFinishedError: nobody listens any more (an abandoned actor outlived trio.run).
        with contextlib.suppress(trio.RunFinishedError):
            self._token.run_sync_soon(fn, error)

    # --- run in the trio thread ---------------------------------------------------------
    def _started(self, error: BaseException | None) -> None:
        self.start_error = error
        self.up.set()

    def _stopped(self, error: BaseException | None) -> None:
        self.crash = error
        self.up.set()  # a stop before on_start reported still ends the wait for it
        self.down.set()


@functools.cache
def _supervised_class(actor_class: type[pykka.ThreadingActor]) -> type[pykka.ThreadingActor]:
    """Return a subclass of ``actor_class`` that reports its lifecycle to trio.

    Built once per class (cached) so that every incarnation shares it. Each hook
    calls the user's hook first, then reports, so user hooks behave as before.
    """

    class Supervised(actor_class):  # type: ignore[valid-type,misc]
        # An actor stuck inside a message cannot be stopped; when the supervisor
        # abandons it, a daemon thread at least cannot keep the process alive.
        use_daemon_thread = True

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            # __init__ runs in the thread calling start(), i.e. the trio thread,
            # where ActorStart has just set the context variable.
            lifecycle = _current_lifecycle.get()
            if lifecycle is None:
                raise RuntimeError("supervised actors are started by actor_child() only")
            self.__lifecycle = lifecycle
            super().__init__(*args, **kwargs)

        def on_start(self) -> None:
            try:
                super().on_start()
            except Exception as exc:
                # pykka logs it and stops the actor without calling on_failure/on_stop.
                self.__lifecycle.post_started(exc)
                raise
            self.__lifecycle.post_started(None)

        def on_stop(self) -> None:
            try:
                super().on_stop()
            except Exception as exc:
                self.__lifecycle.post_stopped(exc)
                raise
            self.__lifecycle.post_stopped(None)

        def on_failure(
            self,
            exception_type: type[BaseException] | None,
            exception_value: BaseException | None,
            traceback: TracebackType | None,
        ) -> None:
            # pykka calls this after an exception escaped a told message and has
            # already decided to stop the actor: that is a crash.
            try:
                super().on_failure(exception_type, exception_value, traceback)
            finally:
                crash = exception_value or RuntimeError(f"{actor_class.__name__} failed")
                self.__lifecycle.post_stopped(crash)

    Supervised.__name__ = actor_class.__name__
    Supervised.__qualname__ = actor_class.__qualname__
    return Supervised


class ActorRun:
    """One running incarnation of an actor child: what ``task_status.started`` hands over."""

    def __init__(self, ref: pykka.ActorRef[Any]) -> None:
        self.ref = ref

    def request_stop(self) -> None:
        """Ask the actor to stop after its current message; never blocks."""
        self.ref.stop(block=False)


class ActorStart:
    """The start function ``actor_child`` returns; see there."""

    def __init__(
        self, actor_class: type[pykka.ThreadingActor], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        if not (isinstance(actor_class, type) and issubclass(actor_class, pykka.ThreadingActor)):
            raise TypeError(
                f"actor_child needs a pykka.ThreadingActor subclass, got {actor_class!r}"
            )
        self.actor_class = actor_class
        self._args = args
        self._kwargs = kwargs

    def __repr__(self) -> str:
        return f"actor_child({self.actor_class.__qualname__})"

    async def __call__(
        self,
        *stray_args: object,
        task_status: trio.TaskStatus[ActorRun] = trio.TASK_STATUS_IGNORED,
        **stray_kwargs: object,
    ) -> None:
        if stray_args or stray_kwargs:
            # A likely mistake worth a clear message: the actor's arguments were
            # already bound by actor_child(); ChildSpec.args/kwargs would be lost.
            raise TypeError(
                f"pass {self.actor_class.__qualname__}'s arguments to actor_child(), "
                "and leave ChildSpec.args and ChildSpec.kwargs empty"
            )
        lifecycle = _Lifecycle(trio.lowlevel.current_trio_token())
        reset = _current_lifecycle.set(lifecycle)
        try:
            ref = _supervised_class(self.actor_class).start(*self._args, **self._kwargs)
        finally:
            _current_lifecycle.reset(reset)
        try:
            await lifecycle.up.wait()
            if lifecycle.start_error is not None:
                raise lifecycle.start_error
            task_status.started(ActorRun(ref))
            await lifecycle.down.wait()
        finally:
            # Cancelled (shutdown, abandonment) or failed: never leave the thread running.
            if not lifecycle.down.is_set():
                ref.stop(block=False)
        if lifecycle.crash is not None:
            raise lifecycle.crash


def actor_child(actor_class: type[pykka.ThreadingActor], *args: Any, **kwargs: Any) -> ActorStart:
    """Turn a pykka ``ThreadingActor`` class into a child start function.

    Each (re)start runs ``actor_class.start(*args, **kwargs)`` in a fresh thread.
    The child counts as started once the actor's ``on_start`` returned; if it
    raises, the child failed to start. An exception escaping a told message
    (pykka then calls ``on_failure`` and stops the actor) is a crash; the actor
    stopping any other way is a normal exit. Stopping the child sends
    ``stop(block=False)``. The handle's ``actor_ref`` is the current ref.

    Args:
        actor_class: The actor to run. Its hooks keep working: the supervised
            subclass calls them before reporting.
        *args: Passed to the actor's constructor on every start.
        **kwargs: Passed to the actor's constructor on every start.

    Returns:
        A start function for ``ChildSpec(start=...)`` (use ``args=()``).

    Raises:
        TypeError: If ``actor_class`` is not a ``ThreadingActor`` subclass.
    """
    return ActorStart(actor_class, args, kwargs)
