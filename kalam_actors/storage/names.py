"""Checks for names that end up in keys and paths."""

from __future__ import annotations

import re
from typing import Final

from .errors import InvalidName

__all__ = ["NAME_RE", "check_name", "is_name"]

NAME_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


def is_name(value: object) -> bool:
    """True when ``value`` is a string matching :data:`NAME_RE` in full."""
    return isinstance(value, str) and NAME_RE.fullmatch(value) is not None


def check_name(value: object, what: str) -> str:
    """Return ``value`` if it is a valid name.

    Raises:
        InvalidName: naming ``what`` and the rule.
    """
    if not is_name(value):
        raise InvalidName(
            f"invalid {what} {value!r}: must match ^[A-Za-z_][A-Za-z0-9_]{{0,63}}$",
            field=what.replace(" ", "_"),
        )
    assert isinstance(value, str)
    return value
