"""UserCleanup: remove a soft-deleted user, with its data when asked to cascade."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from ..ids import JobType
from ..model import JobDecision
from ..storage.interface import StorageEngine
from . import _params as p
from ._base import EngineExecutor

if TYPE_CHECKING:
    from ..context import JobContext

__all__ = ["UserCleanupExecutor"]


class UserCleanupExecutor(EngineExecutor):
    """Parameters: ``user_id``, ``username`` (non-empty; must match the stored one),
    ``cascade`` (default false).

    Only for a soft-deleted user. With ``cascade`` the user's rows in every USER table (hot and
    cold), ACL entries, tokens and finally the record go in one transaction; without it a user
    who still owns rows makes the job fail, naming the tables. Not cancellable; a re-run after
    a crash is safe (a user already removed is Skipped).
    """

    job_type: ClassVar[JobType] = JobType.USER_CLEANUP
    name: ClassVar[str] = "user cleanup"
    cancellable: ClassVar[bool] = False
    rerun_on_recovery: ClassVar[bool] = True

    def _check_params(self, params: dict[str, Any]) -> None:
        p.check_fields(params, ("user_id", "username"), ("cascade",))
        p.name(params, "user_id")
        p.text(params, "username")
        p.flag(params, "cascade")

    def _run(self, ctx: JobContext, engine: StorageEngine) -> JobDecision:
        self._check_params(ctx.params)
        user_id = p.name(ctx.params, "user_id")
        username = p.text(ctx.params, "username")
        cascade = p.flag(ctx.params, "cascade")
        user = engine.get_user(user_id)
        if user is None:
            message = f"user {user_id} does not exist (already cleaned up?)"
            ctx.log_info(message)
            return JobDecision.skipped(message)
        if user.username != username:
            return self._fail(ctx, f"user {user_id} is named {user.username!r}, not "
                                   f"{username!r}")
        if not user.deleted:
            return self._fail(ctx, f"user {user_id} ({username}) is not deleted; soft-delete "
                                   f"the user before cleaning up")
        if not cascade:
            owned = engine.user_data_tables(user_id)
            if owned:
                return self._fail(ctx, f"user {user_id} ({username}) still owns data in "
                                       f"{', '.join(owned)}; re-run with cascade=true")
        ctx.report_progress(0, 1, "removing user")
        result = engine.purge_user(user_id, cascade=cascade)
        ctx.report_progress(1, 1, "user removed")
        message = (f"removed user {user_id} ({username}): {result.hot_rows} hot rows and "
                   f"{result.segments} segments in {len(result.tables)} tables"
                   f"{' (' + ', '.join(result.tables) + ')' if result.tables else ''}, "
                   f"{result.acl_entries} ACL entries, {result.tokens} tokens")
        ctx.log_info(message)
        return JobDecision.completed(message)

    @staticmethod
    def _fail(ctx: JobContext, message: str) -> JobDecision:
        ctx.log_error(message)
        return JobDecision.failed(message)
