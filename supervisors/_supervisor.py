"""The supervisor: a nursery that restarts its children by strategy."""

from __future__ import annotations

import collections
import contextvars
import math
import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import trio
from loguru import logger

from ._actor import ActorRun
from ._child import ChildHandle, ChildSpec, _Incarnation, _StatusProxy
from ._config import (
    ONE_FOR_ALL,
    ONE_FOR_ONE,
    PERMANENT,
    TEMPORARY,
    TRANSIENT,
    Backoff,
    Intensity,
    RestartType,
    Strategy,
)
from ._errors import EscalationError, SupervisorClosedError, TooManyChildrenError
from ._events import EventKind, SupervisorEvent
from ._util import NoPublicConstructor

EventCallback = Callable[[SupervisorEvent], None]
Reason = BaseException | str | None

_LOG_LEVELS = {
    EventKind.CRASHED: "WARNING",
    EventKind.START_FAILED: "WARNING",
    EventKind.ABANDONED: "WARNING",
    EventKind.ESCALATED: "ERROR",
    EventKind.RESTARTED: "INFO",
}


@dataclass
class _Note:
    """A child went down by itself, or ``restart_child`` asks to treat it as crashed."""

    child: ChildHandle
    incarnation: _Incarnation
    reason: Reason
    crashed: bool
    forced: bool = False
    abandon_old: bool = False
    handled: trio.Event | None = None


@dataclass
class _Plan:
    """Children stopped for a restart, to be started again after ``delay``."""

    group: list[ChildHandle]
    delay: float
    reason: Reason


class Supervisor(metaclass=NoPublicConstructor):
    """Keeps children (trio tasks or pykka actors) running; open with ``Supervisor.open``.

    Each child's code runs in a trio system task mirrored by a runner task in the
    supervisor's nursery, so that a child ignoring cancellation past its
    ``shutdown_s`` can really be abandoned (a nursery always waits for its tasks).

    All changes to the set of children happen under one lock: the user's
    ``start_child``/``terminate_child`` and the internal manager task that reacts
    to children going down. That keeps "stop these, start those" sequences
    atomic without reasoning about interleavings.
    """

    def __init__(
        self,
        *,
        strategy: Strategy,
        intensity: Intensity,
        backoff: Backoff | None,
        on_event: EventCallback | None,
        max_children: int | None,
        name: str,
        rng: random.Random | None,
    ) -> None:
        if max_children is not None and max_children < 1:
            raise ValueError(f"max_children must be >= 1 or None, got {max_children}")
        self.name = name
        self.strategy = strategy
        self.intensity = intensity
        self.backoff = backoff
        self._on_event = on_event
        self._max_children = max_children
        self._rng = rng if rng is not None else random.Random()
        self._children: dict[str, ChildHandle] = {}  # insertion order is start order
        self._events: list[SupervisorEvent] = []
        self._restart_times: collections.deque[float] = collections.deque()
        self._lock = trio.Lock()
        self._notes_tx, self._notes_rx = trio.open_memory_channel[_Note](math.inf)
        self._op_scope = trio.CancelScope()
        self._closing = False
        self._nursery: trio.Nursery | None = None

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        *,
        strategy: Strategy = ONE_FOR_ONE,
        intensity: Intensity = Intensity(max_restarts=3, period_s=5.0),  # noqa: B008 - frozen
        backoff: Backoff | None = None,
        on_event: EventCallback | None = None,
        max_children: int | None = None,
        name: str = "supervisor",
        rng: random.Random | None = None,
    ) -> AsyncIterator[Supervisor]:
        """Open a supervisor; leaving the block stops its children in reverse start order.

        Args:
            strategy: Which children to restart when one crashes.
            intensity: Restart budget; exceeding it raises ``EscalationError``.
            backoff: Delay before restarts; ``None`` restarts at once.
            on_event: Called synchronously in the trio thread with every event.
                An exception it raises is logged and ignored, so an observer
                cannot break supervision.
            max_children: Most children that may be live at once; ``None`` for no limit.
            name: Shown in logs and in ``EscalationError``.
            rng: Source of backoff jitter (inject one for reproducible delays).

        Yields:
            The running supervisor.

        Raises:
            EscalationError: When the restart intensity was exceeded: the
                supervisor emits ESCALATED, stops every child in reverse start
                order, then raises (never wrapped in an ExceptionGroup).
            BaseException: An exception raised by the block's body, unwrapped
                when it is the only error.
        """
        sup = cls._create(
            strategy=strategy,
            intensity=intensity,
            backoff=backoff,
            on_event=on_event,
            max_children=max_children,
            name=name,
            rng=rng,
        )
        sole: BaseException | None = None
        try:
            async with trio.open_nursery() as nursery:
                sup._nursery = nursery
                nursery.start_soon(sup._manage, name=f"{name}-manager")
                try:
                    yield sup
                finally:
                    await sup._shutdown()
                    nursery.cancel_scope.cancel()  # ends the manager task
        except BaseExceptionGroup as group:
            # Callers expect EscalationError (or their own error), not the
            # ExceptionGroup a trio nursery wraps everything in.
            sole = _sole_error(group)
            if sole is None:
                raise
        if sole is not None:
            raise sole

    # --- public API ----------------------------------------------------------------------

    @property
    def events(self) -> list[SupervisorEvent]:
        """Every event so far, oldest first (a copy)."""
        return list(self._events)

    def children(self) -> list[ChildHandle]:
        """Return the handles of all known children, in start order."""
        return list(self._children.values())

    def child(self, child_id: str) -> ChildHandle:
        """Return the handle of one child.

        Raises:
            KeyError: If no child has that id.
        """
        try:
            return self._children[child_id]
        except KeyError:
            raise KeyError(f"supervisor {self.name!r} has no child {child_id!r}") from None

    def restart_count(self, child_id: str) -> int:
        """Return how often the child was restarted.

        Raises:
            KeyError: If no child has that id.
        """
        return self.child(child_id).restart_count

    async def start_child(self, spec: ChildSpec) -> ChildHandle:
        """Start a child and return once it counts as started.

        A child with the same id that has stopped for good is replaced.

        Args:
            spec: What to start.

        Returns:
            The child's handle, valid across restarts.

        Raises:
            ValueError: If a live child already has ``spec.id``.
            TooManyChildrenError: If ``max_children`` children are live.
            SupervisorClosedError: If the supervisor is closing.
            Exception: Whatever the child raised before it counted as started.
        """
        async with self._lock:
            await self._ensure_open()
            old = self._children.get(spec.id)
            if old is not None and _is_live(old):
                raise ValueError(f"supervisor {self.name!r} already has a child {spec.id!r}")
            live = sum(_is_live(c) for c in self._children.values())
            if self._max_children is not None and live >= self._max_children:
                raise TooManyChildrenError(
                    f"supervisor {self.name!r} already runs max_children={self._max_children}"
                )
            child = ChildHandle._create(spec)
            self._children.pop(spec.id, None)  # re-insert at the end: start order
            self._children[spec.id] = child
            try:
                await self._start(child)
            except Exception as exc:
                del self._children[spec.id]
                self._emit(spec.id, EventKind.START_FAILED, exc)
                raise
            except BaseException:
                del self._children[spec.id]
                raise
            self._emit(spec.id, EventKind.STARTED, None)
            return child

    async def terminate_child(self, child_id: str) -> None:
        """Stop a child (waiting up to its ``shutdown_s``) and forget it.

        Raises:
            KeyError: If no child has that id.
        """
        async with self._lock:
            child = self.child(child_id)
            await self._stop(child, child.spec.shutdown_s, EventKind.TERMINATED, "terminate_child")
            del self._children[child_id]

    async def restart_child(
        self,
        child_id: str,
        reason: BaseException | str = "restart requested",
        *,
        abandon_old: bool = False,
    ) -> None:
        """Restart a running child as if it had crashed with ``reason``.

        It emits CRASHED then RESTARTED, applies the strategy, and counts toward
        the intensity (so it may escalate). The child is restarted whatever its
        restart type: the caller asked for it.

        Args:
            child_id: The child to restart.
            reason: Recorded as the crash reason.
            abandon_old: Do not wait for the old incarnation to stop: ask it to
                stop, abandon it and start a fresh one. Meant for an actor stuck
                inside a message, which no stop request can reach.

        Raises:
            KeyError: If no child has that id.
            RuntimeError: If the child is not running.
            SupervisorClosedError: If the supervisor is closing or escalated.
        """
        self._check_open()
        child = self.child(child_id)
        inc = child._incarnation
        if inc is None or not child.running:
            raise RuntimeError(f"child {child_id!r} of {self.name!r} is not running")
        handled = trio.Event()
        note = _Note(
            child, inc, reason, crashed=True, forced=True, abandon_old=abandon_old, handled=handled
        )
        self._notes_tx.send_nowait(note)
        await handled.wait()
        await self._ensure_open()

    # --- running children -----------------------------------------------------------------

    async def _start(self, child: ChildHandle) -> None:
        assert self._nursery is not None
        inc = _Incarnation()
        child._incarnation = inc
        child._started_at = trio.current_time()
        try:
            await self._nursery.start(self._run, child, inc)
        except BaseException:
            child._incarnation = None
            raise

    async def _run(
        self,
        child: ChildHandle,
        inc: _Incarnation,
        *,
        task_status: trio.TaskStatus[object] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Mirror one incarnation inside the nursery; report its end unless we stopped it.

        The child's code runs in a system task (``_host``): a task in this nursery
        could never be abandoned, since a nursery always waits for its tasks. Being
        outside the nursery also means only the supervisor stops a started child,
        so an outer cancellation still goes through the ordered shutdown.
        """
        trio.lowlevel.spawn_system_task(
            self._host,
            child.spec,
            inc,
            name=f"{self.name}/{child.id}",
            context=contextvars.copy_context(),
        )
        try:
            await inc.up_or_done.wait()
        except BaseException:
            # Whoever awaited start_child() gave up before the child started.
            inc.stopping = True
            inc.scope.cancel()
            with trio.CancelScope(shield=True), trio.move_on_after(child.spec.shutdown_s):
                await inc.done.wait()
            raise
        if not inc.started:
            if inc.error is not None:
                raise inc.error  # reaches nursery.start(): a failure to start
            raise RuntimeError(f"child {child.id!r} returned without calling task_status.started()")
        task_status.started(inc.value)
        with inc.runner_scope:
            await inc.done.wait()
        if inc.stopping or not inc.done.is_set():
            return
        error = inc.error
        if error is not None and not isinstance(error, Exception):
            if isinstance(error, trio.Cancelled):
                return  # trio.run is ending: not a crash, and nobody left to tell
            raise error  # KeyboardInterrupt, SystemExit: never a crash to restart
        self._notes_tx.send_nowait(_Note(child, inc, error, crashed=error is not None))

    @trio.lowlevel.disable_ki_protection
    async def _host(self, spec: ChildSpec, inc: _Incarnation) -> None:
        """Run the child's code. A system task must not raise: errors go to ``inc``."""
        try:
            with inc.scope:
                await spec.start(*spec.args, task_status=_StatusProxy(inc), **spec.kwargs)
        except BaseException as exc:
            inc.error = exc
        finally:
            inc.done.set()
            inc.up_or_done.set()
        if (
            inc.error is not None
            and isinstance(inc.error, Exception)
            and (inc.stopping or inc.abandoned)
        ):
            # Stopped on purpose, so not restarted; still worth seeing.
            logger.opt(exception=inc.error).warning(
                "supervisor {!r}: child {!r} failed while stopping", self.name, spec.id
            )

    async def _stop(
        self, child: ChildHandle, grace: float, kind: EventKind | None, reason: Reason
    ) -> None:
        """Stop the child's incarnation, waiting up to ``grace`` before abandoning it."""
        inc = child._incarnation
        child._incarnation = None
        if inc is None or inc.done.is_set():
            return
        inc.stopping = True
        if isinstance(inc.value, ActorRun):
            inc.value.request_stop()  # lets the actor finish its current message and on_stop
        else:
            inc.scope.cancel()
        # Shielded: a shutdown triggered by cancellation must still give children their grace.
        with trio.CancelScope(shield=True), trio.move_on_after(grace):
            await inc.done.wait()
        if inc.done.is_set():
            if kind is not None:
                self._emit(child.id, kind, reason)
            return
        inc.abandoned = True
        inc.scope.cancel()  # an actor's trio side exits now; its thread is left behind
        inc.runner_scope.cancel()
        self._emit(child.id, EventKind.ABANDONED, f"did not stop within {grace}s")

    async def _stop_all(self, reason: str) -> None:
        for child in reversed(list(self._children.values())):
            await self._stop(child, child.spec.shutdown_s, EventKind.TERMINATED, reason)

    async def _shutdown(self) -> None:
        self._closing = True
        self._op_scope.cancel()  # interrupts a backoff sleep or a restart in progress
        with trio.CancelScope(shield=True):
            async with self._lock:
                await self._stop_all("supervisor shutting down")

    # --- reacting to children going down --------------------------------------------------

    async def _manage(self) -> None:
        try:
            async for note in self._notes_rx:
                try:
                    if not self._closing:
                        with trio.CancelScope() as self._op_scope:
                            await self._handle(note)
                finally:
                    if note.handled is not None:
                        note.handled.set()
        finally:
            # Wake restart_child callers whose request will never be handled now.
            while True:
                try:
                    note = self._notes_rx.receive_nowait()
                except trio.WouldBlock:
                    break
                if note.handled is not None:
                    note.handled.set()

    async def _handle(self, note: _Note) -> None:
        async with self._lock:
            plan = await self._went_down(note)
        while plan is not None:
            if plan.delay > 0:
                await trio.sleep(plan.delay)  # without the lock: others may start/terminate
            async with self._lock:
                if self._closing:
                    return
                plan = await self._bring_up(plan)

    async def _went_down(self, note: _Note) -> _Plan | None:
        child = note.child
        if self._children.get(child.id) is not child or child._incarnation is not note.incarnation:
            return None  # stale: already stopped, restarted or replaced
        if note.crashed:
            self._emit(child.id, EventKind.CRASHED, note.reason)
        else:
            self._emit(child.id, EventKind.EXITED, None)
        if not note.forced and not _should_restart(child.spec.restart, note.crashed):
            child._incarnation = None
            child._finished = True
            return None
        return await self._plan_restart(child, note.reason, abandon_old=note.abandon_old)

    async def _plan_restart(
        self,
        child: ChildHandle,
        reason: Reason,
        *,
        abandon_old: bool = False,
        pending: list[ChildHandle] | None = None,
    ) -> _Plan:
        """Check intensity, stop the child's restart group, and say what to start when."""
        members = set(self._group(child)) | set(pending or ())
        group = [c for c in self._children.values() if c in members]
        await self._count_restart(child, reason)
        cause = f"restarting after {child.id!r} went down ({self.strategy.value})"
        for member in reversed(group):
            if member is child:
                grace = 0.0 if abandon_old else member.spec.shutdown_s
                await self._stop(member, grace, None, None)
            else:
                await self._stop(member, member.spec.shutdown_s, EventKind.TERMINATED, cause)
        # A TEMPORARY sibling is stopped with the group but never started again (as in OTP).
        restartable = [c for c in group if c is child or c.spec.restart is not TEMPORARY]
        for member in group:
            if member not in restartable:
                member._finished = True
        return _Plan(restartable, self._backoff_delay(child), reason)

    async def _bring_up(self, plan: _Plan) -> _Plan | None:
        for index, member in enumerate(plan.group):
            if self._children.get(member.id) is not member or member.running:
                continue  # terminated or replaced during the backoff delay
            try:
                await self._start(member)
            except Exception as exc:
                # A failed restart is one more crash: it counts toward intensity.
                self._emit(member.id, EventKind.START_FAILED, exc)
                return await self._plan_restart(member, exc, pending=plan.group[index + 1 :])
            member._restart_count += 1
            self._emit(member.id, EventKind.RESTARTED, plan.reason)
        return None

    def _group(self, child: ChildHandle) -> list[ChildHandle]:
        """The children a crash of ``child`` restarts, in start order."""
        if self.strategy is ONE_FOR_ONE:
            return [child]
        order = list(self._children.values())
        if self.strategy is ONE_FOR_ALL:
            return [c for c in order if c is child or c.running]
        later = order[order.index(child) + 1 :]
        return [child, *(c for c in later if c.running)]

    async def _count_restart(self, child: ChildHandle, reason: Reason) -> None:
        """Record a restart; escalate if that makes too many within the period."""
        now = trio.current_time()
        times = self._restart_times
        while times and times[0] <= now - self.intensity.period_s:
            times.popleft()
        times.append(now)
        if len(times) <= self.intensity.max_restarts:
            return
        error = EscalationError(self.name, child.id, len(times))
        cause = reason if isinstance(reason, BaseException) else None
        error.__cause__ = cause
        self._closing = True
        self._emit(child.id, EventKind.ESCALATED, error)
        await self._stop_all(f"supervisor escalating after {child.id!r} crashed")
        raise error from cause

    def _backoff_delay(self, child: ChildHandle) -> float:
        if self.backoff is None:
            return 0.0
        if trio.current_time() - child._started_at >= self.backoff.reset_after_s:
            child._backoff_attempt = 0  # it was stable for a while: start over
        delay = self.backoff.delay(child._backoff_attempt, self._rng)
        child._backoff_attempt += 1
        return delay

    # --- events --------------------------------------------------------------------------

    def _emit(self, child_id: str | None, kind: EventKind, reason: Reason) -> None:
        event = SupervisorEvent(child_id, kind, reason, trio.current_time())
        self._events.append(event)
        logger.log(
            _LOG_LEVELS.get(kind, "DEBUG"),
            "supervisor {!r}: child {!r} {} ({!r})",
            self.name,
            child_id,
            kind.value,
            reason,
        )
        if self._on_event is not None:
            try:
                self._on_event(event)
            except Exception:
                logger.exception("supervisor {!r}: on_event callback failed", self.name)

    def _check_open(self) -> None:
        if self._closing:
            raise SupervisorClosedError(f"supervisor {self.name!r} is closing")

    async def _ensure_open(self) -> None:
        if self._closing:
            # After an escalation, a caller inside the supervisor's block is already
            # being cancelled: let Cancelled win so only EscalationError leaves the
            # block. Callers elsewhere get SupervisorClosedError.
            await trio.lowlevel.checkpoint()
            self._check_open()


def _is_live(child: ChildHandle) -> bool:
    """Running, or down and about to be restarted: occupies its id and a slot."""
    return not child._finished


def _should_restart(restart: RestartType, crashed: bool) -> bool:
    return restart is PERMANENT or (restart is TRANSIENT and crashed)


def _sole_error(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """The one real error in a nursery's group, ignoring cancellations; else ``None``.

    After an escalation, SupervisorClosedErrors are its consequences, not news.
    """
    errors = [e for e in group.exceptions if not isinstance(e, trio.Cancelled)]
    if any(isinstance(e, EscalationError) for e in errors):
        errors = [e for e in errors if not isinstance(e, SupervisorClosedError)]
    return errors[0] if len(errors) == 1 else None
