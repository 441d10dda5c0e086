"""Terminal views of the ``system.jobs`` view: tables, JSON lines, and a live job board.

Everything here renders :class:`~kalam_actors.model.JobRow` values (the rows of
``JobStore.system_jobs()``), so the CLI, the demo and ``jobs watch`` show the same thing
whether the jobs run in this process or in another one.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, Final, TextIO

import orjson
from rich import box
from rich.console import Console, ConsoleOptions, Group, RenderableType
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
)
from rich.table import Column, Table
from rich.text import Text

from .model import SYSTEM_JOBS_COLUMNS, JobRow

__all__ = [
    "COMPACT_COLUMNS",
    "FULL_TABLE_WIDTH",
    "NARROW_COLUMNS",
    "PIPE_WIDTH",
    "STATUS_STYLE",
    "TINY_COLUMNS",
    "JobBoard",
    "PlainReporter",
    "job_detail_table",
    "jobs_table",
    "json_line",
    "make_console",
    "row_to_json",
    "table_columns",
]

STATUS_STYLE: Final = {
    "New": "cyan",
    "Queued": "cyan",
    "Running": "bold yellow",
    "Retrying": "magenta",
    "Completed": "green",
    "Failed": "bold red",
    "Cancelled": "dim",
    "Skipped": "blue",
}
PIPE_WIDTH: Final = 120
"""The width of output that goes to a pipe or a file when ``COLUMNS`` does not say."""
BOARD_WIDE: Final = 110
"""From this width the live board shows every column and full-size bars."""
_FINISHED: Final = frozenset({"Completed", "Failed", "Cancelled", "Skipped"})


def make_console(file: TextIO | None = None, *, force_terminal: bool | None = None,
                 width: int | None = None, stderr: bool = False) -> Console:
    """A console for the CLI, as wide as the terminal. Output to a pipe or a file is as wide
    as ``COLUMNS`` says, else :data:`PIPE_WIDTH` (rich alone would take 80)."""
    console = Console(file=file, force_terminal=force_terminal, width=width, stderr=stderr,
                      highlight=False, soft_wrap=False, emoji=False)
    if width is None and not console.is_terminal and not _columns_from_env():
        console.width = PIPE_WIDTH
    return console


def _columns_from_env() -> bool:
    """Whether ``COLUMNS`` holds a width (rich reads it itself)."""
    value = os.environ.get("COLUMNS", "")
    return value.isdigit() and int(value) > 0


# --------------------------------------------------------------------------- cells


def _time(value: datetime | None) -> str:
    if value is None:
        return ""
    return value.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _short_time(value: datetime | None) -> str:
    """``MM-DD HH:MM:SS.mmm`` (UTC): enough to tell jobs apart in a table row."""
    if value is None:
        return ""
    return value.strftime("%m-%d %H:%M:%S.%f")[:-3]


def _short(text: str | None, limit: int) -> str:
    if not text:
        return ""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _trace_tail(text: str | None, limit: int) -> str:
    """The last non-empty line of a trace: where a traceback says what went wrong."""
    if not text:
        return ""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return _short(lines[-1] if lines else "", limit)


def progress_text(progress: dict[str, Any] | None) -> str:
    """``"1200/5000"`` (or ``"1200"`` with no total), plus the note."""
    if not progress:
        return ""
    done, total, note = progress.get("done"), progress.get("total"), progress.get("note")
    head = f"{done}/{total}" if total is not None else f"{done}"
    return f"{head} {note}" if note else head


def status_text(status: str) -> Text:
    """A status in its colour."""
    return Text(status, style=STATUS_STYLE.get(status, ""))


def row_to_json(row: JobRow) -> dict[str, Any]:
    """One job as a JSON-ready dict: the ``system.jobs`` columns, in order; times as ISO 8601
    UTC text, parameters as the object they are, progress as ``{"done", "total", "note"}``
    or null."""
    out: dict[str, Any] = {}
    for column, value in zip(SYSTEM_JOBS_COLUMNS, row, strict=True):
        out[column] = value.isoformat() if isinstance(value, datetime) else value
    out["parameters"] = _params_object(row.parameters)
    return out


def _params_object(text: str) -> Any:
    """The stored parameters (JSON object text) as an object; text that is not JSON stays
    text rather than failing the whole listing."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text


def json_line(row: JobRow) -> str:
    """One job as one line of JSON (see :func:`row_to_json`)."""
    return orjson.dumps(row_to_json(row)).decode()


# --------------------------------------------------------------------------- tables


FULL_TABLE_WIDTH: Final = 300
"""Below this console width, :func:`jobs_table` leaves out the widest columns."""
NARROW_COLUMNS: Final = ("job_id", "job_type", "status", "message", "retry_count", "progress")
"""The columns of a table from 110 columns wide."""
COMPACT_COLUMNS: Final = ("job_id", "job_type", "status", "message")
"""The columns of a table from 74 columns wide (an 80-column terminal)."""
TINY_COLUMNS: Final = ("job_id", "status", "message")
"""The columns of a narrower table (the job id's prefix still says the type)."""
_TIERS: Final = ((FULL_TABLE_WIDTH, SYSTEM_JOBS_COLUMNS), (110, NARROW_COLUMNS),
                 (74, COMPACT_COLUMNS))


def table_columns(width: int) -> tuple[str, ...]:
    """The ``system.jobs`` columns that fit a console ``width`` readably, in the view's
    order: all of them from :data:`FULL_TABLE_WIDTH` on, then fewer as the width shrinks.
    Ids, types and statuses are never cut, and the message always has a column."""
    for least, columns in _TIERS:
        if width >= least:
            return columns
    return TINY_COLUMNS


def _cells(row: JobRow) -> dict[str, RenderableType]:
    return {
        "job_id": row.job_id,
        "job_type": row.job_type,
        "status": status_text(row.status),
        "parameters": _short(row.parameters, 200),
        "message": _short(row.message, 300),
        "exception_trace": _trace_tail(row.exception_trace, 120),
        "idempotency_key": row.idempotency_key or "",
        "retry_count": str(row.retry_count),
        "max_retries": str(row.max_retries),
        "progress": progress_text(row.progress),
        "created_at": _short_time(row.created_at),
        "updated_at": _short_time(row.updated_at),
        "started_at": _short_time(row.started_at),
        "finished_at": _short_time(row.finished_at),
    }


def jobs_table(rows: Iterable[JobRow], *, title: str | None = None,
               columns: Sequence[str] = SYSTEM_JOBS_COLUMNS) -> Table:
    """The ``system.jobs`` view as a table: ``columns`` (default every column), in the
    view's order. Long cells (parameters, message, trace) are shortened; ``jobs show`` and
    ``--json`` give them whole."""
    shown = [c for c in SYSTEM_JOBS_COLUMNS if c in columns]
    hidden = len(SYSTEM_JOBS_COLUMNS) - len(shown)
    caption = "times are UTC" if title else None
    if hidden:
        caption = (f"{caption + '; ' if caption else ''}{hidden} more columns in a wider "
                   f"terminal, with --json, or in `jobs show ID`")
    # A narrow table drops the box's vertical lines: they cost three characters a column.
    table = Table(title=title, title_justify="left", header_style="bold", pad_edge=False,
                  expand=False, caption=caption, caption_justify="left",
                  box=box.SIMPLE_HEAD if hidden else box.HEAVY_HEAD,
                  collapse_padding=bool(hidden))
    widths = {"parameters": (20, 48), "message": (14 if hidden else 24, 60),
              "exception_trace": (15, 40), "idempotency_key": (15, 24),
              "progress": (None, 12 if hidden else None)}
    # Never cut: a job id is 29 characters and the longest status 9. The column tiers of
    # table_columns leave room for them and the longest type.
    least = {"job_id": 29, "status": 9}
    for column in shown:
        low, high = widths.get(column, (least.get(column), None))
        table.add_column(column, no_wrap=column not in widths or column == "progress",
                         overflow="ellipsis" if column == "progress" else "fold",
                         min_width=low, max_width=high)
    for row in rows:
        cells = _cells(row)
        table.add_row(*(cells[c] for c in shown))
    return table


def job_detail_table(row: JobRow) -> Table:
    """One job, one column per line, nothing shortened (the whole trace included)."""
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column("column", style="bold", no_wrap=True)
    table.add_column("value", overflow="fold")
    for column, value in zip(SYSTEM_JOBS_COLUMNS, row, strict=True):
        if column == "status":
            cell: RenderableType = status_text(row.status)
        elif column == "progress":
            cell = progress_text(row.progress)
        elif isinstance(value, datetime):
            cell = _time(value)
        else:
            cell = "" if value is None else str(value)
        table.add_row(column, cell)
    return table


# --------------------------------------------------------------------------- live board


def _describe(row: JobRow) -> str:
    """A short label for a job: its type and the table or user it works on."""
    try:
        params = orjson.loads(row.parameters)
    except orjson.JSONDecodeError:
        params = {}
    target = ""
    if isinstance(params, dict):
        if "namespace_id" in params and "table_name" in params:
            target = f"{params['namespace_id']}:{params['table_name']}"
        elif "table_id" in params:
            target = str(params["table_id"])
        elif "target_namespace" in params:
            target = f"→ {params['target_namespace']}:{params.get('target_table_name', '')}"
        elif "username" in params or "user_id" in params:
            target = f"user {params.get('username') or params.get('user_id')}"
    return f"{row.job_type} {target}".strip()


@dataclasses.dataclass
class _Tracked:
    task: TaskID
    status: str


class JobBoard:
    """A live view of jobs: a progress bar per job that has run (moving while it runs), then
    a table of the latest jobs. Feed it rows with :meth:`update`; render it with
    :meth:`renderable` (inside ``rich.live.Live``)."""

    def __init__(self, *, table_limit: int = 20, title: str = "jobs",
                 show_table: bool = True, bars_for_finished: bool = True) -> None:
        def text(field: str, style: str, **column: Any) -> TextColumn:
            return TextColumn(field, style=style, markup=False,
                              table_column=Column(no_wrap=True, overflow="ellipsis", **column))

        def bar(width: int) -> BarColumn:
            return BarColumn(bar_width=width, table_column=Column(no_wrap=True,
                                                                  min_width=width))

        def status() -> TextColumn:
            return TextColumn("{task.fields[status]}",
                              table_column=Column(no_wrap=True, min_width=9))

        def count() -> MofNCompleteColumn:
            return MofNCompleteColumn(table_column=Column(no_wrap=True, min_width=7))

        # Fixed widths for what must stay readable; the note takes what is left of the line.
        self._wide_columns = (
            text("{task.fields[job_id]}", "bold", min_width=29),
            text("{task.description}", "cyan", max_width=28),
            bar(20), count(), status(),
            text("{task.fields[retries]}", "magenta"),
            text("{task.fields[note]}", "dim", ratio=1, min_width=0),
        )
        # Below BOARD_WIDE: id, status and count never cut; a short bar; the rest shares.
        self._narrow_columns = (
            text("{task.fields[job_id]}", "bold", min_width=29),
            status(), bar(8), count(),
            text("{task.description}", "cyan", max_width=16),
            text("{task.fields[note]}", "dim", ratio=1, min_width=0),
        )
        self.progress = Progress(*self._wide_columns, expand=True)
        self.show_table = show_table
        # False: a job first seen already finished gets no bar (``jobs watch`` on a store
        # with history shows bars for the jobs that run while it watches).
        self.bars_for_finished = bars_for_finished
        self._tracked: dict[str, _Tracked] = {}
        self._rows: list[JobRow] = []
        self.table_limit = table_limit
        self.title = title

    def update(self, rows: Sequence[JobRow]) -> None:
        """Take a fresh read of the jobs: add a bar for each job seen running, move bars."""
        self._rows = list(rows)
        for row in rows:
            tracked = self._tracked.get(row.job_id)
            if tracked is None:
                if row.status in ("New", "Queued"):
                    continue
                if not self.bars_for_finished and row.status in _FINISHED:
                    continue
                task = self.progress.add_task(_describe(row), total=None, job_id=row.job_id,
                                              status="", retries="", note="")
                tracked = self._tracked[row.job_id] = _Tracked(task, row.status)
            self._move(tracked, row)

    def _move(self, tracked: _Tracked, row: JobRow) -> None:
        pg = row.progress or {}
        done = int(pg.get("done") or 0)
        total = pg.get("total")
        terminal = row.status in _FINISHED
        if terminal and row.status in ("Completed", "Skipped"):
            total = total if total else max(done, 1)
            done = total
        retries = f"retry {row.retry_count}/{row.max_retries}" if row.retry_count else ""
        status = Text(row.status, style=STATUS_STYLE.get(row.status, ""))
        note = pg.get("note") or ""
        if terminal:
            note = _short(row.message, 70)
        self.progress.update(
            tracked.task,
            completed=done,
            total=total,
            status=status,
            retries=retries,
            note=note,
        )
        if terminal and not self.progress.tasks[tracked.task].finished:
            self.progress.stop_task(tracked.task)
        tracked.status = row.status

    def renderable(self, width: int = FULL_TABLE_WIDTH) -> RenderableType:
        """The bars, then the latest jobs' table (or a tally, without the table), laid out
        for a console ``width`` wide: ids and statuses are never cut."""
        wide = width >= BOARD_WIDE
        self.progress.columns = self._wide_columns if wide else self._narrow_columns
        if not self.show_table:
            return Group(self.progress, self._tally())
        recent = self._rows[-self.table_limit:]
        table = Table(title=self.title, title_justify="left", header_style="bold",
                      pad_edge=False, expand=True, box=box.HEAVY_HEAD if wide else
                      box.SIMPLE_HEAD)
        widths = {"job_id": (29, None), "job_type": (14, None), "status": (9, None),
                  "retries": (7, None), "progress": (10, 26), "message": (10, 60)}
        shown = [c for c in widths if wide or c in COMPACT_COLUMNS]
        if width < 74:
            shown.remove("job_type")
        for column in shown:
            low, high = widths[column]
            table.add_column(column, no_wrap=True, overflow="ellipsis", min_width=low,
                             max_width=high, ratio=1 if column == "message" else None)
        for row in recent:
            cells: dict[str, RenderableType] = {
                "job_id": row.job_id, "job_type": row.job_type,
                "status": status_text(row.status), "retries": str(row.retry_count),
                "progress": progress_text(row.progress), "message": _short(row.message, 60)}
            table.add_row(*(cells[c] for c in shown))
        return Group(self.progress, table)

    def _tally(self) -> Text:
        counts: dict[str, int] = {}
        for row in self._rows:
            counts[row.status] = counts.get(row.status, 0) + 1
        tally = Text(f"{len(self._rows)} jobs: ")
        for i, (status, n) in enumerate(sorted(counts.items())):
            tally.append(f"{', ' if i else ''}{n} ")
            tally.append(status, style=STATUS_STYLE.get(status, ""))
        return tally

    def __rich_console__(self, console: Console,
                         options: ConsoleOptions) -> Iterable[RenderableType]:
        yield self.renderable(options.max_width)


class PlainReporter:
    """The live view for a pipe or a log file: one plain line per change that matters (a new
    status, a retry, each further quarter of progress)."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._seen: dict[str, tuple[str, int, int]] = {}

    def update(self, rows: Sequence[JobRow]) -> None:
        """Print a line for each job whose state changed since the last update."""
        for row in rows:
            pg = row.progress or {}
            done, total = int(pg.get("done") or 0), pg.get("total")
            quarter = int(4 * done / total) if total else 0
            state = (row.status, row.retry_count, quarter)
            if self._seen.get(row.job_id) == state:
                continue
            before = self._seen.get(row.job_id)
            self._seen[row.job_id] = state
            if before is None and row.status in ("New", "Queued"):
                line = f"{row.job_id} {_describe(row)}: {row.status}"
            elif row.status == "Running":
                line = f"{row.job_id} {_describe(row)}: Running {progress_text(row.progress)}"
            elif row.status == "Retrying":
                line = (f"{row.job_id} {_describe(row)}: Retrying (retry {row.retry_count}"
                        f"/{row.max_retries}) {_trace_tail(row.exception_trace, 100)}")
            else:
                line = f"{row.job_id} {_describe(row)}: {row.status} {_short(row.message, 120)}"
            self.console.print(line.rstrip(), markup=False, highlight=False, soft_wrap=True)
