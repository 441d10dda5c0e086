"""``kalam-actors demo``: every job type, on sample tables, through the real runtime.

The demo opens a storage engine and a job store in a data directory, fills tables of each
type, then runs Flush, Compact, Retention, StreamEviction, UserCleanup, Backup, Restore,
Cleanup and JobCleanup jobs with a live view, checks what each one did against the engine,
and prints the ``system.jobs`` table and one line per job. It exits 0 only if every job ended
as expected.

Two things are staged, and the demo says so as it does them: the engine's clock is moved two
hours ahead after the sample rows are written (so that soft deletes pass their retention and
stream rows their ttl without waiting), and one transient fault is injected into the first
flush of ``notes`` (so that a retry is seen).
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

import trio
from loguru import logger
from rich.console import Console
from rich.live import Live

from ._cli_common import EXIT_FAILED, EXIT_OK, DataDir, runtime_executors
from .errors import KalamError, StoreLocked
from .ids import JobId, JobType
from .live import JobBoard, PlainReporter, jobs_table, table_columns
from .model import Job, JobFilter, JobRow, JobStatus, RetryPolicy

__all__ = ["DemoClock", "run_demo"]

USERS: Final = (("alice", "Alice"), ("bob", "Bob"), ("carol", "Carol"), ("dave", "Dave"),
                ("erin", "Erin"))
DELETED_USER: Final = "dave"
STREAM_TTL_S: Final = 600
RETENTION_HOURS: Final = 1
CLOCK_JUMP_S: Final = 2 * 3600
POLL_S: Final = 0.05


class DemoClock:
    """The engine's clock for the demo: wall time plus an offset the demo moves forward."""

    def __init__(self) -> None:
        self.offset_s = 0.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return time.time() + self.offset_s

    def advance(self, seconds: float) -> None:
        """Move the clock ``seconds`` ahead."""
        with self._lock:
            self.offset_s += seconds


@dataclasses.dataclass
class Expectation:
    """What one job should come to, and a check of the engine afterwards."""

    status: JobStatus
    check: Callable[[], str | None] | None = None
    """Returns None when the engine is as expected, else what is wrong."""
    describe: str = ""


@dataclasses.dataclass
class Outcome:
    job: Job
    expected: Expectation
    problem: str | None


class Demo:
    """One demo run: the engine, the sample data, the phases of jobs, the checks."""

    def __init__(self, root: Path, console: Console, *, live: bool, rows: int) -> None:
        from .storage import Engine

        self.data = DataDir(root)
        self.console = console
        self.live_mode = live
        self.rows = max(100, rows)
        self.clock = DemoClock()
        self.engine = Engine.open(self.data.engine, clock=self.clock)
        self.ns = _fresh_namespace(self.engine)
        # Users are engine-wide: a second demo in the same directory gets its own.
        suffix = self.ns[len("demo"):]
        self.users = [(f"{user_id}{suffix}", name) for user_id, name in USERS]
        self.deleted_user = f"{DELETED_USER}{suffix}"
        self.expect: dict[str, Expectation] = {}
        self.problems: dict[str, str | None] = {}
        self.order: list[str] = []
        self.board = JobBoard(title="system.jobs (live)", show_table=False)
        self.reporter = PlainReporter(console)
        self.live: Live | None = None
        self.facts: dict[str, Any] = {}

    # ------------------------------------------------------------------ narration

    def say(self, text: str) -> None:
        """Print a line of narration (above the live view, if any)."""
        target = self.live.console if self.live is not None else self.console
        target.print(text, highlight=False)

    # ------------------------------------------------------------------ sample data

    def populate(self) -> None:
        """Create the users and sample tables, and fill them."""
        e, ns, n = self.engine, self.ns, self.rows
        for user_id, name in self.users:
            e.create_user(user_id, name)
        e.create_table(ns, "notes", "User")
        e.create_table(ns, "orders", "Shared")
        e.create_table(ns, "events", "Stream", ttl_seconds=STREAM_TTL_S)
        e.create_table(ns, "scratch", "Shared")
        e.grant(self.deleted_user, ns, "notes", "write")
        e.create_token(self.deleted_user)
        per_user = (n * 2 // 5) // len(self.users)
        for user_id, _ in self.users:
            e.insert_many(ns, "notes", ({"id": i, "owner": user_id, "text": f"note {i}"}
                                        for i in range(per_user)), user_id=user_id)
        half_orders = n // 5
        e.insert_many(ns, "orders", ({"id": i, "item": f"sku-{i % 97}", "qty": 1 + i % 5}
                                     for i in range(half_orders)))
        e.insert_many(ns, "events", ({"id": i, "kind": "click", "at": i}
                                     for i in range(n // 5)))
        e.insert_many(ns, "scratch", ({"id": i} for i in range(100)))
        self.facts["notes_per_user"] = per_user
        self.facts["orders_first"] = half_orders
        self.say(f"[bold]sample data[/] in namespace [cyan]{ns}[/]: {len(self.users)} users; "
                 f"User table notes ({per_user * len(self.users)} rows), Shared table orders "
                 f"({half_orders} rows), Stream table events ({n // 5} rows, ttl "
                 f"{STREAM_TTL_S}s), Shared table scratch (100 rows)")

    def more_writes(self) -> None:
        """Writes after the first flush: more rows, updates, soft deletes, a deleted user."""
        e, ns = self.engine, self.ns
        first = self.facts["orders_first"]
        e.insert_many(ns, "orders", ({"id": i, "item": f"sku-{i % 97}", "qty": 1 + i % 5}
                                     for i in range(first, 2 * first)))
        updated = range(0, first, 10)
        e.insert_many(ns, "orders", ({"id": i, "item": f"sku-{i % 97}", "qty": 99}
                                     for i in updated))
        deleted_orders = list(range(5, 2 * first, 40))
        for i in deleted_orders:
            e.delete(ns, "orders", i)
        deleted_notes = 0
        for user_id, _ in self.users:
            if user_id == self.deleted_user:
                continue
            for i in range(0, self.facts["notes_per_user"], 50):
                e.delete(ns, "notes", i, user_id=user_id)
                deleted_notes += 1
        e.delete_user(self.deleted_user)
        self.facts["deleted_orders"] = len(deleted_orders)
        self.facts["deleted_notes"] = deleted_notes
        self.say(f"[bold]more writes[/]: {first} more orders, {len(updated)} "
                 f"updates, {len(deleted_orders)} orders and {deleted_notes} notes "
                 f"soft-deleted, user {self.deleted_user} soft-deleted")
        self.clock.advance(CLOCK_JUMP_S)
        self.say(f"[bold]engine clock moved {CLOCK_JUMP_S // 3600} h ahead[/] (staged): soft "
                 f"deletes pass their {RETENTION_HOURS} h retention, stream rows their "
                 f"{STREAM_TTL_S}s ttl")

    # ------------------------------------------------------------------ jobs

    def table(self, name: str, kind: str) -> dict[str, Any]:
        """The parameters naming one sample table."""
        return {"namespace_id": self.ns, "table_name": name, "table_type": kind}

    async def phase(self, manager: Any, title: str,
                    jobs: Sequence[tuple[JobType, dict[str, Any], Expectation]]) -> None:
        """Submit one phase's jobs together, wait for each, and check it."""
        self.say(f"[bold magenta]▶ {title}[/]")
        ids = await manager.create_jobs([(jt, params) for jt, params, _ in jobs],
                                        max_retries=3)
        for job_id, (_, _, expectation) in zip(ids, jobs, strict=True):
            self.expect[job_id] = expectation
            self.order.append(job_id)
        for job_id in ids:
            job = await manager.wait_job(job_id, timeout_s=60)
            self.problems[job_id] = self._check(job, self.expect[job_id])
        self.refresh(manager)

    @staticmethod
    def _check(job: Job, expected: Expectation) -> str | None:
        """Checked as soon as the job's phase ends, before later phases change the tables."""
        if job.status is not expected.status:
            return f"expected {expected.status.value}"
        return expected.check() if expected.check is not None else None

    def refresh(self, manager: Any) -> None:
        """Redraw the live view (or print plain lines) from the store."""
        rows = sorted((JobRow.from_job(j) for j in manager.store.list_jobs(JobFilter())
                       if j.job_id in self.expect), key=lambda r: (r.created_at, r.job_id[3:]))
        if self.live is not None:
            self.board.update(rows)
            self.live.refresh()
        else:
            self.reporter.update(rows)

    async def watch(self, manager: Any) -> None:
        """Refresh the view every :data:`POLL_S` until cancelled."""
        while True:
            self.refresh(manager)
            await trio.sleep(POLL_S)  # the view's refresh period

    async def run_jobs(self, manager: Any) -> None:
        """Run every phase of jobs, staging the writes and the clock jump between."""
        e, ns = self.engine, self.ns
        fail_once = _FailOnce()
        e.faults.set("after_snapshot", fail_once)
        await self.phase(manager, "flush: hot rows → Parquet segments (one transient fault "
                                  "injected into the notes flush, to show a retry)", [
            (JobType.FLUSH, self.table("notes", "User"), Expectation(
                JobStatus.COMPLETED, lambda: self._no_hot("notes"), "no hot rows left")),
            (JobType.FLUSH, self.table("orders", "Shared"), Expectation(
                JobStatus.COMPLETED, lambda: self._no_hot("orders"), "no hot rows left")),
            (JobType.FLUSH, self.table("events", "Stream"), Expectation(
                JobStatus.COMPLETED, lambda: self._no_hot("events"), "no hot rows left")),
        ])
        e.faults.set("after_snapshot", None)
        self.more_writes()
        await self.phase(manager, "flush again: a second segment per table and user", [
            (JobType.FLUSH, self.table("notes", "User"), Expectation(
                JobStatus.COMPLETED, lambda: self._no_hot("notes"), "no hot rows left")),
            (JobType.FLUSH, self.table("orders", "Shared"), Expectation(
                JobStatus.COMPLETED, lambda: self._no_hot("orders"), "no hot rows left")),
        ])
        orders_before = e.scan(ns, "orders")
        notes_before = e.scan(ns, "notes")
        # Compaction first, on its own: a purge (retention, user cleanup) swapping a table's
        # segments while a compaction plans on them makes that compaction fail.
        await self.phase(manager, "compact: merge each owner's segments", [
            (JobType.COMPACT, self.table("orders", "Shared"), Expectation(
                JobStatus.COMPLETED, lambda: self._compacted("orders", orders_before),
                "one segment, same rows")),
            (JobType.COMPACT, self.table("notes", "User"), Expectation(
                JobStatus.COMPLETED, lambda: self._compacted("notes", notes_before),
                "one segment per user, same rows")),
        ])
        await self.phase(manager, "retention, stream eviction, user cleanup", [
            (JobType.RETENTION, {**self.table("orders", "Shared"),
                                 "retention_hours": RETENTION_HOURS}, Expectation(
                JobStatus.COMPLETED, lambda: self._purged("orders", self.facts["deleted_orders"]),
                "soft-deleted orders purged")),
            (JobType.STREAM_EVICTION, {**self.table("events", "Stream"),
                                       "ttl_seconds": STREAM_TTL_S, "batch_size": 250},
             Expectation(JobStatus.COMPLETED, lambda: self._empty("events"),
                         "every expired event gone")),
            (JobType.USER_CLEANUP, {"user_id": self.deleted_user, "username": "Dave",
                                    "cascade": True}, Expectation(
                JobStatus.COMPLETED, self._user_gone, "user, rows, ACLs, tokens gone")),
        ])
        await self.phase(manager, "backup", [
            (JobType.BACKUP, {**self.table("orders", "Shared"),
                              "backup_location": "demo-backups"}, Expectation(
                JobStatus.COMPLETED, self._archive_written, "archive written")),
        ])
        await self.phase(manager, "restore the backup into a new table", [
            (JobType.RESTORE, {"backup_location": f"demo-backups/{ns}/orders",
                               "target_namespace": ns, "target_table_name": "orders_restored"},
             Expectation(JobStatus.COMPLETED, self._restored_equal,
                         "scan(orders_restored) == scan(orders)")),
        ])
        await self.phase(manager, "cleanup: drop the scratch table; prune job history", [
            (JobType.CLEANUP, {"table_id": f"{ns}:scratch", "table_type": "Shared",
                               "operation": "drop_table"}, Expectation(
                JobStatus.COMPLETED, lambda: self._dropped("scratch"), "table gone")),
            (JobType.JOB_CLEANUP, {"older_than_days": 7}, Expectation(
                JobStatus.SKIPPED, None, "nothing older than 7 days yet")),
        ])
        self.facts["fault_fired"] = fail_once.fired

    # ------------------------------------------------------------------ checks

    def _no_hot(self, table: str) -> str | None:
        hot = self.engine.table_stats(self.ns, table).hot_rows
        return None if hot == 0 else f"{hot} hot rows left"

    def _compacted(self, table: str, before: list[dict[str, Any]]) -> str | None:
        segs = self.engine.segments(self.ns, table)
        owners = [s.user_id for s in segs]
        if len(owners) != len(set(owners)):
            return f"{len(segs)} segments remain for {len(set(owners))} owner(s)"
        if self.engine.scan(self.ns, table) != before:
            return "scan changed"
        self.facts[f"compacted_{table}"] = len(segs)
        return None

    def _purged(self, table: str, deleted: int) -> str | None:
        marks = [v for v in self.engine.versions(self.ns, table) if v.deleted]
        return None if not marks else f"{len(marks)} soft-deleted versions remain"

    def _empty(self, table: str) -> str | None:
        left = len(self.engine.scan(self.ns, table))
        return None if left == 0 else f"{left} rows remain"

    def _user_gone(self) -> str | None:
        e = self.engine
        gone = self.deleted_user
        if e.get_user(gone) is not None:
            return "user record remains"
        if e.scan(self.ns, "notes", user_id=gone):
            return "the user's notes remain"
        if e.acl_entries(gone) or e.tokens(gone):
            return "ACL entries or tokens remain"
        return None

    def _archive_written(self) -> str | None:
        folder = self.engine.backup_roots[0] / "demo-backups" / self.ns / "orders"
        archives = list(folder.glob("*.tar*"))
        return None if archives else f"no archive in {folder}"

    def _restored_equal(self) -> str | None:
        a = self.engine.scan(self.ns, "orders")
        b = self.engine.scan(self.ns, "orders_restored")
        self.facts["restored_rows"] = len(b)
        return None if a == b else f"restored {len(b)} rows, source has {len(a)}"

    def _dropped(self, table: str) -> str | None:
        return None if self.engine.table_info(self.ns, table) is None else "table still exists"

    # ------------------------------------------------------------------ verdict

    def outcomes(self, store: Any) -> list[Outcome]:
        """Each job as it ended, with what was expected and any problem."""
        out = []
        for job_id in self.order:
            job = store.get_job(JobId(job_id))
            out.append(Outcome(job, self.expect[job_id], self.problems.get(job_id, "not run")))
        return out

    def close(self) -> None:
        """Close the engine."""
        self.engine.close()


class _FailOnce:
    """A fault hook that raises one transient error in the first flush that reaches it (the
    notes flush: the one Flush actor runs jobs in creation order)."""

    def __init__(self) -> None:
        self.fired = 0
        self._lock = threading.Lock()

    def __call__(self) -> None:
        with self._lock:
            if self.fired:
                return
            self.fired += 1
        raise OSError("injected transient fault (demo): disk briefly unavailable")


def _fresh_namespace(engine: Any) -> str:
    taken = {t.namespace for t in engine.list_tables()}
    if "demo" not in taken:
        return "demo"
    n = 2
    while f"demo_{n}" in taken:
        n += 1
    return f"demo_{n}"


def _summary_line(o: Outcome) -> str:
    job = o.job
    mark = "[green]✓[/]" if o.problem is None else "[bold red]✗[/]"
    retries = f" after {job.retry_count} retr{'y' if job.retry_count == 1 else 'ies'}" \
        if job.retry_count else ""
    took = ""
    if job.started_at and job.finished_at:
        took = f" in {(job.finished_at - job.started_at).total_seconds() * 1000:.0f} ms"
    check = o.expected.describe
    verdict = f"check: {check} ✓" if o.problem is None else f"PROBLEM: {o.problem}"
    if o.problem is None and not check:
        verdict = "as expected"
    message = (job.message or "").replace("[", "\\[")
    return (f"{mark} {job.job_id} {job.job_type.value:<14} {job.status.value}{retries}{took}: "
            f"{message} — {verdict}")


def run_demo(data: str | None, *, console: Console, live: bool | None = None,
             rows: int = 4000, keep: bool = False) -> int:
    """Run the demo; returns the exit code (0 only if every job ended as expected).

    Args:
        data: the data directory; a fresh temporary one (removed afterwards unless ``keep``)
            when None.
        console: where to print.
        live: live progress bars (True), plain lines (False), or by whether ``console`` is a
            terminal (None).
        rows: about how many sample rows to write in all.
        keep: keep the temporary data directory.

    The log goes to ``DIR/demo.log`` at DEBUG, once the library's logs are on (the command
    turns them on; the library is quiet on import).

    Raises:
        CliError: ``data`` is a file, or cannot be made or written (a read-only file system).
        StoreLocked: a runtime serves ``data``; nothing is written into its engine.
    """
    temporary = data is None
    if data is None:
        root = Path(tempfile.mkdtemp(prefix="kalam-demo-"))
    else:
        # A file in its place, or a folder that cannot be written: one line, exit 2 or 1.
        root = DataDir(data).prepare(create=True, command="demo").root
    holder = DataDir(root).runtime_pid()
    if holder is not None:
        # Checked before the sample tables are written into someone else's engine.
        raise StoreLocked(str(DataDir(root).jobs), holder if holder > 0 else None)
    live_mode = console.is_terminal if live is None else live
    sink = logger.add(str(root / "demo.log"), level="DEBUG", enqueue=False)
    started = time.monotonic()
    try:
        console.print(f"[bold]kalam-actors demo[/] — data directory {root}", highlight=False)
        demo = Demo(root, console, live=live_mode, rows=rows)
        try:
            outcomes, all_rows = trio.run(_run, demo)
        except KalamError:
            raise  # the command reports it with its exit code (e.g. 5: store locked)
        except Exception as exc:
            logger.exception("demo failed")
            console.print(f"[bold red]demo FAILED[/]: {type(exc).__name__}: {exc} "
                          f"(log: {root / 'demo.log'})", highlight=False, markup=True)
            return EXIT_FAILED
        finally:
            demo.close()
        elapsed = time.monotonic() - started
        console.print(jobs_table(all_rows, title=f"system.jobs — {len(all_rows)} jobs",
                                 columns=table_columns(console.width)))
        for o in outcomes:
            # One line per job, however long: the terminal wraps it, and a pipe or a log
            # keeps it whole for grep.
            console.print(_summary_line(o), highlight=False, soft_wrap=True)
        bad = [o for o in outcomes if o.problem is not None]
        types = sorted({o.job.job_type.value for o in outcomes})
        if bad:
            console.print(f"[bold red]demo FAILED[/]: {len(bad)} of {len(outcomes)} jobs did "
                          f"not end as expected (log: {root / 'demo.log'})", highlight=False,
                          soft_wrap=True)
            return EXIT_FAILED
        counts: dict[str, int] = {}
        for o in outcomes:
            counts[o.job.status.value] = counts.get(o.job.status.value, 0) + 1
        tally = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        console.print(f"[bold green]demo OK[/]: {len(outcomes)} jobs of {len(types)} types "
                      f"ended as expected ({tally}) in {elapsed:.1f} s", highlight=False,
                      soft_wrap=True)
        return EXIT_OK
    finally:
        logger.remove(sink)
        if temporary and not keep:
            shutil.rmtree(root, ignore_errors=True)
        elif temporary:
            console.print(f"data kept in {root}", highlight=False)


async def _run(demo: Demo) -> tuple[list[Outcome], list[JobRow]]:
    from .manager import open_job_manager
    from .store import JobStore

    demo.populate()
    with JobStore(demo.data.jobs) as store:
        executors = runtime_executors(demo.engine, store)
        async with open_job_manager(
            demo.data.jobs, storage=demo.engine, executors=executors, max_concurrent=8,
            retry_policy=RetryPolicy(base_ms=200), shutdown_timeout_s=5.0,
        ) as manager:
            live = Live(demo.board, console=demo.console, auto_refresh=False,
                        transient=False, redirect_stdout=False, redirect_stderr=False) \
                if demo.live_mode else None
            try:
                if live is not None:
                    live.start()
                    demo.live = live
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(demo.watch, manager)
                    await demo.run_jobs(manager)
                    nursery.cancel_scope.cancel()
                demo.refresh(manager)
            finally:
                if live is not None:
                    live.stop()
                    demo.live = None
            outcomes = demo.outcomes(store)
            ids = set(demo.order)
            rows = sorted((r for r in store.system_jobs() if r.job_id in ids),
                          key=lambda r: (r.created_at, r.job_id[3:]))
    return outcomes, rows
