"""Acceptance: the supervisors contract of issue 2, used exactly as the issue writes it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pykka
import pytest
import trio
import trio.testing

from supervisors import (
    ONE_FOR_ALL,
    ONE_FOR_ONE,
    PERMANENT,
    REST_FOR_ONE,
    TEMPORARY,
    TRANSIENT,
    Backoff,
    ChildSpec,
    EscalationError,
    EventKind,
    Intensity,
    Supervisor,
    SupervisorEvent,
    actor_child,
)


@pytest.fixture(autouse=True)
def _stop_all_actors() -> Iterator[None]:
    try:
        yield
    finally:
        pykka.ActorRegistry.stop_all(block=True, timeout=5)


class Crash(Exception):
    pass


starts: dict[str, int] = {}
crash_orders: dict[str, trio.Event] = {}


async def worker(
    name: str, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    starts[name] = starts.get(name, 0) + 1
    order = crash_orders[name] = trio.Event()
    task_status.started()  # the child counts as started from here
    await order.wait()
    raise Crash(name)  # raising = crash


@pytest.fixture(autouse=True)
def _fresh_workers() -> None:
    starts.clear()
    crash_orders.clear()


def kinds(events: list[SupervisorEvent]) -> list[tuple[str | None, str]]:
    return [(e.child_id, e.kind.name) for e in events]


async def test_the_issue_example_runs_as_written() -> None:
    async with Supervisor.open(
        strategy=ONE_FOR_ONE, intensity=Intensity(max_restarts=3, period_s=5.0), backoff=None
    ) as sup:
        await sup.start_child(
            ChildSpec(id="w1", start=worker, args=("w1",), restart=PERMANENT, shutdown_s=5.0)
        )
        crash_orders["w1"].set()
        await trio.testing.wait_all_tasks_blocked()

        assert sup.restart_count("w1") == 1
        assert [c.id for c in sup.children()] == ["w1"]
        assert kinds(sup.events) == [("w1", "STARTED"), ("w1", "CRASHED"), ("w1", "RESTARTED")]
        assert all(isinstance(e, SupervisorEvent) for e in sup.events)

        await sup.terminate_child("w1")
        assert sup.children() == []
        assert kinds(sup.events)[-1] == ("w1", "TERMINATED")


@pytest.mark.parametrize(
    ("strategy", "restarted"),
    [(ONE_FOR_ONE, ["b"]), (ONE_FOR_ALL, ["a", "b", "c"]), (REST_FOR_ONE, ["b", "c"])],
)
async def test_strategies_choose_who_restarts(strategy: Any, restarted: list[str]) -> None:
    async with Supervisor.open(strategy=strategy) as sup:
        for cid in "abc":
            await sup.start_child(ChildSpec(id=cid, start=worker, args=(cid,)))
        crash_orders["b"].set()
        await trio.testing.wait_all_tasks_blocked()

        assert [cid for cid in "abc" if starts[cid] == 2] == restarted
        assert [e.child_id for e in sup.events if e.kind is EventKind.RESTARTED] == restarted


@pytest.mark.parametrize(
    ("restart", "expected_starts"), [(PERMANENT, 2), (TRANSIENT, 2), (TEMPORARY, 1)]
)
async def test_restart_types_after_a_crash(restart: Any, expected_starts: int) -> None:
    async with Supervisor.open() as sup:
        await sup.start_child(ChildSpec(id="w", start=worker, args=("w",), restart=restart))
        crash_orders["w"].set()
        await trio.testing.wait_all_tasks_blocked()

        assert starts["w"] == expected_starts


async def test_escalation_is_a_plain_exception_chained_to_the_last_crash() -> None:
    with pytest.raises(EscalationError) as caught:
        async with Supervisor.open(
            intensity=Intensity(max_restarts=1, period_s=5.0), name="acc"
        ) as sup:
            await sup.start_child(ChildSpec(id="w", start=worker, args=("w",)))
            for _ in range(2):
                crash_orders["w"].set()
                await trio.testing.wait_all_tasks_blocked()
            await trio.sleep_forever()

    assert type(caught.value) is EscalationError
    assert caught.value.supervisor_name == "acc" and caught.value.child_id == "w"
    assert isinstance(caught.value.__cause__, Crash)
    assert kinds(sup.events)[-2:] == [("w", "CRASHED"), ("w", "ESCALATED")]


async def test_backoff_times_are_exact(autojump_clock: trio.testing.MockClock) -> None:
    restarted_at: list[float] = []
    restarted = trio.Event()

    def on_event(event: SupervisorEvent) -> None:
        nonlocal restarted
        if event.kind is EventKind.RESTARTED:
            restarted_at.append(event.time)
            restarted.set()
            restarted = trio.Event()

    async with Supervisor.open(
        intensity=Intensity(max_restarts=10, period_s=60.0),
        backoff=Backoff(min_s=1.0, max_s=4.0, jitter=0.0, reset_after_s=30.0),
        on_event=on_event,
    ) as sup:
        await sup.start_child(ChildSpec(id="w", start=worker, args=("w",)))
        t0 = trio.current_time()
        for _ in range(4):
            next_restart = restarted
            crash_orders["w"].set()  # crashes at once; comes back after the delay
            await next_restart.wait()

    # 1, 2, 4, 4 (capped) seconds down, back to back
    assert [t - t0 for t in restarted_at] == [1.0, 3.0, 7.0, 11.0]


async def test_shutdown_is_in_reverse_start_order() -> None:
    async with Supervisor.open() as sup:
        for cid in "abc":
            await sup.start_child(ChildSpec(id=cid, start=worker, args=(cid,)))
        mark = len(sup.events)

    assert kinds(sup.events[mark:]) == [
        ("c", "TERMINATED"),
        ("b", "TERMINATED"),
        ("a", "TERMINATED"),
    ]


async def test_a_child_failing_to_start_raises_to_the_caller() -> None:
    async def broken(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        raise Crash("before started")

    async with Supervisor.open() as sup:
        with pytest.raises(Crash, match="before started"):
            await sup.start_child(ChildSpec(id="x", start=broken))
        assert kinds(sup.events) == [("x", "START_FAILED")]


class Counter(pykka.ThreadingActor):
    def on_receive(self, message: Any) -> None:
        if message == "crash":
            raise Crash("actor")
        message.set()  # a threading.Event: proves the actor is alive


async def test_a_pykka_child_crashes_and_comes_back_with_a_fresh_ref() -> None:
    restarted = trio.Event()

    def on_event(event: SupervisorEvent) -> None:
        if event.kind is EventKind.RESTARTED:
            restarted.set()

    with trio.fail_after(10):
        async with Supervisor.open(on_event=on_event) as sup:
            handle = await sup.start_child(ChildSpec(id="act", start=actor_child(Counter)))
            old_ref = handle.actor_ref
            assert old_ref is not None

            old_ref.tell("crash")
            await restarted.wait()

            new_ref = handle.actor_ref
            assert new_ref is not None and new_ref is not old_ref and not old_ref.is_alive()
            alive = threading.Event()
            new_ref.tell(alive)
            assert await trio.to_thread.run_sync(alive.wait, 5)
            assert isinstance(sup.events[1].reason, Crash)

    assert not new_ref.is_alive()
