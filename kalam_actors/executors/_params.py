"""Parameter checks shared by the built-in executors, and the small helpers they share.

Every check raises :class:`~kalam_actors.errors.InvalidParams` naming the field, so a bad job
is refused at ``create_job`` time with nothing written.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any, Final
from urllib.parse import unquote, urlsplit

from ..context import JobContext
from ..errors import InvalidParams
from ..model import JobDecision
from ..storage.errors import StorageError
from ..storage.interface import StorageEngine, TableInfo, TableType
from ..storage.names import NAME_RE

__all__ = [
    "NO_STORAGE",
    "cancelled_decision",
    "check_fields",
    "choice",
    "flag",
    "guard",
    "human_bytes",
    "known_table_type",
    "location",
    "name",
    "number",
    "resolve_location",
    "table_id",
    "table_or_decision",
    "table_target",
    "table_type",
    "text",
    "whole",
]

_TABLE_ID_RE: Final = re.compile(r"([A-Za-z_][A-Za-z0-9_]{0,63}):([A-Za-z_][A-Za-z0-9_]{0,63})")
_SCHEME_RE: Final = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")


def check_fields(params: Mapping[str, Any], required: Iterable[str],
                 optional: Iterable[str] = ()) -> None:
    """Refuse a non-dict, a missing required field and an unknown field (a typo would
    otherwise be silently ignored)."""
    if not isinstance(params, Mapping):
        raise InvalidParams(f"parameters must be a JSON object, not {type(params).__name__}")
    required = list(required)
    for field in required:
        if field not in params:
            raise InvalidParams(f"missing required parameter {field!r}", field=field)
    known = set(required) | set(optional)
    for field in params:
        if field not in known:
            raise InvalidParams(
                f"unknown parameter {field!r}; expected: {', '.join(sorted(known))}", field=field)


def name(params: Mapping[str, Any], field: str) -> str:
    """A namespace, table or user name matching ``^[A-Za-z_][A-Za-z0-9_]{0,63}$``."""
    value = params.get(field)
    if not isinstance(value, str):
        raise InvalidParams(f"parameter {field!r} must be a string, not "
                            f"{type(value).__name__}", field=field)
    if NAME_RE.fullmatch(value) is None:
        raise InvalidParams(
            f"parameter {field!r} is {value!r}: must match ^[A-Za-z_][A-Za-z0-9_]{{0,63}}$",
            field=field)
    return value


def text(params: Mapping[str, Any], field: str, *, max_len: int = 256) -> str:
    """A non-empty string of at most ``max_len`` characters."""
    value = params.get(field)
    if not isinstance(value, str):
        raise InvalidParams(f"parameter {field!r} must be a string, not "
                            f"{type(value).__name__}", field=field)
    if not value.strip():
        raise InvalidParams(f"parameter {field!r} must not be empty", field=field)
    if len(value) > max_len or any(ord(c) < 32 for c in value):
        raise InvalidParams(f"parameter {field!r} must be at most {max_len} printable "
                            f"characters", field=field)
    return value


def table_type(params: Mapping[str, Any], field: str = "table_type",
               only: TableType | None = None) -> TableType:
    """``"User"``, ``"Shared"`` or ``"Stream"``; with ``only``, that one."""
    value = params.get(field)
    try:
        kind = TableType.parse(value)
    except ValueError as exc:
        raise InvalidParams(f"parameter {field!r}: {exc}", field=field) from None
    if only is not None and kind is not only:
        raise InvalidParams(f"parameter {field!r} is {kind.value}: this job works on "
                            f"{only.value} tables only", field=field)
    return kind


def table_target(params: Mapping[str, Any], only: TableType | None = None
                 ) -> tuple[str, str, TableType]:
    """``namespace_id``, ``table_name`` and ``table_type`` of a job on one table."""
    return (name(params, "namespace_id"), name(params, "table_name"),
            table_type(params, only=only))


def known_table_type(engine: object, ns: str, table: str, kind: TableType,
                     field: str = "table_type") -> None:
    """Refuse a job whose table type contradicts a table ``engine`` holds now.

    Only an engine that can answer is asked: None, or a stand-in that only knows its backup
    roots (the CLI's), is not an engine, and an engine that fails to answer (closed, say) is
    no reason to refuse; the job checks the table again when it runs.

    Raises:
        InvalidParams: naming ``field`` and both types.
    """
    if not isinstance(engine, StorageEngine):
        return
    try:
        info = engine.table_info(ns, table)
    except Exception:  # an engine that cannot answer: the run-time check still applies
        return
    if isinstance(info, TableInfo) and info.table_type is not kind:
        raise InvalidParams(f"parameter {field!r} is {kind.value}, but table {ns}:{table} is a "
                            f"{info.table_type.value} table", field=field)


def table_id(params: Mapping[str, Any], field: str = "table_id") -> tuple[str, str]:
    """``"namespace:table"``, both parts valid names."""
    value = params.get(field)
    if not isinstance(value, str):
        raise InvalidParams(f"parameter {field!r} must be a string, not "
                            f"{type(value).__name__}", field=field)
    match = _TABLE_ID_RE.fullmatch(value)
    if match is None:
        raise InvalidParams(f"parameter {field!r} is {value!r}: expected "
                            f"'<namespace>:<table>' with names matching "
                            f"^[A-Za-z_][A-Za-z0-9_]{{0,63}}$", field=field)
    return match[1], match[2]


def whole(params: Mapping[str, Any], field: str, *, default: int | None = None) -> int:
    """A whole number > 0 (``default`` when absent and a default is given)."""
    if field not in params and default is not None:
        return default
    value = params.get(field)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidParams(f"parameter {field!r} must be a whole number, not "
                            f"{type(value).__name__}", field=field)
    if value <= 0:
        raise InvalidParams(f"parameter {field!r} must be > 0, not {value}", field=field)
    return value


def number(params: Mapping[str, Any], field: str, *, default: float | None = None) -> float:
    """A finite number > 0 (int or float)."""
    if field not in params and default is not None:
        return default
    value = params.get(field)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidParams(f"parameter {field!r} must be a number, not "
                            f"{type(value).__name__}", field=field)
    if not value > 0 or value == float("inf"):
        raise InvalidParams(f"parameter {field!r} must be > 0, not {value}", field=field)
    return float(value)


def flag(params: Mapping[str, Any], field: str, *, default: bool = False) -> bool:
    """A JSON boolean."""
    value = params.get(field, default)
    if not isinstance(value, bool):
        raise InvalidParams(f"parameter {field!r} must be true or false, not {value!r}",
                            field=field)
    return value


def choice(params: Mapping[str, Any], field: str, options: tuple[str, ...], default: str) -> str:
    """One of ``options``."""
    value = params.get(field, default)
    if value not in options:
        raise InvalidParams(f"parameter {field!r} is {value!r}: expected one of "
                            f"{', '.join(options)}", field=field)
    assert isinstance(value, str)
    return value


def location(params: Mapping[str, Any], field: str) -> PurePosixPath:
    """A local path or ``file://`` URL with no ``..`` component, as a path (may be relative).

    Other schemes (``s3://``, ``http://``) are refused: this engine writes local files only.
    """
    value = params.get(field)
    if not isinstance(value, str) or not value.strip():
        raise InvalidParams(f"parameter {field!r} must be a non-empty string", field=field)
    if "\x00" in value:
        raise InvalidParams(f"parameter {field!r} contains a NUL character", field=field)
    raw = value
    scheme = _SCHEME_RE.match(value)
    if scheme is not None:
        if scheme[1].lower() != "file":
            raise InvalidParams(
                f"parameter {field!r}: unsupported scheme {scheme[1]!r} in {value!r}; only "
                f"local paths and file:// URLs are supported", field=field)
        parts = urlsplit(value)
        if parts.netloc not in ("", "localhost"):
            raise InvalidParams(f"parameter {field!r}: file:// URL names host "
                                f"{parts.netloc!r}; only local files are supported",
                                field=field)
        raw = unquote(parts.path)
    path = PurePosixPath(raw)
    if ".." in path.parts:
        raise InvalidParams(f"parameter {field!r} must not contain '..': {value!r}",
                            field=field)
    return path


def resolve_location(path: PurePosixPath, roots: tuple[Path, ...], field: str) -> Path:
    """The real path of a location, checked to lie under one of ``roots`` (symlinks
    followed). A relative location is taken relative to the first root.

    Raises:
        InvalidParams: when it lies outside every root.
    """
    if not roots:
        raise InvalidParams(f"parameter {field!r}: the storage engine allows no backup roots",
                            field=field)
    resolved = (roots[0] / path if not path.is_absolute() else Path(path)).resolve()
    for root in roots:
        real_root = root.resolve()
        if resolved == real_root or real_root in resolved.parents:
            return resolved
    allowed = ", ".join(str(r) for r in roots)
    raise InvalidParams(f"parameter {field!r}: {str(path)!r} is outside the allowed backup "
                        f"roots ({allowed})", field=field)


NO_STORAGE: Final = "no storage engine configured"


def guard(ctx: JobContext, work: Callable[[StorageEngine], JobDecision]) -> JobDecision:
    """Run ``work`` with the job's engine; turn a missing engine, invalid parameters and
    expected storage failures into a Failed decision (they are data, not crashes)."""
    engine = ctx.storage
    if engine is None:
        ctx.log_error(NO_STORAGE)
        return JobDecision.failed(NO_STORAGE)
    try:
        return work(engine)
    except InvalidParams as exc:
        ctx.log_error(f"invalid parameters: {exc}")
        return JobDecision.failed(f"invalid parameters: {exc}")
    except StorageError as exc:
        ctx.log_error(str(exc))
        return JobDecision.failed(str(exc))


def table_or_decision(
    ctx: JobContext, engine: StorageEngine, ns: str, table: str, kind: TableType,
    *, missing_fails: bool = False,
) -> TableInfo | JobDecision:
    """The table's info, or a decision when it is gone (Skipped, or Failed with
    ``missing_fails``) or of another type (Failed), with a message saying which."""
    info = engine.table_info(ns, table)
    if info is None:
        message = f"table {ns}:{table} does not exist"
        ctx.log_warn(message)
        return JobDecision.failed(message) if missing_fails else JobDecision.skipped(message)
    if info.table_type is not kind:
        message = (f"table {ns}:{table} is a {info.table_type.value} table, not "
                   f"{kind.value} as the job says")
        ctx.log_error(message)
        return JobDecision.failed(message)
    return info


def cancelled_decision(ctx: JobContext, what: str) -> JobDecision:
    """The decision to return when stopping for a cancel (the runtime records Cancelled)."""
    ctx.log_info(f"cancelled: {what}")
    return JobDecision.failed(f"cancelled: {what}")


def human_bytes(size: int) -> str:
    """``1536`` -> ``"1.5 KiB"``."""
    value = float(size)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} bytes"  # pragma: no cover

