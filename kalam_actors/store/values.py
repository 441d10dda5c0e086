"""The one door's value checks: every value that enters a job record is checked here.

Two callers use it. Submission (the runtime's ``create_job``/``create_jobs``, ``JobStore``,
the CLI and schedules, all through :func:`.door.prepare_job`) turns what cannot be stored into an
:class:`InvalidParams` naming the field, before any transaction. The actor thread checks what
an executor hands back (:func:`check_decision`, :func:`check_progress`) so that no value is
ever discovered to be unstorable inside a group commit, where it would fail the whole batch.

Limits are stated in the unit that is limited: an idempotency key is at most 256 characters
*and* its UTF-8 form fits an LMDB key; parameters are at most 1 MiB of UTF-8 JSON.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Final

import orjson

from ..errors import InvalidParams
from ..model import (
    MAX_BACKOFF_MS,
    MAX_EXCEPTION_TRACE,
    MAX_IDEMPOTENCY_KEY,
    MAX_MESSAGE,
    JobDecision,
    Outcome,
    Progress,
    truncate_head,
    truncate_tail,
)

__all__ = [
    "MAX_IDEMPOTENCY_KEY_BYTES",
    "MAX_PARAMS_BYTES",
    "MAX_PARAMS_DEPTH",
    "MAX_PROGRESS",
    "MAX_PROGRESS_NOTE",
    "MAX_TIMEOUT_S",
    "check_decision",
    "check_idempotency_key",
    "check_max_retries",
    "check_progress",
    "check_timeout",
    "params_text",
    "parse_params",
    "storable_text",
]

MAX_PARAMS_BYTES: Final = 1 << 20
MAX_PARAMS_DEPTH: Final = 32
# LMDB's largest key (the idempotency index is keyed by the key's UTF-8 bytes).
MAX_IDEMPOTENCY_KEY_BYTES: Final = 511
MAX_TIMEOUT_S: Final = 365 * 24 * 3600.0
MAX_PROGRESS: Final = (1 << 63) - 1
MAX_PROGRESS_NOTE: Final = 1_000
# What JSON (and orjson) can hold as a whole number: signed and unsigned 64-bit.
_INT_MIN: Final = -(1 << 63)
_INT_MAX: Final = (1 << 64) - 1


# --------------------------------------------------------------------------- parameters


def parse_params(params: Any) -> tuple[dict[str, Any], str]:
    """Accept parameters as a dict or JSON text; return the dict and its canonical JSON text.

    The dict is decoded from the text: what a validator sees is exactly what is stored.

    Raises:
        InvalidParams: see :func:`params_text`.
    """
    text = params_text(params)
    return orjson.loads(text), text


def params_text(params: Any) -> str:
    """The canonical JSON text of parameters given as a dict or JSON text.

    Raises:
        InvalidParams: bad JSON or UTF-8; not an object; a value JSON cannot hold (NaN,
            infinity, a whole number beyond 64 bits, a non-text key, a lone surrogate, a type
            that is not a JSON value); nested deeper than 32 levels in any container (tuples
            too); over 1 MiB of UTF-8.
    """
    if isinstance(params, (bytes, bytearray, memoryview)):
        try:
            params = bytes(params).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidParams(f"parameters are not valid UTF-8: {exc}") from exc
    if isinstance(params, str):
        if len(params) > MAX_PARAMS_BYTES:  # characters <= bytes: too long either way
            raise InvalidParams(f"parameters are {len(params)} characters; the limit is 1 MiB")
        try:
            value = orjson.loads(params)
        except orjson.JSONDecodeError as exc:
            raise InvalidParams(f"parameters are not valid JSON: {exc}") from exc
    elif isinstance(params, dict):
        value = params
    else:
        raise InvalidParams(
            f"parameters must be a JSON object (a dict or JSON text), not {type(params).__name__}"
        )
    if not isinstance(value, dict):
        raise InvalidParams(f"parameters must be a JSON object, not a JSON {type(value).__name__}")
    # Flat parameters of text, whole numbers, booleans and nulls (most jobs') cannot nest and
    # hold nothing orjson would change: orjson's own refusals (a lone surrogate, a number
    # beyond 64 bits) are then named by the walk. Anything else is walked before orjson sees
    # it: orjson follows tuples far deeper than any limit of ours, and a deep enough tuple
    # corrupts its heap.
    flat = all(type(v) in _FLAT for v in value.values())
    if not flat:
        _check_tree(value)
    try:
        raw = orjson.dumps(value)
    except (TypeError, orjson.JSONEncodeError) as exc:
        if flat:
            _check_tree(value)  # raises, naming the value
        raise InvalidParams(f"parameters cannot be stored as JSON: {exc}") from exc
    if len(raw) > MAX_PARAMS_BYTES:
        raise InvalidParams(f"parameters are {len(raw)} bytes as JSON; the limit is 1 MiB")
    return raw.decode("utf-8")


_SCALARS: Final = (bool, type(None))
_FLAT: Final = frozenset({str, int, bool, type(None)})


def _check_tree(root: dict[str, Any]) -> None:
    """Refuse what JSON cannot hold exactly, naming where it is. Depth counts every container."""
    stack: list[tuple[Any, int, str]] = [(root, 1, "params")]
    while stack:
        node, depth, where = stack.pop()
        if depth > MAX_PARAMS_DEPTH:
            raise InvalidParams(f"{where} is nested deeper than {MAX_PARAMS_DEPTH} levels")
        is_dict = isinstance(node, dict)
        for key, item in (node.items() if is_dict else enumerate(node)):
            if is_dict:
                if not isinstance(key, str):
                    raise InvalidParams(
                        f"{where} has a key {_short(key)} of type {type(key).__name__}; "
                        "JSON object keys are text"
                    )
                if not key.isascii():
                    _check_text(key, f"a key of {where}")
            kind = type(item)
            if kind is str:
                if not item.isascii():
                    _check_text(item, _at(where, key, is_dict))
                continue
            if kind in _SCALARS:
                continue
            if kind is int or (isinstance(item, int) and not isinstance(item, bool)):
                if not _INT_MIN <= item <= _INT_MAX:
                    raise InvalidParams(
                        f"{_at(where, key, is_dict)} is {_short(item)}, beyond the 64-bit "
                        "whole numbers JSON can hold here"
                    )
            elif kind is float or isinstance(item, float):
                if not math.isfinite(item):
                    raise InvalidParams(
                        f"{_at(where, key, is_dict)} is {item!r}: JSON cannot hold NaN or "
                        "infinity"
                    )
            elif isinstance(item, (dict, list, tuple)):
                stack.append((item, depth + 1, _at(where, key, is_dict)))
            elif isinstance(item, str):
                _check_text(item, _at(where, key, is_dict))
            else:
                raise InvalidParams(
                    f"{_at(where, key, is_dict)} is a {kind.__name__}, not a JSON value "
                    "(text, number, true/false, null, list or object)"
                )


def _check_text(text: str, where: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidParams(
            f"{where} is not valid Unicode text ({exc.reason} at position {exc.start}): a "
            "lone surrogate cannot be stored"
        ) from None


def _at(where: str, key: object, is_dict: bool) -> str:
    return f"{where}.{key}" if is_dict else f"{where}[{key}]"


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# --------------------------------------------------------------------------- job options


def check_idempotency_key(key: Any) -> str | None:
    """Return the key if acceptable: None, or 1–256 characters of text without NUL whose
    UTF-8 form is at most 511 bytes.

    Raises:
        InvalidParams: naming what is wrong with it.
    """
    if key is None:
        return None
    if not isinstance(key, str):
        raise _key_error(f"must be a string, not {type(key).__name__}")
    if not key:
        raise _key_error("must not be empty")
    if len(key) > MAX_IDEMPOTENCY_KEY:
        raise _key_error(f"is {len(key)} characters; the limit is {MAX_IDEMPOTENCY_KEY}")
    if "\x00" in key:
        raise _key_error("must not contain NUL")
    if not key.isascii():
        try:
            size = len(key.encode("utf-8"))
        except UnicodeEncodeError as exc:
            raise _key_error(f"is not valid Unicode text: {exc}") from exc
        if size > MAX_IDEMPOTENCY_KEY_BYTES:
            raise _key_error(
                f"is {size} bytes in UTF-8; the limit is {MAX_IDEMPOTENCY_KEY_BYTES} bytes"
            )
    return key


def _key_error(what: str) -> InvalidParams:
    return InvalidParams(f"idempotency_key {what}", field="idempotency_key")


def check_max_retries(value: Any) -> int:
    """Return ``value`` if it is a whole number from 0 to 1000.

    Raises:
        InvalidParams: naming ``max_retries``.
    """
    if type(value) is int and 0 <= value <= 1000:
        return value
    raise InvalidParams(
        f"max_retries must be a whole number from 0 to 1000, not {_short(value)}",
        field="max_retries",
    )


def check_timeout(value: Any) -> float | None:
    """Return ``value`` as seconds: None (no limit) or a finite number > 0 up to a year.

    Raises:
        InvalidParams: naming ``timeout_s``.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _timeout_error(f"must be a number of seconds, not {type(value).__name__}")
    if isinstance(value, float) and not math.isfinite(value):
        raise _timeout_error(f"must be finite, not {value!r} (use None for no time limit)")
    if not 0 < value <= MAX_TIMEOUT_S:
        raise _timeout_error(
            f"must be > 0 and at most {MAX_TIMEOUT_S:g} s (a year), not {_short(value)}"
        )
    return float(value)


def _timeout_error(what: str) -> InvalidParams:
    return InvalidParams(f"timeout_s {what}", field="timeout_s")


# --------------------------------------------------------------------------- from executors


def storable_text(text: str) -> str:
    """``text`` as it can be stored: a lone surrogate (from a file name that is not UTF-8, say)
    is kept as its escape (``\\udcff``), so nothing is lost and nothing fails to encode."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def check_decision(decision: object, executor_name: str) -> JobDecision:
    """What an executor returned, made storable; in the actor thread, before any commit.

    Text fields keep lone surrogates as escapes and are cut to their limits.

    Raises:
        InvalidParams: the value is not a storable JSON decision; the message names the field
            (the caller turns it into a failed attempt).
    """
    if decision is _COMPLETED_PLAIN:
        return decision
    if not isinstance(decision, JobDecision):
        raise InvalidParams(f"{executor_name} returned {_short(decision)}, not a JobDecision")
    if not isinstance(decision.outcome, Outcome):
        raise InvalidParams(
            f"{executor_name} returned a JobDecision with outcome {_short(decision.outcome)}",
            field="outcome",
        )
    message = _decision_text(decision.message, "message", executor_name, MAX_MESSAGE)
    trace = _decision_text(decision.exception_trace, "exception_trace", executor_name,
                           MAX_EXCEPTION_TRACE)
    backoff = decision.backoff_ms
    if backoff is not None and (
        type(backoff) is not int or not 0 <= backoff <= MAX_BACKOFF_MS
    ):
        raise InvalidParams(
            f"{executor_name} returned a JobDecision with backoff_ms {_short(backoff)}, not a "
            f"whole number from 0 to {MAX_BACKOFF_MS}",
            field="backoff_ms",
        )
    if message is decision.message and trace is decision.exception_trace:
        return decision
    return dataclasses.replace(decision, message=message, exception_trace=trace)


_COMPLETED_PLAIN: Final = JobDecision.completed()


def _decision_text(value: object, field: str, executor_name: str, limit: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidParams(
            f"{executor_name} returned a JobDecision whose {field} is {_short(value)}, not text",
            field=field,
        )
    text = storable_text(value)
    # A trace keeps its end (the newest part) and is cut again when it joins the job's
    # earlier traces; cutting here keeps a huge one from being carried through the loop.
    return truncate_head(text, limit) if field == "message" else truncate_tail(text, limit)


def check_progress(done: Any, total: Any = None, note: Any = None) -> Progress:
    """A progress report as it can be stored.

    Raises:
        InvalidParams: ``done`` or ``total`` is not a whole number from 0 to 2**63-1, or
            ``note`` is not text.
    """
    _check_count(done, "done")
    if total is not None:
        _check_count(total, "total")
    if note is not None:
        if not isinstance(note, str):
            raise InvalidParams(
                f"progress note must be text, not {type(note).__name__}", field="note"
            )
        note = truncate_head(storable_text(note), MAX_PROGRESS_NOTE)
    return Progress(int(done), None if total is None else int(total), note)


def _check_count(value: Any, field: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_PROGRESS:
        raise InvalidParams(
            f"progress {field} must be a whole number from 0 to 2**63-1, not {_short(value)}",
            field=field,
        )
