"""Fixtures for the supervisors tests."""

from __future__ import annotations

from collections.abc import Iterator

import pykka
import pytest
import trio

from supervisors import EventKind, SupervisorEvent


@pytest.fixture(autouse=True)
def _stop_all_actors() -> Iterator[None]:
    """Stop every pykka actor a test left behind, as pykka's own suite does."""
    try:
        yield
    finally:
        # A timeout, not a hang, if a test forgot to release an actor stuck in a message.
        pykka.ActorRegistry.stop_all(block=True, timeout=5)


class Recorder:
    """An ``on_event`` callback that tests can await."""

    def __init__(self) -> None:
        self.events: list[SupervisorEvent] = []
        self._changed = trio.Event()

    def __call__(self, event: SupervisorEvent) -> None:
        self.events.append(event)
        self._changed.set()
        self._changed = trio.Event()

    def count(self, kind: EventKind, child_id: str | None = None) -> int:
        return sum(
            1
            for e in self.events
            if e.kind is kind and (child_id is None or e.child_id == child_id)
        )

    async def wait_for(self, kind: EventKind, child_id: str | None = None, count: int = 1) -> None:
        """Return once ``count`` events of ``kind`` (for ``child_id``) were seen."""
        while True:
            changed = self._changed
            if self.count(kind, child_id) >= count:
                return
            await changed.wait()


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()
