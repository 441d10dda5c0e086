"""Schedules: jobs the runtime creates on its own (flush when full, stream eviction, history).

A :class:`Schedule` is asked by the runtime's one timer. It names *slots* (a whole number per
schedule, e.g. the interval number since the epoch, or a counter); the runtime records the last
slot it created a job for in the job store, in the same transaction as the job, so a slot never
fires twice — not even across a restart.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

from .ids import JobType

__all__ = ["Schedule", "ScheduledJob"]


@dataclasses.dataclass(frozen=True, slots=True)
class ScheduledJob:
    """A job a schedule wants created.

    Attributes:
        name: the schedule's stable name, e.g. ``"flush:default:users"``; at most 200 chars.
        slot: which firing this is; the runtime creates it only if ``slot`` is greater than the
            last slot recorded for ``name``.
        job_type: the job's type.
        params: the job's parameters.
        idempotency_key: if an active job holds it, this slot is recorded and skipped.
    """

    name: str
    slot: int
    job_type: JobType
    params: dict[str, Any]
    idempotency_key: str | None = None


class Schedule(Protocol):
    """What the runtime asks of a schedule. Both methods run in the runtime's trio thread and
    must be quick (index reads, no scans, no waiting)."""

    def next_wake_us(self, now_us: int) -> int | None:
        """The wall time (µs since the epoch) at which :meth:`plan` should next be asked, or
        None for "only when asked for another reason"."""
        ...

    def plan(self, now_us: int, last_slot: Any) -> list[ScheduledJob]:
        """The jobs due at ``now_us``. ``last_slot(name) -> int | None`` reads the last slot
        recorded for a schedule name, so a plan can skip slots already fired."""
        ...
