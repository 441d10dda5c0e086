"""Statuses, the transition table, decisions, truncation and the retry policy."""

from __future__ import annotations

import itertools
import random

import pytest

from kalam_actors import InvalidParams, InvalidTransition, JobDecision, JobStatus, RetryPolicy
from kalam_actors.model import (
    MAX_EXCEPTION_TRACE,
    MAX_MESSAGE,
    TRANSITIONS,
    check_transition,
    truncate_head,
    truncate_tail,
)

S = JobStatus
ALLOWED = {
    (S.NEW, S.QUEUED), (S.NEW, S.CANCELLED),
    (S.QUEUED, S.RUNNING), (S.QUEUED, S.CANCELLED),
    (S.RUNNING, S.COMPLETED), (S.RUNNING, S.FAILED), (S.RUNNING, S.RETRYING),
    (S.RUNNING, S.CANCELLED), (S.RUNNING, S.SKIPPED),
    (S.RETRYING, S.RUNNING), (S.RETRYING, S.CANCELLED), (S.RETRYING, S.FAILED),
}


@pytest.mark.parametrize(("old", "new"), list(itertools.product(S, S)))
def test_transition_table_is_exactly_the_specified_one(old: JobStatus, new: JobStatus) -> None:
    if (old, new) in ALLOWED:
        check_transition("FL-x", old, new)
    else:
        with pytest.raises(InvalidTransition) as info:
            check_transition("FL-x", old, new)
        assert info.value.from_status is old and info.value.to_status is new
        assert str(info.value).startswith("[FL-x] ")


def test_terminal_statuses_have_no_way_out() -> None:
    terminal = {s for s in S if s.is_terminal}
    assert terminal == {S.COMPLETED, S.FAILED, S.CANCELLED, S.SKIPPED}
    assert all(not TRANSITIONS[s] for s in terminal)
    assert {s for s in S if s.is_active} == {S.NEW, S.QUEUED, S.RUNNING, S.RETRYING}


def test_retry_policy_doubles_from_100_ms_and_caps() -> None:
    policy = RetryPolicy()
    assert [policy.backoff_ms(n) for n in (1, 2, 3, 4)] == [100, 200, 400, 800]
    assert RetryPolicy(base_ms=1000, max_ms=3000).backoff_ms(10) == 3000


def test_retry_policy_jitter_stays_within_its_fraction() -> None:
    policy = RetryPolicy(base_ms=1000, jitter=0.25)
    rng = random.Random(7)
    delays = {policy.backoff_ms(1, rng) for _ in range(200)}
    assert min(delays) >= 750 and max(delays) <= 1000 and len(delays) > 50


@pytest.mark.parametrize(
    "kwargs",
    [{"base_ms": -1}, {"factor": 0.5}, {"jitter": 1.5}, {"max_ms": -5}, {"max_ms": 10**30}],
)
def test_retry_policy_rejects_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(InvalidParams):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_decision_rejects_negative_backoff() -> None:
    with pytest.raises(InvalidParams, match="backoff_ms"):
        JobDecision.retry("x", backoff_ms=-1)


def test_long_message_is_cut_with_a_visible_marker() -> None:
    text = "m" * 5000
    cut = truncate_head(text, MAX_MESSAGE)
    assert cut is not None and len(cut) == MAX_MESSAGE
    assert cut.startswith("mmm") and "truncated" in cut


def test_long_trace_keeps_its_newest_part() -> None:
    text = "old" * 4000 + "NEWEST"
    cut = truncate_tail(text, MAX_EXCEPTION_TRACE)
    assert cut is not None and len(cut) == MAX_EXCEPTION_TRACE
    assert cut.endswith("NEWEST") and "truncated" in cut


def test_short_text_is_left_alone() -> None:
    assert truncate_head("ok", 10) == "ok"
    assert truncate_tail(None, 10) is None
