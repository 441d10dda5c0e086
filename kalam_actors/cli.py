"""The ``kalam-actors`` command: see, steer and run the jobs of a storage engine.

Every listing reads the ``system.jobs`` view (``JobStore.system_jobs()``), so it works from any
process, also while ``kalam-actors run`` owns the store, and on a read-only file system. The
``tables``, ``rows`` and ``users`` commands put sample data into the reference engine, so
that every job type can be tried from the shell.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import signal
import sys
import textwrap
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Final, NoReturn, cast

import lmdb
import orjson
from rich.console import Console
from rich.live import Live
from rich.table import Table

from . import __version__
from ._cli_common import (
    DATA_ENV,
    EXIT_CONFLICT,
    EXIT_FAILED,
    EXIT_LOCKED,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    DataDir,
    enable_logs,
    os_reason,
    runtime_executors,
)
from .errors import (
    CancelNotAllowed,
    IdempotentConflict,
    InvalidParams,
    InvalidTransition,
    JobNotFound,
    KalamError,
    RuntimeFailed,
    StoreLocked,
    UnknownJobType,
)
from .executor import JobExecutor
from .ids import JobId, JobType
from .live import (
    JobBoard,
    PlainReporter,
    job_detail_table,
    jobs_table,
    json_line,
    make_console,
    table_columns,
)
from .model import Job, JobFilter, JobRow, JobStatus

__all__ = [
    "EXIT_CONFLICT",
    "EXIT_FAILED",
    "EXIT_LOCKED",
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_USAGE",
    "DataDir",
    "main",
]

EPILOG: Final = f"""\
data directory (--data DIR, or ${DATA_ENV}):
  DIR/jobs      the job store (LMDB); DIR/jobs/runtime.lock names the running runtime's pid
  DIR/engine    the storage engine (hot rows in LMDB, Parquet segments)
  DIR/maintenance.json   optional per-table schedules for `run` (see `run --help`)
  Commands other than `demo` and `run --create` refuse a data directory that does not exist.
  `jobs list`, `jobs show`, `jobs watch` and `stats` only read: they work on a read-only
  file system.

exit codes:
  0  ok
  1  a job or the runtime failed (also: cancel refused, job already finished, the data
     directory cannot be written)
  2  bad usage or input (bad JSON, unknown type or status, malformed id, bad name, a missing
     data directory or a file in its place)
  3  conflict: an active job holds the idempotency key (its id is printed), or the table or
     user exists already
  4  not found (no job with that id, no such table or user)
  5  store locked: another runtime owns the job store

try it (two terminals):
  kalam-actors run --data ./data --create
  kalam-actors tables create app events --type Shared --data ./data
  kalam-actors tables fill app events --rows 1000 --data ./data
  kalam-actors submit Flush --data ./data --wait 10 \\
      --params '{{"namespace_id": "app", "table_name": "events", "table_type": "Shared"}}'
  kalam-actors jobs list --data ./data
  kalam-actors demo          (every job type on sample tables, in a temporary folder)
"""

SEE_ALSO: Final = "the data directory, exit codes and examples: kalam-actors --help"
JSON_HELP: Final = "print JSON (one object per line) instead of a table"


def exit_code_of(exc: BaseException) -> int:
    """The documented exit code for an error."""
    if isinstance(exc, CliError):
        return exc.code
    if isinstance(exc, IdempotentConflict):
        return EXIT_CONFLICT
    if isinstance(exc, JobNotFound):
        return EXIT_NOT_FOUND
    from .storage import TableExists, TableNotFound, UserExists, UserNotFound, WrongTableType

    if isinstance(exc, (TableNotFound, UserNotFound)):
        return EXIT_NOT_FOUND
    if isinstance(exc, (TableExists, UserExists)):
        return EXIT_CONFLICT
    if isinstance(exc, WrongTableType):
        return EXIT_USAGE
    if isinstance(exc, StoreLocked):
        return EXIT_LOCKED
    if isinstance(exc, (InvalidParams, UnknownJobType)):
        return EXIT_USAGE
    return EXIT_FAILED


# --------------------------------------------------------------------------- data dir


def _data_dir(args: argparse.Namespace) -> DataDir:
    value = args.data or os.environ.get(DATA_ENV)
    if not value:
        raise CliError(f"no data directory: pass --data DIR or set ${DATA_ENV}")
    return DataDir(value)


@dataclasses.dataclass(frozen=True)
class _BackupRoots:
    """What backup and restore validation reads of an engine: its allowed roots. The CLI
    checks submitted locations without opening the engine."""

    backup_roots: tuple[Path, ...]


def validators(data: DataDir | None = None) -> list[JobExecutor]:
    """Executors whose ``validate_params`` check jobs submitted from this process (no engine
    is opened; backup and restore locations are checked against the backup root the
    runtime's engine uses, ``<data>/engine/backups``)."""
    from .executors.job_cleanup import JobCleanupExecutor

    roots = None if data is None else _BackupRoots(((data.engine / "backups").resolve(),))
    found: list[JobExecutor] = []
    with contextlib.suppress(ImportError):
        from .executors import builtin_executors
        from .storage.interface import StorageEngine

        # validate_params reads only ``backup_roots`` of the engine it was given.
        found.extend(builtin_executors(cast(StorageEngine | None, roots)))
    found.append(JobCleanupExecutor(None))
    return found


@contextlib.contextmanager
def open_store(data: DataDir, *, validate: bool = False,
               writes: str | None = None) -> Iterator[Any]:
    """The job store of an existing data directory, for reading and submitting (``validate``:
    check new jobs with the built-in executors, which imports them). It opens read-only until
    its first write, so reading works on a read-only file system; a command that ``writes``
    (its name) is refused at once, in one line, where it cannot write."""
    from .store import JobStore

    data.require()
    if writes is not None:
        data.require_writable(writes, data.jobs, what="the job store")
    store = JobStore(data.jobs, executors=validators(data) if validate else [])
    try:
        yield store
    finally:
        store.close()


# --------------------------------------------------------------------------- output


def _out(args: argparse.Namespace) -> Console:
    console: Console = args._console
    return console


def _err(args: argparse.Namespace) -> Console:
    console: Console = args._err_console
    return console


def _print_line(args: argparse.Namespace, text: str) -> None:
    _out(args).print(text, markup=False, highlight=False, soft_wrap=True)


# --------------------------------------------------------------------------- jobs


def _statuses(values: Sequence[str] | None) -> list[JobStatus] | None:
    if not values:
        return None
    return [JobStatus.parse(part.strip()) for v in values for part in v.split(",") if part.strip()]


def _types(values: Sequence[str] | None) -> list[JobType] | None:
    if not values:
        return None
    return [JobType.parse(part.strip()) for v in values for part in v.split(",") if part.strip()]


def latest_rows(store: Any, *, limit: int | None, statuses: Sequence[JobStatus] | None = None,
                types: Sequence[JobType] | None = None, prefix: str | None = None
                ) -> list[JobRow]:
    """The newest ``limit`` rows of ``system.jobs`` matching the filters, newest first.

    Ids sort by type prefix first and by creation time within a type, so one range read
    gives "latest" per type only: this reads each type's newest ``limit`` and merges them by
    the time-ordered part of the id.
    """
    rows: list[JobRow] = []
    for job_type in types or list(JobType):
        rows.extend(store.system_jobs(JobFilter(
            status=statuses, job_type=job_type, job_id_prefix=prefix, limit=limit,
            newest_first=True)))
    rows.sort(key=lambda r: r.job_id[3:], reverse=True)
    return rows[:limit] if limit is not None else rows


def _read_rows(store: Any, args: argparse.Namespace) -> list[JobRow]:
    limit = args.limit if args.limit and args.limit > 0 else None
    rows = latest_rows(store, limit=limit, statuses=_statuses(args.status),
                       types=_types(args.type), prefix=args.prefix)
    if not args.newest_first:
        rows.reverse()  # creation order
    return rows


def cmd_jobs_list(args: argparse.Namespace) -> int:
    """``jobs list``: the latest jobs as a table that fits the terminal, or JSON lines."""
    with open_store(_data_dir(args)) as store:
        rows = _read_rows(store, args)
    if args.json:
        for row in rows:
            _print_line(args, json_line(row))
        return EXIT_OK
    if not rows:
        _err(args).print("no jobs match", highlight=False)
        return EXIT_OK
    console = _out(args)
    console.print(jobs_table(rows, title=f"system.jobs ({len(rows)} rows)",
                             columns=table_columns(console.width)))
    return EXIT_OK


def _get_row(store: Any, job_id: str) -> JobRow:
    job = store.get_job(JobId.parse(job_id))
    if job is None:
        raise JobNotFound(job_id)
    return JobRow.from_job(job)


def cmd_jobs_show(args: argparse.Namespace) -> int:
    """``jobs show ID``: one job, every column in full (or one JSON object)."""
    with open_store(_data_dir(args)) as store:
        row = _get_row(store, args.job_id)
    if args.json:
        _print_line(args, json_line(row))
    else:
        _out(args).print(job_detail_table(row))
    return EXIT_OK


def cmd_jobs_cancel(args: argparse.Namespace) -> int:
    """``jobs cancel ID``: cancel a job; a running one's verdict comes from the runtime."""
    with open_store(_data_dir(args), validate=True, writes="jobs cancel") as store:
        job_id = JobId.parse(args.job_id)
        job = store.cancel_job(job_id, wait_s=args.wait)
        row = JobRow.from_job(job)
    if args.json:
        _print_line(args, json_line(row))
    elif row.status == "Cancelled":
        _print_line(args, f"{row.job_id} Cancelled")
    else:
        _print_line(args, f"{row.job_id} cancel accepted; it stops at its next safe point "
                          f"(now {row.status})")
    return EXIT_OK


def _watch_rows(store: Any, limit: int) -> list[JobRow]:
    """The latest ``limit`` jobs plus every active one, in creation order."""
    latest = latest_rows(store, limit=limit)
    seen = {r.job_id for r in latest}
    active = [r for r in latest_rows(store, limit=500,
                                     statuses=[s for s in JobStatus if s.is_active])
              if r.job_id not in seen]
    return sorted(latest + active, key=lambda r: r.job_id[3:])


def cmd_jobs_watch(args: argparse.Namespace) -> int:
    """``jobs watch``: a live table (or plain lines) of the latest and active jobs."""
    console = _out(args)
    live_mode = args.view == "live" or (args.view == "auto" and console.is_terminal)
    board = JobBoard(table_limit=args.limit, title="system.jobs (Ctrl-C to stop)",
                     bars_for_finished=False)
    reporter = PlainReporter(console)
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    with open_store(_data_dir(args)) as store:
        live = Live(board, console=console, auto_refresh=False, transient=False) \
            if live_mode else contextlib.nullcontext()
        try:
            with live:
                while True:
                    rows = _watch_rows(store, args.limit)
                    if live_mode:
                        board.update(rows)
                        assert isinstance(live, Live)
                        live.refresh()
                    else:
                        reporter.update(rows)
                    if args.until_idle and not any(
                        JobStatus.parse(r.status).is_active for r in rows
                    ):
                        return EXIT_OK
                    if deadline is not None and time.monotonic() >= deadline:
                        return EXIT_OK
                    time.sleep(args.interval)  # a refresh period, not a wait for an event
        except KeyboardInterrupt:
            return EXIT_OK


def cmd_web(args: argparse.Namespace) -> int:
    """Serve the web pages over the store of the data directory until interrupted."""
    data = _data_dir(args).require()
    try:
        from .web import WebConfigError, serve
    except ImportError as exc:
        raise CliError(f"the web needs its extra: pip install 'kalam-actors[web]' ({exc})",
                       EXIT_FAILED) from None
    try:
        serve(data.root, host=args.host, port=args.port, token=args.token,
              log_file=args.log_file)
    except WebConfigError as exc:
        raise CliError(str(exc)) from None
    return EXIT_OK


def cmd_stats(args: argparse.Namespace) -> int:
    """``stats``: job counts by type and status, and whether a runtime serves the store."""
    data = _data_dir(args)
    with open_store(data) as store:
        counts = store.counts()
    pid = data.runtime_pid()
    by_status = {s.value: 0 for s in JobStatus}
    by_type = {t.value: 0 for t in JobType}
    grid: dict[str, dict[str, int]] = {t.value: {} for t in JobType}
    for (status, job_type), n in counts.items():
        by_status[status.value] += n
        by_type[job_type.value] += n
        grid[job_type.value][status.value] = n
    if args.json:
        _print_line(args, orjson.dumps({
            "runtime_pid": pid,
            "total": sum(by_status.values()),
            "by_status": by_status,
            "by_type": by_type,
            "by_type_and_status": {t: c for t, c in grid.items() if c},
        }).decode())
        return EXIT_OK
    console = _out(args)
    # Every status has a column where there is room; a narrow terminal gets the statuses that
    # have jobs (up to the five that fit in 80 columns), so no header is cut.
    statuses = [s for s in JobStatus
                if console.width >= _STATS_FULL_WIDTH or by_status[s.value]]
    statuses = statuses[: max(1, (console.width - 26) // 11)]
    table = Table(title=f"jobs in {data.jobs}", title_justify="left", header_style="bold")
    table.add_column("job_type", no_wrap=True)
    for status in statuses:
        table.add_column(status.value, justify="right", no_wrap=True)
    table.add_column("total", justify="right", style="bold", no_wrap=True)
    for job_type in JobType:
        cells = grid[job_type.value]
        table.add_row(job_type.value, *(str(cells.get(s.value, 0) or "") for s in statuses),
                      str(by_type[job_type.value]))
    table.add_row("total", *(str(by_status[s.value]) for s in statuses),
                  str(sum(by_status.values())), style="bold")
    console.print(table)
    left_out = [f"{s.value} {by_status[s.value]}" for s in JobStatus
                if s not in statuses and by_status[s.value]]
    if left_out:
        console.print(f"also: {', '.join(left_out)} (a wider terminal shows them by type)",
                      highlight=False)
    if pid is None:
        state = "not running"
    else:
        state = f"running (pid {pid})" if pid > 0 else "running (pid unknown)"
    console.print(f"runtime: {state}", highlight=False)
    return EXIT_OK


_STATS_FULL_WIDTH: Final = 112
"""From this width ``stats`` has a column for every status."""


# --------------------------------------------------------------------------- submit


def _params_text(value: str) -> str:
    if value == "-":
        try:
            return sys.stdin.read()
        except UnicodeDecodeError as exc:
            raise CliError(f"parameters on stdin are not UTF-8 text: {exc}") from exc
    if value.startswith("@"):
        try:
            return Path(value[1:]).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CliError(f"cannot read parameters from {value[1:]}: {exc}") from exc
    return value


def _no_runtime_hint(data: DataDir) -> str:
    return (f"no runtime serves {data.root}: the job waits as New until one starts; start one "
            f"with `kalam-actors run --data {data.root}` (in another terminal)")


def cmd_submit(args: argparse.Namespace) -> int:
    """``submit TYPE --params JSON``: store a New job, print its id; ``--wait`` for its end."""
    data = _data_dir(args)
    with open_store(data, validate=True, writes="submit") as store:
        try:
            job_id = store.create_job(
                args.job_type,
                _params_text(args.params),
                idempotency_key=args.key,
                max_retries=args.max_retries,
                timeout_s=args.timeout,
            )
        except IdempotentConflict as exc:
            _print_line(args, exc.existing_job_id)
            _err(args).print(f"kalam-actors: conflict: {exc}", markup=False, highlight=False,
                             soft_wrap=True)
            return EXIT_CONFLICT
        _print_line(args, job_id)
        if data.runtime_pid() is None:
            _err(args).print(f"kalam-actors: note: {_no_runtime_hint(data)}", markup=False,
                             highlight=False, soft_wrap=True)
        if args.wait is None:
            return EXIT_OK
        deadline = time.monotonic() + args.wait
        while True:
            job = store.get_job(job_id)
            assert job is not None
            if job.status.is_terminal:
                break
            if time.monotonic() >= deadline:
                raise CliError(_still_waiting(data, job, args.wait), EXIT_FAILED)
            time.sleep(0.05)  # polling another process's progress
    _err(args).print(f"[{job_id}] {job.status.value}: {job.message or ''}", markup=False,
                     highlight=False, soft_wrap=True)
    hint = _missing_table_hint(job, data)
    if hint:
        _err(args).print(hint, markup=False, highlight=False, soft_wrap=True)
    return EXIT_OK if job.status in (JobStatus.COMPLETED, JobStatus.SKIPPED) else EXIT_FAILED


def _missing_table_hint(job: Job, data: DataDir) -> str | None:
    """For a job that found no table: how to make one from the shell."""
    params = job.params
    if job.status is not JobStatus.SKIPPED or "does not exist" not in (job.message or ""):
        return None
    if not {"namespace_id", "table_name", "table_type"} <= set(params):
        return None
    return (f"make it with: kalam-actors tables create {params['namespace_id']} "
            f"{params['table_name']} --type {params['table_type']} --data {data.root}")


def _still_waiting(data: DataDir, job: Job, waited: float) -> str:
    """Why ``submit --wait`` gave up on a job that has not ended, and what to do."""
    text = f"[{job.job_id}] still {job.status.value} after {waited:g} s"
    pid = data.runtime_pid()
    if job.status is JobStatus.NEW and pid is None:
        return f"{text}: {_no_runtime_hint(data)}"
    if job.status is JobStatus.NEW:
        holder = f"pid {pid}" if pid and pid > 0 else "another process"
        return (f"{text}: the runtime ({holder}) has not taken it yet (is it busy? see "
                f"`kalam-actors stats --data {data.root}`)")
    return (f"{text}; it goes on in the runtime: `kalam-actors jobs watch --data {data.root}` "
            f"follows it")


# --------------------------------------------------------------------------- tables

@contextlib.contextmanager
def open_engine(data: DataDir, *, writes: str | None = None) -> Iterator[Any]:
    """The storage engine of an existing data directory (``DIR/engine``, made on the first
    write). A command that ``writes`` (its name) is refused at once, in one line, where it
    cannot write; one that only reads gets None when there is no engine yet."""
    from .storage import Engine

    data.require_dir()
    data.check_folder(data.engine, "the storage engine")
    if writes is not None:
        data.require_writable(writes, data.root, data.engine, what="the storage engine")
    elif not (data.engine / "engine.lmdb").is_dir():
        yield None
        return
    engine = _open_engine_at(Engine, data)
    try:
        yield engine
    finally:
        engine.close()


def _names(args: argparse.Namespace) -> tuple[str, str]:
    """The namespace and table of a command, checked by the engine's own rule before anything
    is opened: a name is an identifier, so no path can hide in one."""
    from .storage.names import check_name

    return check_name(args.namespace, "namespace"), check_name(args.table, "table name")


def _user(value: str | None) -> str | None:
    from .storage.names import check_name

    return None if value is None else check_name(value, "user id")


def _user_id(value: str) -> str:
    from .storage.names import check_name

    return check_name(value, "user id")


def _require_table(engine: Any, namespace: str, table: str) -> Any:
    from .storage import TableNotFound

    info = None if engine is None else engine.table_info(namespace, table)
    if info is None:
        raise TableNotFound(f"{namespace}:{table}")
    return info


def _table_json(info: Any, stats: Any) -> dict[str, Any]:
    return {"namespace": info.namespace, "table": info.name,
            "table_type": info.table_type.value, "primary_key": info.primary_key,
            "ttl_seconds": info.ttl_seconds, "options": info.options, **stats.to_dict()}


def cmd_tables_list(args: argparse.Namespace) -> int:
    """``tables list``: every table of the engine with its hot rows and segments."""
    from .storage.names import check_name

    namespace = None if args.namespace is None else check_name(args.namespace, "namespace")
    with open_engine(_data_dir(args)) as engine:
        tables = [] if engine is None else [(info, engine.table_stats(info.namespace, info.name))
                                            for info in engine.list_tables(namespace)]
    if args.json:
        for info, stats in tables:
            _print_line(args, orjson.dumps(_table_json(info, stats)).decode())
        return EXIT_OK
    if not tables:
        _err(args).print("no tables (make one with `kalam-actors tables create NS TABLE "
                         "--type Shared`)", markup=False, highlight=False, soft_wrap=True)
        return EXIT_OK
    table = Table(title=f"tables ({len(tables)})", title_justify="left", header_style="bold",
                  pad_edge=False, box=None)
    for column in ("table", "type", "pk", "ttl_s", "hot_rows", "segments", "cold_rows"):
        right = column in ("ttl_s", "hot_rows", "segments", "cold_rows")
        table.add_column(column, justify="right" if right else "left",
                         no_wrap=column != "table", overflow="fold")
    for info, stats in tables:
        table.add_row(info.table_id, info.table_type.value, info.primary_key,
                      "" if info.ttl_seconds is None else str(info.ttl_seconds),
                      str(stats.hot_rows), str(stats.segments), str(stats.cold_rows))
    _out(args).print(table)
    return EXIT_OK


def _params_hint(info: Any) -> str:
    return orjson.dumps({"namespace_id": info.namespace, "table_name": info.name,
                         "table_type": info.table_type.value}).decode()


def cmd_tables_create(args: argparse.Namespace) -> int:
    """``tables create NS TABLE --type T``: create a table (names checked first)."""
    from .storage import check_table_spec

    options = None
    if args.options is not None:
        try:
            options = orjson.loads(_params_text(args.options))
        except orjson.JSONDecodeError as exc:
            raise CliError(f"--options is not valid JSON: {exc}") from exc
    # The engine's own check, before the engine is opened (or made): nothing is written for
    # a bad name, type, key, ttl or options.
    spec = check_table_spec(args.namespace, args.table, args.type, primary_key=args.pk,
                            ttl_seconds=args.ttl, options=options)
    data = _data_dir(args)
    with open_engine(data, writes="tables create") as engine:
        info = engine.create_table(spec.namespace, spec.name, spec.table_type,
                                   primary_key=spec.primary_key, ttl_seconds=spec.ttl_seconds,
                                   options=spec.options)
    _print_line(args, f"created {info.table_type.value} table {info.table_id}")
    user = " --user u1" if info.table_type.value == "User" else ""
    _err(args).print(
        f"next: kalam-actors tables fill {info.namespace} {info.name} --rows 100{user} "
        f"--data {data.root}", markup=False, highlight=False, soft_wrap=True)
    return EXIT_OK


def cmd_tables_drop(args: argparse.Namespace) -> int:
    """``tables drop NS TABLE``: drop a table, its rows and its files, now."""
    namespace, name = _names(args)
    with open_engine(_data_dir(args), writes="tables drop") as engine:
        _require_table(engine, namespace, name)
        result = engine.drop_table_data(namespace, name, keep_metadata=False)
    _print_line(args, f"dropped table {namespace}:{name} ({result.hot_rows} hot rows, "
                      f"{result.files} segment files)")
    return EXIT_OK


def _sample_rows(info: Any, first: int, count: int) -> Iterator[dict[str, Any]]:
    for i in range(first, first + count):
        yield {info.primary_key: i, "name": f"row {i}", "value": (i * 7919) % 1000}


def cmd_tables_fill(args: argparse.Namespace) -> int:
    """``tables fill NS TABLE --rows N``: write sample rows (per ``--user`` in User tables)."""
    namespace, name = _names(args)
    users = [_user_id(u) for u in args.user or []]
    data = _data_dir(args)
    with open_engine(data, writes="tables fill") as engine:
        info = _require_table(engine, namespace, name)
        if info.table_type.value == "User" and not users:
            raise CliError(f"{info.table_id} is a User table: its rows belong to users; pass "
                           f"--user ID (repeat for several users)")
        if info.table_type.value != "User" and users:
            raise CliError(f"{info.table_id} is a {info.table_type.value} table: --user "
                           f"applies to User tables only")
        written = 0
        owners: list[str | None] = list(users) or [None]
        for owner in owners:
            for start in range(args.start, args.start + args.rows, _FILL_BATCH):
                count = min(_FILL_BATCH, args.start + args.rows - start)
                written += engine.insert_many(namespace, name,
                                              _sample_rows(info, start, count), user_id=owner)
        stats = engine.table_stats(namespace, name)
    per_user = f" for {len(users)} user(s)" if users else ""
    _print_line(args, f"wrote {written} rows into {info.table_id}{per_user}; it holds "
                      f"{stats.hot_rows} hot rows")
    _err(args).print(f"next: kalam-actors submit Flush --params '{_params_hint(info)}' "
                     f"--data {data.root}", markup=False, highlight=False, soft_wrap=True)
    return EXIT_OK


_FILL_BATCH: Final = 10_000


def _pk(text: str) -> int | str:
    """A primary key from the command line: a whole number if it reads as one."""
    stripped = text.strip()
    if stripped.lstrip("-").isdigit():
        return int(stripped)
    return text


def cmd_rows_put(args: argparse.Namespace) -> int:
    """``rows put NS TABLE JSON``: write a row or an array of rows."""
    namespace, name = _names(args)
    user = _user(args.user)
    try:
        value = orjson.loads(_params_text(args.rows))
    except orjson.JSONDecodeError as exc:
        raise CliError(f"rows are not valid JSON: {exc}") from exc
    rows = value if isinstance(value, list) else [value]
    if not rows or not all(isinstance(r, dict) for r in rows):
        raise CliError("rows must be a JSON object or a non-empty array of objects")
    with open_engine(_data_dir(args), writes="rows put") as engine:
        _require_table(engine, namespace, name)
        written = engine.insert_many(namespace, name, rows, user_id=user)
    _print_line(args, f"wrote {written} row(s) into {namespace}:{name}")
    return EXIT_OK


def cmd_rows_delete(args: argparse.Namespace) -> int:
    """``rows delete NS TABLE PK...``: soft-delete rows by primary key."""
    namespace, name = _names(args)
    user = _user(args.user)
    with open_engine(_data_dir(args), writes="rows delete") as engine:
        _require_table(engine, namespace, name)
        deleted = sum(bool(engine.delete(namespace, name, _pk(pk), user_id=user))
                      for pk in args.pk)
    missing = len(args.pk) - deleted
    note = f"; {missing} had no live row" if missing else ""
    _print_line(args, f"soft-deleted {deleted} row(s) of {namespace}:{name}{note} (a "
                      f"Retention job purges them)")
    return EXIT_OK


def cmd_rows_list(args: argparse.Namespace) -> int:
    """``rows list NS TABLE``: the live rows, one JSON object a line."""
    namespace, name = _names(args)
    user = _user(args.user)
    with open_engine(_data_dir(args)) as engine:
        _require_table(engine, namespace, name)
        rows = engine.scan(namespace, name, user_id=user)
    shown = rows[: args.limit] if args.limit else rows
    for row in shown:
        _print_line(args, orjson.dumps(row).decode())
    if len(shown) < len(rows):
        _err(args).print(f"({len(rows) - len(shown)} more; --limit 0 for all)", markup=False,
                         highlight=False)
    return EXIT_OK


def cmd_users_create(args: argparse.Namespace) -> int:
    """``users create ID NAME``: create a user."""
    user_id = _user_id(args.user_id)
    with open_engine(_data_dir(args), writes="users create") as engine:
        user = engine.create_user(user_id, args.username)
    _print_line(args, f"created user {user.user_id} ({user.username})")
    return EXIT_OK


def cmd_users_delete(args: argparse.Namespace) -> int:
    """``users delete ID``: soft-delete a user (UserCleanup removes it)."""
    user_id = _user_id(args.user_id)
    data = _data_dir(args)
    with open_engine(data, writes="users delete") as engine:
        user = engine.delete_user(user_id)
    params = orjson.dumps({"user_id": user.user_id, "username": user.username,
                           "cascade": True}).decode()
    _print_line(args, f"soft-deleted user {user.user_id} ({user.username})")
    _err(args).print(f"next: kalam-actors submit UserCleanup --params '{params}' --data "
                     f"{data.root}", markup=False, highlight=False, soft_wrap=True)
    return EXIT_OK


# --------------------------------------------------------------------------- run


def cmd_run(args: argparse.Namespace) -> int:
    """``run``: serve the data directory until SIGINT/SIGTERM (see ``run --help``)."""
    import trio

    from .maintenance import MaintenancePolicy, maintenance_schedules

    data = _data_dir(args).prepare(create=args.create, command="run")
    policy = MaintenancePolicy.load(
        data.policy_file if data.policy_file.exists() else None,
        flush_row_limit=args.flush_row_limit,
        flush_interval_s=args.flush_interval,
        eviction_interval_s=args.eviction_interval,
        history_retention_days=args.history_retention_days,
    )
    err = _err(args)

    async def serve() -> int:
        from .manager import open_job_manager
        from .storage import Engine
        from .store import JobStore

        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            engine = _open_engine_at(Engine, data)
            try:
                with JobStore(data.jobs) as store:
                    executors = runtime_executors(engine, store, args.plugin)
                    async with open_job_manager(
                        data.jobs,
                        storage=engine,
                        executors=executors,
                        max_concurrent=args.max_concurrent,
                        poll_interval_s=args.poll_interval,
                        shutdown_timeout_s=args.shutdown_timeout,
                        schedules=maintenance_schedules(engine, policy, store),
                    ) as manager:
                        _print_line(args, f"kalam-actors run: ready (pid {os.getpid()}, "
                                          f"data {data.root})")
                        sys.stdout.flush()
                        async for signum in signals:
                            name = signal.Signals(signum).name
                            running = manager.statistics().in_flight
                            err.print(
                                f"{name}: stopping; {running} running job(s) get up to "
                                f"{args.shutdown_timeout:g} s to finish", highlight=False)
                            break
                    stats = manager.statistics()
            finally:
                engine.close()
        left = stats.by_status.get(JobStatus.RUNNING, 0)
        note = f"; {left} job(s) left Running, recovered at next start" if left else ""
        _print_line(args, f"kalam-actors run: stopped{note}")
        return EXIT_OK

    try:
        return trio.run(serve)
    except RuntimeFailed as exc:
        raise CliError(f"runtime failed: {exc}", EXIT_FAILED) from exc


def _open_engine_at(engine_class: Any, data: DataDir) -> Any:
    """``Engine.open`` on the data directory's engine, its failures as one line."""
    try:
        return engine_class.open(data.engine)
    except (OSError, lmdb.Error) as exc:
        reason = os_reason(exc) if isinstance(exc, OSError) else str(exc)
        raise CliError(f"cannot open the storage engine at {data.engine}: {reason}",
                       EXIT_FAILED) from exc


# --------------------------------------------------------------------------- demo


def cmd_demo(args: argparse.Namespace) -> int:
    """``demo``: every job type on sample tables, with a live view (see :mod:`.demo`)."""
    from .demo import run_demo

    console = _out(args)
    live = {"auto": None, "live": True, "plain": False}[args.view]
    return run_demo(args.data, console=console, live=live, rows=args.rows, keep=args.keep)


# --------------------------------------------------------------------------- parser


def _wrap(*paragraphs: str, width: int = 88) -> str:
    """Paragraphs filled to ``width``; lines starting with two spaces are kept as they are
    (examples). RawDescriptionHelpFormatter keeps the result as written."""
    out = []
    for paragraph in paragraphs:
        if paragraph.startswith("  "):
            out.append(paragraph)
        else:
            out.append(textwrap.fill(paragraph, width))
    return "\n\n".join(out)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0: {text!r}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0: {text!r}")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0: {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``kalam-actors`` (its ``--help`` documents the exit codes)."""
    fmt = argparse.RawDescriptionHelpFormatter
    parser = _Parser(
        prog="kalam-actors",
        description="See, steer and run the maintenance jobs of a storage engine.",
        epilog=EPILOG,
        formatter_class=fmt,
    )
    parser.add_argument("--version", action="version", version=f"kalam-actors {__version__}")
    data = _Parser(add_help=False)
    data.add_argument("--data", metavar="DIR", default=argparse.SUPPRESS,
                      help=f"the data directory (default: ${DATA_ENV})")
    parser.add_argument("--data", metavar="DIR", default=None,
                        help=f"the data directory (default: ${DATA_ENV})")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    demo = sub.add_parser(
        "demo", parents=[data], formatter_class=fmt, epilog=SEE_ALSO,
        help="run all eight job types on sample tables, with a live view",
        description=_wrap(
            "Open an engine and a job store in DIR (a fresh temporary folder by default, "
            "removed afterwards), create sample tables of each type, then run Flush, Compact, "
            "Retention, StreamEviction, UserCleanup, Backup, Restore, Cleanup and JobCleanup "
            "jobs through the runtime with a live view, check what each did, and print the "
            "jobs table and one line per job. Exit 0 only if every job ended as expected.",
            "Staged, and said so as it happens: the engine's clock jumps two hours ahead "
            "(so soft deletes and stream rows age), and one transient fault is injected into "
            "the first flush (so a retry is seen). The log goes to DIR/demo.log."))
    demo.add_argument("--rows", type=_count, default=4000, metavar="N",
                      help="sample rows in all (default 4000)")
    demo.add_argument("--view", choices=("auto", "live", "plain"), default="auto",
                      help="live progress bars, or plain lines (auto: live on a terminal)")
    demo.add_argument("--keep", action="store_true",
                      help="keep the temporary data directory (it is printed)")
    demo.set_defaults(func=cmd_demo)

    run = sub.add_parser(
        "run", parents=[data], formatter_class=fmt, epilog=SEE_ALSO,
        help="run the job runtime on a data directory until SIGINT/SIGTERM",
        description=_wrap(
            "Run the runtime: execute submitted jobs and the maintenance schedules (flush by "
            "row limit or interval, stream eviction, job-history pruning). On SIGINT/SIGTERM "
            "it stops taking work, lets running jobs finish for up to --shutdown-timeout "
            "seconds, cancels the cancellable rest and exits 0; what is left is recovered on "
            "the next start. Prints a 'ready' line once serving; logs go to stderr.",
            "Schedules per table come from the table's options on the engine "
            '(Engine.create_table(..., options={"flush_row_limit": 10000, '
            '"flush_interval_s": 60, "eviction_interval_s": 30})), then from '
            "DIR/maintenance.json, e.g.",
            '  {"history_retention_days": 7,\n'
            '   "tables": {"app:events": {"flush_row_limit": 10000, "eviction_interval_s": 30}}}',
            "then from the flags below, which set the defaults for every table."))
    run.add_argument("--create", action="store_true", help="create DIR if it does not exist")
    run.add_argument("--shutdown-timeout", type=_non_negative_float, default=5.0, metavar="S",
                     help="seconds running jobs get to finish on shutdown (default 5)")
    run.add_argument("--max-concurrent", type=int, default=10, metavar="N",
                     help="jobs running at once (default 10)")
    run.add_argument("--poll-interval", type=_positive_float, default=0.25, metavar="S",
                     help="how often to look for jobs submitted by other processes (default "
                          "0.25)")
    run.add_argument("--flush-row-limit", type=int, default=None, metavar="N",
                     help="flush a table when it holds N hot rows (default: off)")
    run.add_argument("--flush-interval", type=_positive_float, default=None, metavar="S",
                     help="flush a table with hot rows every S seconds (default: off)")
    run.add_argument("--eviction-interval", type=_positive_float, default=None, metavar="S",
                     help="evict expired rows of stream tables with a ttl every S seconds "
                          "(default 60)")
    run.add_argument("--history-retention-days", type=_non_negative_float, default=None,
                     metavar="D", help="prune terminal jobs older than D days (default 7)")
    run.add_argument("--plugin", action="append", default=[], metavar="MODULE:CALLABLE",
                     help="extra executors: CALLABLE(engine) returns executors that replace "
                          "the built-in ones of their type (for tests and extensions)")
    run.set_defaults(func=cmd_run)

    submit = sub.add_parser(
        "submit", parents=[data], formatter_class=fmt, epilog=SEE_ALSO,
        help="submit a job and print its id",
        description=_wrap(
            "Submit a job to the store (a running runtime picks it up within its poll "
            "interval). Prints the job id; on an idempotency conflict prints the active job's "
            "id and exits 3."))
    submit.add_argument("job_type", metavar="TYPE",
                        help="Flush, Cleanup, Retention, StreamEviction, UserCleanup, Compact, "
                             "Backup, Restore, JobCleanup (or the prefix: FL, CL, …)")
    submit.add_argument("--params", required=True, metavar="JSON",
                        help="the parameters: a JSON object, @FILE, or - for stdin")
    submit.add_argument("--key", default=None, metavar="K", help="idempotency key")
    submit.add_argument("--max-retries", type=int, default=3, metavar="N",
                        help="retries after the first attempt (default 3)")
    submit.add_argument("--timeout", type=_positive_float, default=None, metavar="S",
                        help="fail an attempt running longer than S seconds")
    submit.add_argument("--wait", type=_positive_float, default=None, metavar="S",
                        help="wait up to S seconds for the job to end; exit 0 if it Completed "
                             "or was Skipped, 1 otherwise")
    submit.set_defaults(func=cmd_submit)

    jobs = sub.add_parser("jobs", formatter_class=fmt, epilog=SEE_ALSO,
                          help="list, show, cancel and watch jobs")
    jobs_sub = jobs.add_subparsers(dest="jobs_command", metavar="ACTION", parser_class=_Parser)
    jobs_sub.required = True

    filters = _Parser(add_help=False)
    filters.add_argument("--status", action="append", metavar="S",
                         help="only these statuses (repeat or comma-separate)")
    filters.add_argument("--type", action="append", metavar="T",
                         help="only these job types (repeat or comma-separate)")
    filters.add_argument("--prefix", default=None, metavar="P", help="job ids starting with P")
    filters.add_argument("--limit", type=_count, default=100, metavar="N",
                         help="the latest N jobs (default 100; 0 for all)")
    filters.add_argument("--newest-first", action="store_true", help="newest job first")

    jl = jobs_sub.add_parser("list", parents=[data, filters], formatter_class=fmt,
                             help="the system.jobs view as a table (or JSON lines)",
                             epilog=SEE_ALSO)
    jl.add_argument("--json", action="store_true",
                    help="one JSON object per job with the system.jobs columns (parameters "
                         "and progress as objects)")
    jl.set_defaults(func=cmd_jobs_list)

    js = jobs_sub.add_parser("show", parents=[data], help="one job, every column in full",
                             formatter_class=fmt, epilog=SEE_ALSO)
    js.add_argument("job_id", metavar="ID")
    js.add_argument("--json", action="store_true",
                    help="the job as one JSON object with the system.jobs columns")
    js.set_defaults(func=cmd_jobs_show)

    jc = jobs_sub.add_parser("cancel", parents=[data], help="cancel a job",
                             formatter_class=fmt, epilog=SEE_ALSO,
                             description=_wrap(
                                 "Cancel a job. New, Queued and Retrying jobs end Cancelled at "
                                 "once; for a Running job the runtime asks its executor and "
                                 "this waits for the verdict (exit 1 if refused)."))
    jc.add_argument("job_id", metavar="ID")
    jc.add_argument("--wait", type=_positive_float, default=10.0, metavar="S",
                    help="how long to wait for a running job's verdict (default 10)")
    jc.add_argument("--json", action="store_true",
                    help="the job after the cancel as one JSON object")
    jc.set_defaults(func=cmd_jobs_cancel)

    jw = jobs_sub.add_parser("watch", parents=[data], help="a live table that refreshes",
                             formatter_class=fmt, epilog=SEE_ALSO)
    jw.add_argument("--interval", type=_positive_float, default=0.5, metavar="S",
                    help="refresh period (default 0.5 s)")
    jw.add_argument("--limit", type=_count, default=20, metavar="N",
                    help="show the latest N jobs and every active one (default 20)")
    jw.add_argument("--view", choices=("auto", "live", "plain"), default="auto",
                    help="a live table, or plain lines (auto: live on a terminal)")
    jw.add_argument("--until-idle", action="store_true",
                    help="exit once no job is New, Queued, Running or Retrying")
    jw.add_argument("--timeout", type=_positive_float, default=None, metavar="S",
                    help="exit after S seconds")
    jw.set_defaults(func=cmd_jobs_watch)

    st = sub.add_parser("stats", parents=[data], help="job counts by type and status",
                        formatter_class=fmt, epilog=SEE_ALSO)
    st.add_argument("--json", action="store_true",
                    help="one JSON object: runtime_pid, total, by_status, by_type, "
                         "by_type_and_status")
    st.set_defaults(func=cmd_stats)
    web = sub.add_parser(
        "web", parents=[data], formatter_class=fmt, epilog=SEE_ALSO,
        help="serve the job pages and /metrics to a browser (needs kalam-actors[web])")
    web.add_argument("--host", default="127.0.0.1",
                     help="address to bind (default 127.0.0.1; another needs --token)")
    web.add_argument("--port", type=int, default=8765, help="port to bind (default 8765)")
    web.add_argument("--token", default=None,
                     help="allow actions (cancel, retry, delete) to whoever presents it")
    web.add_argument("--log-file", default=None,
                     help="the runtime's log file: a job's page shows its lines")
    web.set_defaults(func=cmd_web)
    _add_engine_commands(sub, data, fmt)
    return parser


def _add_engine_commands(sub: Any, data: argparse.ArgumentParser, fmt: Any) -> None:
    """``tables``, ``rows`` and ``users``: sample data in the reference engine, to try jobs."""
    names = _Parser(add_help=False)
    names.add_argument("namespace", metavar="NS", help="the namespace (an identifier)")
    names.add_argument("table", metavar="TABLE", help="the table (an identifier)")
    user = _Parser(add_help=False)
    user.add_argument("--user", default=None, metavar="ID",
                      help="the owner of the rows (User tables only)")

    tables = sub.add_parser(
        "tables", formatter_class=fmt, epilog=SEE_ALSO,
        help="list, create, fill and drop tables of the engine (DIR/engine)",
        description=_wrap(
            "The tables of the reference storage engine in DIR/engine, so that jobs have "
            "something to work on. Names are identifiers (^[A-Za-z_][A-Za-z0-9_]{0,63}$). "
            "The engine may be changed while a runtime serves the data directory.",
            "  kalam-actors tables create app events --type Shared\n"
            "  kalam-actors tables fill app events --rows 1000\n"
            "  kalam-actors submit Flush --params "
            "'{\"namespace_id\": \"app\", \"table_name\": \"events\", "
            "\"table_type\": \"Shared\"}'"))
    tables_sub = tables.add_subparsers(dest="tables_command", metavar="ACTION",
                                       parser_class=_Parser)
    tables_sub.required = True
    tl = tables_sub.add_parser("list", parents=[data], formatter_class=fmt, epilog=SEE_ALSO,
                               help="every table, with its hot rows and segments")
    tl.add_argument("--namespace", default=None, metavar="NS", help="only this namespace")
    tl.add_argument("--json", action="store_true", help=JSON_HELP)
    tl.set_defaults(func=cmd_tables_list)

    tc = tables_sub.add_parser("create", parents=[data, names], formatter_class=fmt,
                               epilog=SEE_ALSO, help="create a table",
                               description=_wrap(
                                   "Create a table. User tables hold rows per user (Flush, "
                                   "Compact and UserCleanup work per user); Shared tables "
                                   "one set of rows; Stream tables rows that expire --ttl "
                                   "seconds after they are written (StreamEviction)."))
    tc.add_argument("--type", required=True, metavar="TYPE",
                    help="User, Shared or Stream")
    tc.add_argument("--pk", default="id", metavar="FIELD",
                    help="the primary key field (default id)")
    tc.add_argument("--ttl", type=int, default=None, metavar="S",
                    help="a Stream table's row lifetime in seconds")
    tc.add_argument("--options", default=None, metavar="JSON",
                    help='table options, e.g. \'{"flush_row_limit": 1000}\' for `run`\'s '
                         "schedules (a JSON object, @FILE, or - for stdin)")
    tc.set_defaults(func=cmd_tables_create)

    tf = tables_sub.add_parser("fill", parents=[data, names], formatter_class=fmt,
                               epilog=SEE_ALSO, help="write sample rows into a table",
                               description=_wrap(
                                   "Write sample rows {PK: n, name, value} with keys "
                                   "--start … --start+N-1 (an existing key gets a new "
                                   "version). A User table needs --user; repeat it to fill "
                                   "several users' rows."))
    tf.add_argument("--rows", type=_count, default=100, metavar="N",
                    help="rows to write (per user; default 100)")
    tf.add_argument("--start", type=int, default=1, metavar="K",
                    help="the first key (default 1)")
    tf.add_argument("--user", action="append", default=None, metavar="ID",
                    help="the rows' owner (User tables; repeat for several)")
    tf.set_defaults(func=cmd_tables_fill)

    td = tables_sub.add_parser("drop", parents=[data, names], formatter_class=fmt,
                               epilog=SEE_ALSO, help="drop a table and its data now",
                               description=_wrap(
                                   "Drop a table, its rows and its segment files, at once. "
                                   "(A Cleanup job with operation drop_table does the same "
                                   "through the runtime.)"))
    td.set_defaults(func=cmd_tables_drop)

    rows = sub.add_parser("rows", formatter_class=fmt, epilog=SEE_ALSO,
                          help="put, delete and list rows of a table")
    rows_sub = rows.add_subparsers(dest="rows_command", metavar="ACTION", parser_class=_Parser)
    rows_sub.required = True
    rp = rows_sub.add_parser("put", parents=[data, names, user], formatter_class=fmt,
                             epilog=SEE_ALSO, help="write rows (a new version of each key)")
    rp.add_argument("rows", metavar="JSON",
                    help="a JSON object or an array of objects (each with the primary key), "
                         "@FILE, or - for stdin")
    rp.set_defaults(func=cmd_rows_put)
    rd = rows_sub.add_parser("delete", parents=[data, names, user], formatter_class=fmt,
                             epilog=SEE_ALSO,
                             help="soft-delete rows by primary key (Retention purges them)")
    rd.add_argument("pk", nargs="+", metavar="PK", help="primary keys (numbers or text)")
    rd.set_defaults(func=cmd_rows_delete)
    rl = rows_sub.add_parser("list", parents=[data, names, user], formatter_class=fmt,
                             epilog=SEE_ALSO, help="the live rows, one JSON object a line")
    rl.add_argument("--limit", type=_count, default=100, metavar="N",
                    help="at most N rows (default 100; 0 for all)")
    rl.set_defaults(func=cmd_rows_list)

    users = sub.add_parser("users", formatter_class=fmt, epilog=SEE_ALSO,
                           help="create and soft-delete users (for UserCleanup)")
    users_sub = users.add_subparsers(dest="users_command", metavar="ACTION",
                                     parser_class=_Parser)
    users_sub.required = True
    uc = users_sub.add_parser("create", parents=[data], formatter_class=fmt, epilog=SEE_ALSO,
                              help="create a user")
    uc.add_argument("user_id", metavar="ID", help="the user id (an identifier)")
    uc.add_argument("username", metavar="NAME", help="the user's name")
    uc.set_defaults(func=cmd_users_create)
    ud = users_sub.add_parser("delete", parents=[data], formatter_class=fmt, epilog=SEE_ALSO,
                              help="soft-delete a user (a UserCleanup job removes it)")
    ud.add_argument("user_id", metavar="ID")
    ud.set_defaults(func=cmd_users_delete)


def _configure_logging(args: argparse.Namespace) -> None:
    """The library is quiet on import; the command turns its logs on: `run` logs to stderr
    from INFO, other commands only warnings, and the demo to DIR/demo.log alone (its jobs
    show in the live view)."""
    if args.command == "demo":
        enable_logs(None)
    else:
        enable_logs("INFO" if args.command == "run" else "WARNING")


def main(argv: Sequence[str] | None = None, *, configure_logging: bool = True) -> int:
    """Run the command; returns the exit code (see ``kalam-actors --help``).

    Args:
        argv: the arguments (default ``sys.argv[1:]``).
        configure_logging: turn the library's logs on and replace loguru's handlers with the
            command's own (tests calling ``main`` in-process pass False to keep theirs).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    args._console = make_console()
    args._err_console = make_console(stderr=True)
    if configure_logging:
        _configure_logging(args)
    try:
        code: int = args.func(args)
        return code
    except KeyboardInterrupt:
        return 130
    except (KalamError, CliError) as exc:
        code = exit_code_of(exc)
        label = {EXIT_NOT_FOUND: "not found", EXIT_LOCKED: "locked"}.get(code, "error")
        text = str(exc)
        if isinstance(exc, (InvalidTransition, CancelNotAllowed)):
            label = "refused"
        args._err_console.print(f"kalam-actors: {label}: {text}", markup=False,
                                highlight=False, soft_wrap=True)
        return code
    except (OSError, lmdb.Error) as exc:
        # What the checks before each write did not foresee (a disk filling up, a folder
        # removed meanwhile): one line, not a traceback.
        text = f"{exc.filename}: {os_reason(exc)}" if isinstance(exc, OSError) and \
            exc.filename else (os_reason(exc) if isinstance(exc, OSError) else str(exc))
        args._err_console.print(f"kalam-actors: error: {text}", markup=False, highlight=False,
                                soft_wrap=True)
        return EXIT_FAILED
