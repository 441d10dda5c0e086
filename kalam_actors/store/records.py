"""The job record: its stored layout, its codec and its schema version.

Only the store package reads or writes a record's keys. A record is a plain dict with short
keys (the stored form, orjson-encoded):

``v`` schema version · ``id`` job id · ``s`` status code · ``p`` params (JSON text) ·
``k`` idempotency key · ``rc`` retry count · ``mr`` max retries · ``m`` message ·
``x`` exception trace · ``pg`` progress [done, total, note] · ``c``/``u``/``st``/``f``
created/updated/started/finished µs · ``ra`` run after µs (Retrying) · ``to`` timeout s ·
``cr`` cancel requested · ``ca`` cancel accepted · ``cx`` cancel refused (reason)
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import orjson

from ..errors import CorruptRecord
from ..ids import JobId, JobType
from ..model import (
    MAX_EXCEPTION_TRACE,
    MAX_MESSAGE,
    TRANSITIONS,
    Job,
    JobStatus,
    Progress,
    check_transition,
    truncate_head,
    truncate_tail,
)

SCHEMA_VERSION: Final = 1

CODE: Final = {
    JobStatus.NEW: "N",
    JobStatus.QUEUED: "Q",
    JobStatus.RUNNING: "R",
    JobStatus.RETRYING: "Y",
    JobStatus.COMPLETED: "C",
    JobStatus.FAILED: "F",
    JobStatus.CANCELLED: "X",
    JobStatus.SKIPPED: "S",
}
STATUS_OF: Final = {code: status for status, code in CODE.items()}
# By the status's value: Enum.__hash__ is a Python-level call, and state changes are hot.
_CODE_OF_VALUE: Final = {status.value: code for status, code in CODE.items()}
ACTIVE_CODES: Final = frozenset("NQRY")
_TERMINAL_CODES: Final = frozenset("CFXS")
_ALLOWED_CODES: Final = frozenset(
    (CODE[old], CODE[new]) for old, targets in TRANSITIONS.items() for new in targets
)
TYPE_OF_PREFIX: Final = {t.prefix: t for t in JobType}
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def now_us() -> int:
    """Wall-clock time in whole microseconds since the epoch."""
    return time.time_ns() // 1000


# Jobs written by one batch share their timestamps: converting each distinct one once saves
# most of record_to_job's time on the dispatch path. Bounded; races only cost a recompute.
_DATETIMES: dict[int, datetime] = {}


def _datetime_of(us: int) -> datetime:
    dt = _DATETIMES.get(us)
    if dt is None:
        if len(_DATETIMES) >= 1024:
            _DATETIMES.clear()
        dt = _DATETIMES[us] = _EPOCH + timedelta(microseconds=us)
    return dt



# --------------------------------------------------------------------------- records


def new_record(
    job_id: str,
    params_text: str,
    *,
    key: str | None,
    max_retries: int,
    now: int,
    status: JobStatus = JobStatus.NEW,
    timeout_s: float | None = None,
) -> dict[str, Any]:
    """A fresh job record (a plain dict: this is the stored form, short keys keep it small)."""
    rec = _TEMPLATE.copy()  # a copy and seven stores: half the cost of a 17-key literal
    rec["id"] = job_id
    rec["s"] = _CODE_OF_VALUE[status._value_]
    rec["p"] = params_text
    rec["k"] = key
    rec["mr"] = max_retries
    rec["c"] = rec["u"] = now
    rec["to"] = timeout_s
    return rec


_TEMPLATE: Final[dict[str, Any]] = {
    "v": SCHEMA_VERSION, "id": None, "s": None, "p": None, "k": None, "rc": 0, "mr": None,
    "m": None, "x": None, "pg": None, "c": None, "u": None, "st": None, "f": None, "ra": None,
    "to": None, "cr": False,
}


def encode_record(rec: dict[str, Any]) -> bytes:
    return orjson.dumps(rec)


def decode_record(job_id: str, raw: bytes | memoryview) -> dict[str, Any]:
    """Decode a stored record, checking its shape.

    Raises:
        CorruptRecord: naming the job, for undecodable bytes, a foreign record, or a schema
            version this code does not know.
    """
    try:
        rec = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise CorruptRecord(job_id, f"not JSON ({exc})") from exc
    if not isinstance(rec, dict):
        raise CorruptRecord(job_id, f"a JSON {type(rec).__name__}, not a job record")
    version = rec.get("v")
    if version != SCHEMA_VERSION:
        if isinstance(version, int) and 0 < version < SCHEMA_VERSION:
            rec = _upgrade(rec)
        else:
            raise CorruptRecord(
                job_id, f"schema version {version!r}; this code reads {SCHEMA_VERSION}"
            )
    if rec.get("id") != job_id or rec.get("s") not in STATUS_OF:
        raise CorruptRecord(job_id, "record does not describe this job")
    checked: dict[str, Any] = rec
    return checked


def _upgrade(rec: dict[str, Any]) -> dict[str, Any]:
    """Bring an older record to the current schema (no older schema exists yet)."""
    return rec


def record_to_job(rec: dict[str, Any]) -> Job:
    job_id = JobId(rec["id"])
    try:
        pg = rec["pg"]
        st, f, ra = rec["st"], rec["f"], rec["ra"]
        # Positional: a frozen dataclass with sixteen keyword arguments costs twice as much,
        # and this runs for every job started and every job read.
        return Job(
            job_id,
            TYPE_OF_PREFIX[job_id[:2]],
            STATUS_OF[rec["s"]],
            rec["p"],
            rec["k"],
            rec["rc"],
            rec["mr"],
            rec["m"],
            rec["x"],
            None if pg is None else Progress(pg[0], pg[1], pg[2]),
            _datetime_of(rec["c"]),
            _datetime_of(rec["u"]),
            None if st is None else _datetime_of(st),
            None if f is None else _datetime_of(f),
            None if ra is None else _datetime_of(ra),
            rec.get("to"),
        )
    except (KeyError, TypeError, IndexError) as exc:
        raise CorruptRecord(job_id, f"missing or malformed field {exc}") from exc


def apply_move(rec: dict[str, Any], new: JobStatus, now: int, fields: dict[str, Any]) -> str:
    """Move the record itself to ``new`` (checked against the transition table) and set
    ``fields`` and the times the move stamps; return the status code it had. Every backend's
    write transaction calls this, then keeps its own indexes in step.

    Raises:
        InvalidTransition: naming both statuses; the record is left as it was.
    """
    old_code: str = rec["s"]
    new_code = _CODE_OF_VALUE[new._value_]
    # Status codes are short strings: checking them is cheaper than hashing enums, and this
    # runs for every state change.
    if (old_code, new_code) not in _ALLOWED_CODES:
        check_transition(rec["id"], STATUS_OF[old_code], new)  # raises, naming both
    rec.update(fields)
    rec["s"] = new_code
    rec["u"] = now
    if new_code in _TERMINAL_CODES:
        rec["f"] = now
    elif new_code == "R":
        rec["st"] = now
    return old_code


def running_job(rec: dict[str, Any], started_us: int) -> Job:
    """The job as it is once its attempt starts at ``started_us``: what the executor sees.
    (The actor builds it from the claimed record while the store commits the same change.)"""
    view = dict(rec)
    view["s"] = "R"
    view["st"] = view["u"] = started_us
    view["m"] = view["pg"] = None
    return record_to_job(view)


def truncate_message(text: str | None) -> str | None:
    return truncate_head(text, MAX_MESSAGE)


def append_trace(existing: str | None, new: str | None) -> str | None:
    """Add an attempt's trace to the job's trace, keeping the newest 10,000 characters."""
    if not new:
        return existing
    combined = new if not existing else f"{existing}\n{new}"
    return truncate_tail(combined, MAX_EXCEPTION_TRACE)
