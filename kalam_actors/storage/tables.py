"""The checks a table definition passes wherever one enters the engine: ``create_table``, an
import, and a backup's manifest before a restore. One function, so that a restore can never
install a table that ``create_table`` would refuse."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from .errors import InvalidName
from .interface import TableInfo, TableType
from .names import check_name

__all__ = ["check_table_spec"]


def check_table_spec(
    namespace: object,
    table: object,
    table_type: object,
    *,
    primary_key: object = "id",
    ttl_seconds: object = None,
    options: object = None,
) -> TableInfo:
    """A checked table definition (``created_us`` 0; the caller stamps it).

    Args:
        options: None or a JSON object; it is returned as a plain JSON copy.

    Raises:
        InvalidName: naming the offending field in ``field``: ``namespace``, ``table_name``,
            ``table_type``, ``primary_key``, ``ttl_seconds`` or ``options``.
    """
    ns = check_name(namespace, "namespace")
    name = check_name(table, "table name")
    key = check_name(primary_key, "primary key")
    try:
        kind = TableType.parse(table_type)
    except ValueError as exc:
        raise InvalidName(str(exc), field="table_type") from None
    return TableInfo(ns, name, kind, key, _ttl(ttl_seconds), options=_options(options))


def _ttl(value: object) -> int | None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                              or value <= 0):
        raise InvalidName(f"ttl_seconds must be a whole number > 0, not {value!r}",
                          field="ttl_seconds")
    return value


def _options(value: object) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise InvalidName(f"table options must be a JSON object, not {type(value).__name__}",
                          field="options")
    try:
        copy: dict[str, Any] = orjson.loads(orjson.dumps(dict(value)))
    except (TypeError, ValueError) as exc:
        raise InvalidName(f"table options must be a JSON object: {exc}", field="options") from exc
    return copy
