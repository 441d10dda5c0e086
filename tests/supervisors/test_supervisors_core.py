"""Supervisor behaviour with trio-task children, on virtual time."""

from __future__ import annotations

import collections
from typing import TYPE_CHECKING

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
    RestartType,
    Supervisor,
    SupervisorClosedError,
    SupervisorEvent,
    TooManyChildrenError,
)

if TYPE_CHECKING:
    from conftest import Recorder

STARTED, EXITED, CRASHED, RESTARTED = (
    EventKind.STARTED,
    EventKind.EXITED,
    EventKind.CRASHED,
    EventKind.RESTARTED,
)
START_FAILED, ABANDONED, ESCALATED, TERMINATED = (
    EventKind.START_FAILED,
    EventKind.ABANDONED,
    EventKind.ESCALATED,
    EventKind.TERMINATED,
)
LOTS = Intensity(max_restarts=100, period_s=1.0)


class Boom(Exception):
    pass


class Fleet:
    """Worker children the test can crash or end one at a time, recording starts and stops."""

    def __init__(self) -> None:
        self.starts: collections.Counter[str] = collections.Counter()
        self.log: list[tuple[str, str]] = []  # ("start" | "cancelled", child id)
        self._orders: dict[str, trio.Event] = {}
        self._action: dict[str, str] = {}

    async def worker(self, cid: str, *, task_status: trio.TaskStatus[None]) -> None:
        self.starts[cid] += 1
        self.log.append(("start", cid))
        order = self._orders[cid] = trio.Event()
        task_status.started()
        try:
            await order.wait()
        except trio.Cancelled:
            self.log.append(("cancelled", cid))
            raise
        if self._action[cid] == "crash":
            raise Boom(f"{cid} #{self.starts[cid]}")

    def spec(
        self, cid: str, restart: RestartType = PERMANENT, shutdown_s: float = 5.0
    ) -> ChildSpec:
        return ChildSpec(
            id=cid, start=self.worker, args=(cid,), restart=restart, shutdown_s=shutdown_s
        )

    def crash(self, cid: str) -> None:
        self._action[cid] = "crash"
        self._orders[cid].set()

    def finish(self, cid: str) -> None:
        self._action[cid] = "exit"
        self._orders[cid].set()


def down_times(events: list[SupervisorEvent]) -> list[float]:
    """How long the child stayed down: from each CRASHED to the RESTARTED after it."""
    crashed = [e.time for e in events if e.kind is CRASHED]
    restarted = [e.time for e in events if e.kind is RESTARTED]
    return [r - c for c, r in zip(crashed, restarted, strict=True)]


def seq(events: list[SupervisorEvent], since: int = 0) -> list[tuple[str | None, str]]:
    return [(e.child_id, e.kind.name) for e in events[since:]]


@pytest.fixture
def fleet() -> Fleet:
    return Fleet()


async def test_start_child_starts_in_order_and_reports(fleet: Fleet) -> None:
    async with Supervisor.open() as sup:
        handles = [await sup.start_child(fleet.spec(cid)) for cid in "abc"]

        assert [h.id for h in sup.children()] == ["a", "b", "c"]
        assert all(h.running and h.restart_count == 0 and h.actor_ref is None for h in handles)
        assert sup.child("b") is handles[1]
        assert seq(sup.events) == [("a", "STARTED"), ("b", "STARTED"), ("c", "STARTED")]
        with pytest.raises(KeyError, match="nope"):
            sup.child("nope")


# --- strategies ----------------------------------------------------------------------------


async def test_one_for_one_restarts_only_the_crashed_child(fleet: Fleet) -> None:
    async with Supervisor.open(strategy=ONE_FOR_ONE) as sup:
        for cid in "abc":
            await sup.start_child(fleet.spec(cid))
        mark = len(sup.events)

        fleet.crash("b")
        await trio.testing.wait_all_tasks_blocked()

        assert seq(sup.events, mark) == [("b", "CRASHED"), ("b", "RESTARTED")]
        assert fleet.starts == {"a": 1, "b": 2, "c": 1}
        assert [sup.restart_count(c) for c in "abc"] == [0, 1, 0]
        crash = sup.events[mark].reason
        assert isinstance(crash, Boom) and str(crash) == "b #1"
        assert sup.events[mark + 1].reason is crash


async def test_one_for_all_stops_in_reverse_and_restarts_in_order(fleet: Fleet) -> None:
    async with Supervisor.open(strategy=ONE_FOR_ALL) as sup:
        for cid in "abcd":
            await sup.start_child(fleet.spec(cid))
        mark, log_mark = len(sup.events), len(fleet.log)

        fleet.crash("b")
        await trio.testing.wait_all_tasks_blocked()

        assert seq(sup.events, mark) == [
            ("b", "CRASHED"),
            ("d", "TERMINATED"),
            ("c", "TERMINATED"),
            ("a", "TERMINATED"),
            ("a", "RESTARTED"),
            ("b", "RESTARTED"),
            ("c", "RESTARTED"),
            ("d", "RESTARTED"),
        ]
        assert fleet.log[log_mark:] == [
            ("cancelled", "d"),
            ("cancelled", "c"),
            ("cancelled", "a"),
            ("start", "a"),
            ("start", "b"),
            ("start", "c"),
            ("start", "d"),
        ]
        assert [sup.restart_count(c) for c in "abcd"] == [1, 1, 1, 1]
        assert [h.id for h in sup.children()] == ["a", "b", "c", "d"]


async def test_rest_for_one_restarts_the_crashed_child_and_later_ones(fleet: Fleet) -> None:
    async with Supervisor.open(strategy=REST_FOR_ONE) as sup:
        for cid in "abcd":
            await sup.start_child(fleet.spec(cid))
        mark, log_mark = len(sup.events), len(fleet.log)

        fleet.crash("b")
        await trio.testing.wait_all_tasks_blocked()

        assert seq(sup.events, mark) == [
            ("b", "CRASHED"),
            ("d", "TERMINATED"),
            ("c", "TERMINATED"),
            ("b", "RESTARTED"),
            ("c", "RESTARTED"),
            ("d", "RESTARTED"),
        ]
        assert fleet.log[log_mark:] == [
            ("cancelled", "d"),
            ("cancelled", "c"),
            ("start", "b"),
            ("start", "c"),
            ("start", "d"),
        ]
        assert fleet.starts["a"] == 1


async def test_one_for_all_does_not_restart_temporary_siblings(fleet: Fleet) -> None:
    async with Supervisor.open(strategy=ONE_FOR_ALL) as sup:
        await sup.start_child(fleet.spec("a"))
        temp = await sup.start_child(fleet.spec("t", restart=TEMPORARY))
        mark = len(sup.events)

        fleet.crash("a")
        await trio.testing.wait_all_tasks_blocked()

        assert seq(sup.events, mark) == [
            ("a", "CRASHED"),
            ("t", "TERMINATED"),
            ("a", "RESTARTED"),
        ]
        assert not temp.running
        # It no longer occupies its id: it may be started again.
        await sup.start_child(fleet.spec("t", restart=TEMPORARY))


# --- restart types -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("restart", "how", "expected"),
    [
        (PERMANENT, "crash", ["CRASHED", "RESTARTED"]),
        (PERMANENT, "exit", ["EXITED", "RESTARTED"]),
        (TRANSIENT, "crash", ["CRASHED", "RESTARTED"]),
        (TRANSIENT, "exit", ["EXITED"]),
        (TEMPORARY, "crash", ["CRASHED"]),
        (TEMPORARY, "exit", ["EXITED"]),
    ],
)
async def test_restart_types(
    fleet: Fleet, restart: RestartType, how: str, expected: list[str]
) -> None:
    async with Supervisor.open() as sup:
        handle = await sup.start_child(fleet.spec("w", restart=restart))

        fleet.crash("w") if how == "crash" else fleet.finish("w")
        await trio.testing.wait_all_tasks_blocked()

        assert [kind for _, kind in seq(sup.events, 1)] == expected
        restarted = expected[-1] == "RESTARTED"
        assert handle.running is restarted
        assert handle.restart_count == int(restarted)
        assert fleet.starts["w"] == 1 + int(restarted)
        assert (
            sup.events[1].reason is None
            if how == "exit"
            else isinstance(sup.events[1].reason, Boom)
        )


# --- intensity and escalation --------------------------------------------------------------


async def test_too_many_restarts_stops_everyone_and_escalates(fleet: Fleet) -> None:
    seen: list[SupervisorEvent] = []
    with pytest.raises(EscalationError) as caught:
        async with Supervisor.open(
            intensity=Intensity(max_restarts=2, period_s=5.0), name="root", on_event=seen.append
        ) as sup:
            for cid in "abc":
                await sup.start_child(fleet.spec(cid))
            for _ in range(3):
                fleet.crash("b")
                await trio.testing.wait_all_tasks_blocked()
            pytest.fail("the supervisor should have escalated")  # pragma: no cover

    error = caught.value
    assert type(error) is EscalationError  # not wrapped in an ExceptionGroup
    assert (error.supervisor_name, error.child_id, error.restarts) == ("root", "b", 3)
    assert isinstance(error.__cause__, Boom) and str(error.__cause__) == "b #3"
    assert seq(seen)[-5:] == [
        ("b", "RESTARTED"),
        ("b", "CRASHED"),
        ("b", "ESCALATED"),
        ("c", "TERMINATED"),
        ("a", "TERMINATED"),
    ]
    assert seen[-3].reason is error
    assert fleet.log[-2:] == [("cancelled", "c"), ("cancelled", "a")]


async def test_restarts_spread_beyond_the_period_do_not_escalate(
    fleet: Fleet, autojump_clock: trio.testing.MockClock
) -> None:
    async with Supervisor.open(intensity=Intensity(max_restarts=1, period_s=5.0)) as sup:
        await sup.start_child(fleet.spec("w"))
        for _ in range(4):
            fleet.crash("w")
            await trio.testing.wait_all_tasks_blocked()
            await trio.sleep(5.0)  # virtual: the previous restart leaves the window

        assert sup.restart_count("w") == 4


@pytest.mark.parametrize(("gap", "escalates"), [(5.0, False), (4.999, True)])
async def test_a_restart_exactly_one_period_old_has_left_the_window(
    fleet: Fleet, autojump_clock: trio.testing.MockClock, gap: float, escalates: bool
) -> None:
    # Given one restart allowed per 5 s, and a first crash and restart at t0
    async def scenario() -> None:
        async with Supervisor.open(intensity=Intensity(max_restarts=1, period_s=5.0)) as sup:
            await sup.start_child(fleet.spec("w"))
            fleet.crash("w")
            await trio.testing.wait_all_tasks_blocked()
            # When the second crash comes `gap` seconds later
            await trio.sleep(gap)
            fleet.crash("w")
            await trio.testing.wait_all_tasks_blocked()
            assert sup.restart_count("w") == 2

    # Then only a gap shorter than the period escalates
    if escalates:
        with pytest.raises(EscalationError):
            await scenario()
    else:
        await scenario()


async def test_escalation_travels_up_through_a_parent_supervisor(fleet: Fleet) -> None:
    async def sub_supervisor(*, task_status: trio.TaskStatus[None]) -> None:
        async with Supervisor.open(
            intensity=Intensity(max_restarts=0, period_s=5.0), name="sub"
        ) as sub:
            await sub.start_child(fleet.spec("leaf"))
            task_status.started()
            fleet.crash("leaf")
            await trio.sleep_forever()

    parent_events: list[SupervisorEvent] = []
    with pytest.raises(EscalationError) as caught:
        async with Supervisor.open(
            intensity=Intensity(max_restarts=1, period_s=5.0),
            name="parent",
            on_event=parent_events.append,
        ) as parent:
            await parent.start_child(ChildSpec(id="sub", start=sub_supervisor))
            await trio.sleep_forever()

    top = caught.value
    assert (top.supervisor_name, top.child_id, top.restarts) == ("parent", "sub", 2)
    middle = top.__cause__
    assert isinstance(middle, EscalationError) and middle.supervisor_name == "sub"
    assert isinstance(middle.__cause__, Boom)
    assert seq(parent_events) == [
        ("sub", "STARTED"),
        ("sub", "CRASHED"),
        ("sub", "RESTARTED"),
        ("sub", "CRASHED"),
        ("sub", "ESCALATED"),
    ]


async def test_errors_from_the_body_propagate_as_themselves(fleet: Fleet) -> None:
    with pytest.raises(ZeroDivisionError):
        async with Supervisor.open() as sup:
            await sup.start_child(fleet.spec("a"))
            1 / 0  # noqa: B018
    assert fleet.log[-1] == ("cancelled", "a")


# --- backoff -------------------------------------------------------------------------------


async def test_backoff_delays_restarts_exponentially(
    fleet: Fleet, recorder: Recorder, autojump_clock: trio.testing.MockClock
) -> None:
    backoff = Backoff(min_s=0.1, max_s=0.4, jitter=0.0, reset_after_s=10.0)
    async with Supervisor.open(intensity=LOTS, backoff=backoff, on_event=recorder) as sup:
        await sup.start_child(fleet.spec("w"))
        for n in range(1, 5):
            fleet.crash("w")
            await recorder.wait_for(RESTARTED, "w", count=n)

        assert down_times(sup.events) == pytest.approx([0.1, 0.2, 0.4, 0.4], abs=1e-9)


async def test_backoff_resets_after_the_child_stayed_up(
    fleet: Fleet, recorder: Recorder, autojump_clock: trio.testing.MockClock
) -> None:
    backoff = Backoff(min_s=1.0, max_s=60.0, reset_after_s=10.0)
    async with Supervisor.open(intensity=LOTS, backoff=backoff, on_event=recorder) as sup:
        await sup.start_child(fleet.spec("w"))
        for n in range(1, 4):
            fleet.crash("w")
            await recorder.wait_for(RESTARTED, "w", count=n)
        await trio.sleep(10.0)  # virtual: up long enough to count as stable
        fleet.crash("w")
        await recorder.wait_for(RESTARTED, "w", count=4)

        assert down_times(sup.events) == [1.0, 2.0, 4.0, 1.0]


async def test_backoff_event_times_are_exact(autojump_clock: trio.testing.MockClock) -> None:
    # Given a child that crashes as soon as it has started, every time
    async def flaky(*, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        raise Boom("again")

    backoff = Backoff(min_s=0.25, max_s=1.0, reset_after_s=100.0)
    with pytest.raises(EscalationError):
        async with Supervisor.open(
            intensity=Intensity(max_restarts=4, period_s=100.0), backoff=backoff
        ) as sup:
            t0 = trio.current_time()
            await sup.start_child(ChildSpec(id="f", start=flaky))
            await trio.sleep_forever()

    # Then restarts happen 0.25, 0.5, 1, 1 s after each crash, and the 5th restart escalates
    restarted = [e.time - t0 for e in sup.events if e.kind is RESTARTED]
    assert restarted == [0.25, 0.75, 1.75, 2.75]
    escalated = [e.time - t0 for e in sup.events if e.kind is ESCALATED]
    assert escalated == [2.75]


# --- shutdown ------------------------------------------------------------------------------


async def test_leaving_the_block_stops_children_in_reverse_start_order(fleet: Fleet) -> None:
    async with Supervisor.open() as sup:
        for cid in "abc":
            await sup.start_child(fleet.spec(cid))
        mark, log_mark = len(sup.events), len(fleet.log)

    assert seq(sup.events, mark) == [("c", "TERMINATED"), ("b", "TERMINATED"), ("a", "TERMINATED")]
    assert fleet.log[log_mark:] == [("cancelled", "c"), ("cancelled", "b"), ("cancelled", "a")]
    assert not any(h.running for h in sup.children())


async def test_a_child_that_ignores_cancellation_is_abandoned_after_shutdown_s(
    fleet: Fleet, autojump_clock: trio.testing.MockClock
) -> None:
    cleaned_up = trio.Event()

    async def stubborn(*, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        try:
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                await trio.sleep(3.0)
                cleaned_up.set()

    async with Supervisor.open() as sup:
        await sup.start_child(fleet.spec("a"))
        await sup.start_child(ChildSpec(id="s", start=stubborn, shutdown_s=1.0))
        await sup.start_child(fleet.spec("c"))
        t0 = trio.current_time()
        mark = len(sup.events)

    # Then the supervisor gives "s" 1 s, abandons it, goes on, and is done at once
    stops = [(e.child_id, e.kind.name, e.time - t0) for e in sup.events[mark:]]
    assert stops == [("c", "TERMINATED", 0.0), ("s", "ABANDONED", 1.0), ("a", "TERMINATED", 1.0)]
    assert sup.events[mark + 1].reason == "did not stop within 1.0s"
    assert trio.current_time() - t0 == 1.0
    # The abandoned task lives on, outside the supervisor, until its cleanup ends.
    assert not cleaned_up.is_set()
    await cleaned_up.wait()
    assert trio.current_time() - t0 == 3.0


async def test_terminate_child_stops_and_forgets_one_child(fleet: Fleet) -> None:
    async with Supervisor.open() as sup:
        for cid in "abc":
            await sup.start_child(fleet.spec(cid))
        handle = sup.child("b")

        await sup.terminate_child("b")

        assert not handle.running
        assert [h.id for h in sup.children()] == ["a", "c"]
        assert seq(sup.events)[-1] == ("b", "TERMINATED")
        assert fleet.log[-1] == ("cancelled", "b")
        with pytest.raises(KeyError):
            await sup.terminate_child("b")
        # the id is free again, and the new child comes last in start order
        await sup.start_child(fleet.spec("b"))
        assert [h.id for h in sup.children()] == ["a", "c", "b"]


async def test_outer_cancellation_is_not_a_crash(fleet: Fleet) -> None:
    with trio.move_on_after(1.0) as scope:
        async with Supervisor.open() as sup:
            for cid in "ab":
                await sup.start_child(fleet.spec(cid))
            scope.cancel()
            await trio.sleep_forever()

    assert scope.cancelled_caught
    assert seq(sup.events) == [
        ("a", "STARTED"),
        ("b", "STARTED"),
        ("b", "TERMINATED"),
        ("a", "TERMINATED"),
    ]


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
async def test_keyboard_interrupt_and_system_exit_are_not_restarted(
    exc_type: type[BaseException],
) -> None:
    release = trio.Event()

    async def fatal(*, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        await release.wait()
        raise exc_type()

    with pytest.raises(exc_type):
        async with Supervisor.open() as sup:
            await sup.start_child(ChildSpec(id="f", start=fatal))
            release.set()
            await trio.sleep_forever()

    assert [kind for _, kind in seq(sup.events)] == ["STARTED"]


async def test_a_child_cancelled_by_its_own_scope_exits_normally() -> None:
    async def self_cancelling(*, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        with trio.CancelScope() as scope:
            scope.cancel()
            await trio.sleep_forever()

    async with Supervisor.open() as sup:
        await sup.start_child(ChildSpec(id="x", start=self_cancelling, restart=TRANSIENT))
        await trio.testing.wait_all_tasks_blocked()

        assert seq(sup.events) == [("x", "STARTED"), ("x", "EXITED")]


# --- start failures ------------------------------------------------------------------------


async def test_failure_before_started_reaches_the_first_caller() -> None:
    async def broken(*, task_status: trio.TaskStatus[None]) -> None:
        raise Boom("cannot start")

    async with Supervisor.open() as sup:
        with pytest.raises(Boom, match="cannot start"):
            await sup.start_child(ChildSpec(id="x", start=broken))

        assert sup.children() == []
        assert seq(sup.events) == [("x", "START_FAILED")]
        assert isinstance(sup.events[0].reason, Boom)


async def test_returning_without_started_is_a_start_failure() -> None:
    async def forgetful(*, task_status: trio.TaskStatus[None]) -> None:
        return

    async with Supervisor.open() as sup:
        with pytest.raises(RuntimeError, match=r"task_status\.started"):
            await sup.start_child(ChildSpec(id="x", start=forgetful))


async def test_failure_to_restart_counts_as_a_crash(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Given a child whose 2nd and 3rd starts fail, and that crashes after its 1st
    attempts: list[float] = []
    crash = trio.Event()

    async def fussy(*, task_status: trio.TaskStatus[None]) -> None:
        attempts.append(trio.current_time())
        if len(attempts) in (2, 3):
            raise Boom(f"start {len(attempts)}")
        task_status.started()
        if len(attempts) == 1:
            await crash.wait()
            raise Boom("crash")
        await trio.sleep_forever()

    async with Supervisor.open(intensity=LOTS, backoff=Backoff(min_s=1.0, max_s=10.0)) as sup:
        await sup.start_child(ChildSpec(id="f", start=fussy))
        t0 = trio.current_time()
        crash.set()
        while not sup.child("f").running or sup.restart_count("f") == 0:
            await trio.sleep(0.5)

        # Then each failed start is retried with a growing delay until one succeeds
        assert seq(sup.events) == [
            ("f", "STARTED"),
            ("f", "CRASHED"),
            ("f", "START_FAILED"),
            ("f", "START_FAILED"),
            ("f", "RESTARTED"),
        ]
        assert [t - t0 for t in attempts[1:]] == [1.0, 3.0, 7.0]
        assert sup.restart_count("f") == 1


async def test_start_failures_during_restart_can_escalate() -> None:
    starts = 0

    async def once(*, task_status: trio.TaskStatus[None]) -> None:
        nonlocal starts
        starts += 1
        if starts > 1:
            raise Boom(f"start {starts}")
        task_status.started()
        raise Boom("crash")

    with pytest.raises(EscalationError) as caught:
        async with Supervisor.open(intensity=Intensity(max_restarts=2, period_s=5.0)) as sup:
            await sup.start_child(ChildSpec(id="o", start=once))
            await trio.sleep_forever()

    assert str(caught.value.__cause__) == "start 3"
    assert [kind for _, kind in seq(sup.events)] == [
        "STARTED",
        "CRASHED",
        "START_FAILED",
        "START_FAILED",
        "ESCALATED",
    ]


async def test_one_for_all_retries_the_whole_group_when_a_restart_fails(fleet: Fleet) -> None:
    failures = 1

    async def fails_once_on_restart(*, task_status: trio.TaskStatus[None]) -> None:
        nonlocal failures
        if fleet.starts["a"] > 1 and failures:  # "a" has been restarted already
            failures -= 1
            raise Boom("restart failed")
        task_status.started()
        await trio.sleep_forever()

    async with Supervisor.open(strategy=ONE_FOR_ALL, intensity=LOTS) as sup:
        await sup.start_child(fleet.spec("a"))
        await sup.start_child(ChildSpec(id="m", start=fails_once_on_restart))
        await sup.start_child(fleet.spec("z"))
        mark = len(sup.events)

        fleet.crash("a")
        await trio.testing.wait_all_tasks_blocked()

        assert seq(sup.events, mark) == [
            ("a", "CRASHED"),
            ("z", "TERMINATED"),
            ("m", "TERMINATED"),
            ("a", "RESTARTED"),
            ("m", "START_FAILED"),
            ("a", "TERMINATED"),
            ("a", "RESTARTED"),
            ("m", "RESTARTED"),
            ("z", "RESTARTED"),
        ]
        assert all(h.running for h in sup.children())


# --- dynamic children, limits, callbacks ---------------------------------------------------


async def test_children_come_and_go_and_max_children_is_enforced(fleet: Fleet) -> None:
    async with Supervisor.open(max_children=2) as sup:
        await sup.start_child(fleet.spec("a"))
        await sup.start_child(fleet.spec("b"))
        with pytest.raises(TooManyChildrenError, match="max_children=2"):
            await sup.start_child(fleet.spec("c"))
        with pytest.raises(ValueError, match="already has a child 'a'"):
            await sup.start_child(fleet.spec("a"))

        await sup.terminate_child("a")
        await sup.start_child(fleet.spec("c"))

        assert [h.id for h in sup.children()] == ["b", "c"]


async def test_a_finished_child_frees_its_slot_and_id(fleet: Fleet) -> None:
    async with Supervisor.open(max_children=1) as sup:
        first = await sup.start_child(fleet.spec("t", restart=TRANSIENT))
        fleet.finish("t")
        await trio.testing.wait_all_tasks_blocked()

        second = await sup.start_child(fleet.spec("t", restart=TRANSIENT))

        assert second is not first and second.running and not first.running
        assert sup.children() == [second]


async def test_on_event_is_called_synchronously_with_every_event(fleet: Fleet) -> None:
    seen: list[tuple[SupervisorEvent, int]] = []
    sup_box: list[Supervisor] = []

    def on_event(event: SupervisorEvent) -> None:
        # Synchronous: the event is already recorded, nothing else happened after it.
        seen.append((event, len(sup_box[0].events)))

    async with Supervisor.open(on_event=on_event) as sup:
        sup_box.append(sup)
        await sup.start_child(fleet.spec("a"))
        fleet.crash("a")
        await trio.testing.wait_all_tasks_blocked()

    assert [e for e, _ in seen] == sup.events
    assert [n for _, n in seen] == list(range(1, len(sup.events) + 1))
    assert all(isinstance(e.time, float) for e in sup.events)


async def test_a_failing_on_event_callback_does_not_break_supervision(fleet: Fleet) -> None:
    def on_event(event: SupervisorEvent) -> None:
        raise RuntimeError("observer bug")

    async with Supervisor.open(on_event=on_event) as sup:
        await sup.start_child(fleet.spec("a"))
        fleet.crash("a")
        await trio.testing.wait_all_tasks_blocked()

        assert sup.restart_count("a") == 1


# --- restart_child -------------------------------------------------------------------------


async def test_restart_child_forces_a_restart_as_a_crash(fleet: Fleet) -> None:
    async with Supervisor.open(strategy=REST_FOR_ONE) as sup:
        for cid in "abc":
            await sup.start_child(fleet.spec(cid))
        mark = len(sup.events)

        await sup.restart_child("b", reason="stuck in a message")

        assert seq(sup.events, mark) == [
            ("b", "CRASHED"),
            ("c", "TERMINATED"),
            ("b", "RESTARTED"),
            ("c", "RESTARTED"),
        ]
        assert sup.events[mark].reason == "stuck in a message"
        assert fleet.starts == {"a": 1, "b": 2, "c": 2}
        assert fleet.log[-4:] == [
            ("cancelled", "c"),
            ("cancelled", "b"),
            ("start", "b"),
            ("start", "c"),
        ]


async def test_restart_child_counts_toward_intensity(fleet: Fleet) -> None:
    with pytest.raises(EscalationError) as caught:
        async with Supervisor.open(intensity=Intensity(max_restarts=0, period_s=1.0)) as sup:
            await sup.start_child(fleet.spec("a"))
            await sup.restart_child("a", reason=Boom("forced"))

    assert str(caught.value.__cause__) == "forced"


async def test_restart_child_needs_a_running_child(fleet: Fleet) -> None:
    async with Supervisor.open() as sup:
        await sup.start_child(fleet.spec("t", restart=TEMPORARY))
        fleet.finish("t")
        await trio.testing.wait_all_tasks_blocked()

        with pytest.raises(RuntimeError, match="not running"):
            await sup.restart_child("t")
        with pytest.raises(KeyError):
            await sup.restart_child("nope")


async def test_a_closed_supervisor_refuses_new_children(fleet: Fleet) -> None:
    async with Supervisor.open() as sup:
        pass
    with pytest.raises(SupervisorClosedError):
        await sup.start_child(fleet.spec("late"))


async def test_leaving_during_a_backoff_delay_cancels_the_restart(
    fleet: Fleet, autojump_clock: trio.testing.MockClock
) -> None:
    async with Supervisor.open(backoff=Backoff(min_s=10.0, max_s=10.0)) as sup:
        await sup.start_child(fleet.spec("a"))
        await sup.start_child(fleet.spec("b"))
        fleet.crash("b")
        await trio.testing.wait_all_tasks_blocked()
        t0 = trio.current_time()

    assert trio.current_time() == t0  # did not sit out the 10 s delay
    assert seq(sup.events, 2) == [("b", "CRASHED"), ("a", "TERMINATED")]
    assert fleet.starts == {"a": 1, "b": 1}


async def test_terminating_a_child_during_its_backoff_delay_prevents_the_restart(
    fleet: Fleet, autojump_clock: trio.testing.MockClock
) -> None:
    async with Supervisor.open(backoff=Backoff(min_s=1.0, max_s=1.0)) as sup:
        await sup.start_child(fleet.spec("a"))
        fleet.crash("a")
        await trio.testing.wait_all_tasks_blocked()

        await sup.terminate_child("a")  # not blocked by the pending restart
        await trio.sleep(2.0)

        assert sup.children() == []
        assert fleet.starts == {"a": 1}
        assert seq(sup.events) == [("a", "STARTED"), ("a", "CRASHED")]


async def test_events_are_logged_through_loguru(fleet: Fleet) -> None:
    from loguru import logger

    lines: list[str] = []
    logger.enable("supervisors")  # quiet until the application turns it on
    sink = logger.add(
        lambda message: lines.append(str(message).strip()),
        level="DEBUG",
        format="{level} {message}",
    )
    try:
        async with Supervisor.open(name="logged") as sup:
            await sup.start_child(fleet.spec("a"))
            fleet.crash("a")
            await trio.testing.wait_all_tasks_blocked()
    finally:
        logger.remove(sink)
        logger.disable("supervisors")

    assert lines == [
        "DEBUG supervisor 'logged': child 'a' started (None)",
        "WARNING supervisor 'logged': child 'a' crashed (Boom('a #1'))",
        "INFO supervisor 'logged': child 'a' restarted (Boom('a #1'))",
        "DEBUG supervisor 'logged': child 'a' terminated ('supervisor shutting down')",
    ]


async def test_a_start_child_waiting_during_an_escalation_does_not_mask_it(
    fleet: Fleet, autojump_clock: trio.testing.MockClock
) -> None:
    async def slow_to_stop(*, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        try:
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                await trio.sleep(1.0)

    with pytest.raises(EscalationError):
        async with Supervisor.open(intensity=Intensity(max_restarts=0, period_s=5.0)) as sup:
            await sup.start_child(ChildSpec(id="slow", start=slow_to_stop))
            await sup.start_child(fleet.spec("a"))
            fleet.crash("a")
            # The supervisor is now escalating: stopping "slow" takes 1 s, lock held.
            await trio.testing.wait_all_tasks_blocked()
            await sup.start_child(fleet.spec("late"))

    assert "late" not in fleet.starts


async def test_giving_up_on_start_child_cancels_the_starting_child(
    autojump_clock: trio.testing.MockClock,
) -> None:
    cancelled = trio.Event()

    async def slow_start(*, task_status: trio.TaskStatus[None]) -> None:
        try:
            await trio.sleep(10.0)
        except trio.Cancelled:
            cancelled.set()
            raise
        task_status.started()  # pragma: no cover - never reached

    async with Supervisor.open() as sup:
        with trio.move_on_after(1.0):
            await sup.start_child(ChildSpec(id="slow", start=slow_start))

        assert cancelled.is_set()
        assert sup.children() == []
        assert sup.events == []


async def test_children_see_the_context_variables_of_their_starter() -> None:
    import contextvars

    request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id")
    seen: list[str] = []

    async def reader(*, task_status: trio.TaskStatus[None]) -> None:
        seen.append(request_id.get("unset"))
        task_status.started()

    request_id.set("r-42")
    async with Supervisor.open() as sup:
        await sup.start_child(ChildSpec(id="r", start=reader, restart=TEMPORARY))

    assert seen == ["r-42"]
