"""UserCleanupExecutor: only soft-deleted users; cascade takes their rows everywhere."""

from __future__ import annotations

from typing import Any

import pytest
from executor_support import run_job

from kalam_actors import CancelNotAllowed, InvalidParams, Outcome
from kalam_actors.executors import UserCleanupExecutor
from kalam_actors.storage import Engine, TableType
from kalam_actors.testing import make_context, make_job

NS = "default"


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ({"user_id": "u1", "username": ""}, "username"),
        ({"user_id": "u1", "username": "   "}, "username"),
        ({"user_id": "u1"}, "username"),
        ({"username": "ann"}, "user_id"),
        ({"user_id": "u/1", "username": "ann"}, "user_id"),
        ({"user_id": "u1", "username": "ann", "cascade": "yes"}, "cascade"),
    ],
)
def test_bad_params_name_the_field(bad: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidParams) as info:
        UserCleanupExecutor().validate_params(bad)
    assert info.value.field == field


@pytest.fixture
def world(engine: Engine) -> Engine:
    """u1 and u2 own rows in two USER tables, hot and cold; u1 has an ACL entry and a token."""
    for table in ("notes", "prefs"):
        engine.create_table(NS, table, TableType.USER)
        for user in ("u1", "u2"):
            engine.insert(NS, table, {"id": 1, "who": user}, user_id=user)
        engine.flush_table(NS, table)
        engine.insert(NS, table, {"id": 2, "who": "u1"}, user_id="u1")
    engine.create_user("u1", "ann")
    engine.create_user("u2", "bob")
    engine.grant("u1", NS, "notes")
    engine.create_token("u1")
    return engine


def test_cascade_removes_rows_acls_tokens_and_the_user(world: Engine) -> None:
    world.delete_user("u1")
    decision, _ = run_job(UserCleanupExecutor(),
                          {"user_id": "u1", "username": "ann", "cascade": True}, world)
    assert decision.outcome is Outcome.COMPLETED
    assert decision.message == (
        "removed user u1 (ann): 2 hot rows and 2 segments in 2 tables (default:notes, "
        "default:prefs), 1 ACL entries, 1 tokens")
    for table in ("notes", "prefs"):
        assert world.scan(NS, table) == [{"id": 1, "who": "u2"}]
        assert not (world.path / "segments" / NS / table / "u1").exists()
    assert world.get_user("u1") is None
    assert world.acl_entries("u1") == [] and world.tokens("u1") == []
    assert world.get_user("u2") is not None


def test_without_cascade_a_user_with_data_fails_naming_the_tables(world: Engine) -> None:
    world.delete_user("u1")
    decision, _ = run_job(UserCleanupExecutor(), {"user_id": "u1", "username": "ann"}, world)
    assert decision.outcome is Outcome.FAILED
    assert decision.message == ("user u1 (ann) still owns data in default:notes, default:prefs; "
                                "re-run with cascade=true")
    assert world.get_user("u1") is not None
    assert len(world.scan(NS, "notes", user_id="u1")) == 2


def test_without_cascade_a_user_without_data_is_removed(world: Engine) -> None:
    world.create_user("u3", "cy")
    world.delete_user("u3")
    decision, _ = run_job(UserCleanupExecutor(), {"user_id": "u3", "username": "cy"}, world)
    assert decision.outcome is Outcome.COMPLETED
    assert world.get_user("u3") is None


def test_only_soft_deleted_users_matching_the_name(world: Engine) -> None:
    live, _ = run_job(UserCleanupExecutor(), {"user_id": "u1", "username": "ann",
                                              "cascade": True}, world)
    assert live.outcome is Outcome.FAILED and "is not deleted" in (live.message or "")
    world.delete_user("u1")
    wrong, _ = run_job(UserCleanupExecutor(), {"user_id": "u1", "username": "bob",
                                               "cascade": True}, world)
    assert wrong.message == "user u1 is named 'ann', not 'bob'"
    gone, _ = run_job(UserCleanupExecutor(), {"user_id": "nobody", "username": "x"}, world)
    assert gone.outcome is Outcome.SKIPPED
    assert len(world.scan(NS, "notes", user_id="u1")) == 2


def test_user_cleanup_cannot_be_cancelled(world: Engine) -> None:
    job = make_job(UserCleanupExecutor.job_type, {"user_id": "u1", "username": "ann"})
    ctx, _ = make_context(job, storage=world)
    with pytest.raises(CancelNotAllowed):
        UserCleanupExecutor().cancel(ctx, job)
