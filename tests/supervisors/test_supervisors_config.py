"""Intensity, Backoff and ChildSpec: validation and the pure backoff function."""

from __future__ import annotations

import dataclasses
import random

import pytest

from supervisors import Backoff, ChildSpec, EventKind, Intensity, SupervisorEvent


async def _noop() -> None:
    pass


def test_backoff_doubles_from_min_and_caps_at_max() -> None:
    backoff = Backoff(min_s=0.1, max_s=1.0, jitter=0.0)

    delays = [backoff.delay(n) for n in range(6)]

    assert delays == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])


def test_backoff_survives_huge_attempt_numbers() -> None:
    assert Backoff(min_s=0.5, max_s=7.0).delay(10_000) == 7.0


def test_backoff_zero_min_means_no_delay() -> None:
    assert Backoff(min_s=0.0, max_s=1.0, jitter=0.5).delay(3, random.Random(1)) == 0.0


def test_backoff_jitter_only_shortens_and_is_reproducible() -> None:
    backoff = Backoff(min_s=1.0, max_s=8.0, jitter=0.25)

    first = [backoff.delay(n, random.Random(42)) for n in range(5)]
    again = [backoff.delay(n, random.Random(42)) for n in range(5)]

    assert first == again
    for n, delay in enumerate(first):
        base = min(8.0, 2.0**n)
        assert base * 0.75 <= delay <= base


def test_backoff_rejects_negative_attempt() -> None:
    with pytest.raises(ValueError, match="attempt"):
        Backoff().delay(-1)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_s": -1.0},
        {"min_s": 2.0, "max_s": 1.0},
        {"jitter": 1.5},
        {"jitter": -0.1},
        {"reset_after_s": -1.0},
    ],
)
def test_backoff_rejects_bad_values(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Backoff(**kwargs)


@pytest.mark.parametrize("kwargs", [{"max_restarts": -1}, {"period_s": 0.0}])
def test_intensity_rejects_bad_values(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Intensity(**kwargs)  # type: ignore[arg-type]


def test_childspec_rejects_empty_id_and_negative_shutdown() -> None:
    with pytest.raises(ValueError, match="id"):
        ChildSpec(id="", start=_noop)
    with pytest.raises(ValueError, match="shutdown_s"):
        ChildSpec(id="x", start=_noop, shutdown_s=-1)


def test_records_are_frozen() -> None:
    records: list[object] = [
        Intensity(),
        Backoff(),
        ChildSpec(id="x", start=_noop),
        SupervisorEvent("x", EventKind.STARTED, None, 0.0),
    ]
    for record in records:
        field = dataclasses.fields(record)[0].name  # type: ignore[arg-type]
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(record, field, None)
