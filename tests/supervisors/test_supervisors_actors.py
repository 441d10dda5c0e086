"""pykka actors as supervised children: crash detection across the thread boundary.

Actor threads run on the real clock, so these tests wait on events (trio.Event via
``on_event``, threading.Event via ``trio.to_thread``) under a ``fail_after`` guard,
never on sleeps. Virtual time is used only once an actor is provably stuck.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import pykka
import pytest
import trio
import trio.testing

from supervisors import (
    ONE_FOR_ALL,
    PERMANENT,
    TRANSIENT,
    ChildSpec,
    EventKind,
    RestartType,
    Supervisor,
    actor_child,
)

if TYPE_CHECKING:
    from conftest import Recorder

WAIT_S = 5.0  # real-time guard against a hang; never reached when things work


class Boom(Exception):
    pass


class Echo(pykka.ThreadingActor):
    """Obeys told messages: ("ping", event), ("crash", text), ("block", (entered, release))."""

    def __init__(self, tag: str = "echo") -> None:
        super().__init__()
        self.tag = tag

    def on_receive(self, message: Any) -> Any:
        kind, payload = message
        if kind == "ping":
            payload.set()
        elif kind == "crash":
            raise Boom(payload)
        elif kind == "block":
            entered, release = payload
            entered.set()
            release.wait(WAIT_S * 2)
        elif kind == "tag":
            return self.tag
        return None


class Hooked(Echo):
    """Records its lifecycle hooks, to show the supervised subclass keeps them."""

    calls: list[str]

    def __init__(self, calls: list[str], fail_start: bool = False) -> None:
        super().__init__()
        self.calls = calls
        self.fail_start = fail_start

    def on_start(self) -> None:
        self.calls.append("on_start")
        if self.fail_start:
            raise Boom("on_start failed")

    def on_stop(self) -> None:
        self.calls.append("on_stop")

    def on_failure(self, *exc_info: Any) -> None:
        self.calls.append(f"on_failure:{exc_info[1]}")


async def thread_wait(event: threading.Event) -> None:
    """Wait for a threading.Event without blocking trio."""
    assert await trio.to_thread.run_sync(event.wait, WAIT_S), "timed out waiting for the actor"


async def ping(ref: pykka.ActorRef[Any]) -> None:
    pong = threading.Event()
    ref.tell(("ping", pong))
    await thread_wait(pong)


def echo_spec(cid: str = "a", restart: RestartType = PERMANENT, **kwargs: Any) -> ChildSpec:
    return ChildSpec(id=cid, start=actor_child(Echo, tag=cid), restart=restart, **kwargs)


@pytest.fixture
async def guard() -> AsyncIterator[None]:
    with trio.fail_after(WAIT_S * 2):
        yield


async def test_actor_child_starts_and_exposes_its_ref(guard: None, recorder: Recorder) -> None:
    async with Supervisor.open(on_event=recorder) as sup:
        handle = await sup.start_child(echo_spec("a"))

        ref = handle.actor_ref
        assert isinstance(ref, pykka.ActorRef) and ref.is_alive()
        assert issubclass(ref.actor_class, Echo) and ref.actor_class.__name__ == "Echo"
        await ping(ref)
        assert [(e.child_id, e.kind) for e in recorder.events] == [("a", EventKind.STARTED)]

    assert not ref.is_alive()
    assert handle.actor_ref is None
    assert pykka.ActorRegistry.get_all() == []


async def test_a_crashing_actor_is_restarted_with_a_fresh_ref(
    guard: None, recorder: Recorder
) -> None:
    async with Supervisor.open(on_event=recorder) as sup:
        handle = await sup.start_child(echo_spec("a"))
        old = handle.actor_ref
        assert old is not None

        old.tell(("crash", "bad message"))
        await recorder.wait_for(EventKind.RESTARTED, "a")

        new = handle.actor_ref
        assert new is not None and new is not old
        assert new.actor_urn != old.actor_urn
        assert not old.is_alive() and new.is_alive()
        await ping(new)
        kinds = [e.kind for e in recorder.events]
        assert kinds == [EventKind.STARTED, EventKind.CRASHED, EventKind.RESTARTED]
        crash = recorder.events[1].reason
        assert isinstance(crash, Boom) and str(crash) == "bad message"
        assert sup.restart_count("a") == 1


async def test_an_error_returned_to_an_asker_is_not_a_crash(
    guard: None, recorder: Recorder
) -> None:
    async with Supervisor.open(on_event=recorder) as sup:
        handle = await sup.start_child(echo_spec("a"))
        ref = handle.actor_ref
        assert ref is not None

        ref.ask(("crash", "goes to the future"), block=False)  # never .get() on trio's thread
        await ping(ref)  # processed after the ask, by the same, still living actor

        assert [e.kind for e in recorder.events] == [EventKind.STARTED]
        assert handle.actor_ref is ref


@pytest.mark.parametrize(("restart", "restarted"), [(PERMANENT, True), (TRANSIENT, False)])
async def test_an_actor_stopped_by_someone_else_has_exited(
    guard: None, recorder: Recorder, restart: RestartType, restarted: bool
) -> None:
    async with Supervisor.open(on_event=recorder) as sup:
        handle = await sup.start_child(echo_spec("a", restart=restart))
        old = handle.actor_ref
        assert old is not None

        old.stop(block=False)
        # The EXITED event and the decision to restart (or not) happen in one step.
        await recorder.wait_for(EventKind.EXITED, "a")
        if restarted:
            await recorder.wait_for(EventKind.RESTARTED, "a")

        assert recorder.events[1].reason is None
        if restarted:
            assert recorder.events[-1].kind is EventKind.RESTARTED
            assert handle.actor_ref is not None and handle.actor_ref is not old
        else:
            assert recorder.events[-1].kind is EventKind.EXITED
            assert handle.actor_ref is None and not handle.running


async def test_on_start_failure_is_a_start_failure(guard: None, recorder: Recorder) -> None:
    calls: list[str] = []
    async with Supervisor.open(on_event=recorder) as sup:
        with pytest.raises(Boom, match="on_start failed"):
            await sup.start_child(
                ChildSpec(id="h", start=actor_child(Hooked, calls, fail_start=True))
            )

        assert sup.children() == []
        assert [e.kind for e in recorder.events] == [EventKind.START_FAILED]
        assert calls == ["on_start"]


async def test_user_hooks_still_run(guard: None, recorder: Recorder) -> None:
    calls: list[str] = []
    async with Supervisor.open(on_event=recorder) as sup:
        handle = await sup.start_child(ChildSpec(id="h", start=actor_child(Hooked, calls)))
        ref = handle.actor_ref
        assert ref is not None

        ref.tell(("crash", "oops"))
        await recorder.wait_for(EventKind.RESTARTED, "h")

    assert calls == ["on_start", "on_failure:oops", "on_start", "on_stop"]


async def test_one_for_all_restarts_actor_and_task_siblings(
    guard: None, recorder: Recorder
) -> None:
    task_starts: list[str] = []

    async def task(*, task_status: trio.TaskStatus[None]) -> None:
        task_starts.append("t")
        task_status.started()
        await trio.sleep_forever()

    async with Supervisor.open(strategy=ONE_FOR_ALL, on_event=recorder) as sup:
        await sup.start_child(ChildSpec(id="t", start=task))
        a = await sup.start_child(echo_spec("a"))
        b = await sup.start_child(echo_spec("b"))
        old_a, old_b = a.actor_ref, b.actor_ref
        assert old_a is not None and old_b is not None

        old_a.tell(("crash", "a broke"))
        await recorder.wait_for(EventKind.RESTARTED, "b")

        assert [(e.child_id, e.kind.name) for e in recorder.events[3:]] == [
            ("a", "CRASHED"),
            ("b", "TERMINATED"),
            ("t", "TERMINATED"),
            ("t", "RESTARTED"),
            ("a", "RESTARTED"),
            ("b", "RESTARTED"),
        ]
        assert task_starts == ["t", "t"]
        assert a.actor_ref not in (None, old_a) and b.actor_ref not in (None, old_b)
        assert not old_b.is_alive()


async def test_a_stuck_actor_is_abandoned_after_shutdown_s(
    mock_clock: trio.testing.MockClock, recorder: Recorder
) -> None:
    entered, release = threading.Event(), threading.Event()

    async def task(*, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        await trio.sleep_forever()

    try:
        async with Supervisor.open(on_event=recorder) as sup:
            await sup.start_child(ChildSpec(id="t", start=task))
            handle = await sup.start_child(echo_spec("s", shutdown_s=2.0))
            ref = handle.actor_ref
            assert ref is not None
            ref.tell(("block", (entered, release)))
            await thread_wait(entered)
            t0 = trio.current_time()
            # The actor can no longer make progress, so letting virtual time jump is safe.
            mock_clock.autojump_threshold = 0

        stops = [(e.child_id, e.kind.name, e.time - t0) for e in recorder.events[2:]]
        assert stops == [("s", "ABANDONED", 2.0), ("t", "TERMINATED", 2.0)]
        assert ref.is_alive()  # still stuck: abandoned, not killed
        # A daemon thread: an abandoned actor cannot keep the process alive.
        echo_threads = [t for t in threading.enumerate() if "Echo" in t.name]
        assert echo_threads and all(t.daemon for t in echo_threads)
    finally:
        release.set()
    # Released, it handles the stop request it was sent and ends.
    assert await trio.to_thread.run_sync(ref.actor_stopped.wait, WAIT_S)


async def test_restart_child_abandon_old_replaces_a_stuck_actor_at_once(
    guard: None, recorder: Recorder
) -> None:
    entered, release = threading.Event(), threading.Event()
    try:
        async with Supervisor.open(on_event=recorder) as sup:
            handle = await sup.start_child(echo_spec("s", shutdown_s=60.0))
            stuck = handle.actor_ref
            assert stuck is not None
            stuck.tell(("block", (entered, release)))
            await thread_wait(entered)
            before = trio.current_time()

            await sup.restart_child("s", reason="job timed out", abandon_old=True)

            fresh = handle.actor_ref
            assert fresh is not None and fresh is not stuck
            await ping(fresh)
            assert trio.current_time() - before < 1.0  # did not wait for shutdown_s=60
            assert [(e.kind.name, e.reason) for e in recorder.events[1:]] == [
                ("CRASHED", "job timed out"),
                ("ABANDONED", "did not stop within 0.0s"),
                ("RESTARTED", "job timed out"),
            ]
            assert stuck.is_alive()
    finally:
        release.set()
    assert await trio.to_thread.run_sync(stuck.actor_stopped.wait, WAIT_S)


def test_actor_child_needs_a_threading_actor() -> None:
    with pytest.raises(TypeError, match="ThreadingActor"):
        actor_child(object)  # type: ignore[arg-type]


async def test_actor_arguments_belong_to_actor_child_not_the_spec(recorder: Recorder) -> None:
    async with Supervisor.open(on_event=recorder) as sup:
        with pytest.raises(TypeError, match="actor_child"):
            await sup.start_child(ChildSpec(id="a", start=actor_child(Echo), args=("x",)))

        handle = await sup.start_child(ChildSpec(id="b", start=actor_child(Echo, tag="b")))
        ref = handle.actor_ref
        assert ref is not None
        tag = await trio.to_thread.run_sync(lambda: ref.ask(("tag", None), timeout=WAIT_S))
        assert tag == "b"
