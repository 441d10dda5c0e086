"""The durable job store: job records and their indexes in one LMDB environment.

Layout (named databases in ``<path>/jobs.lmdb``):

``jobs``      job id -> record (orjson; short keys, see :func:`encode_record`)
``status``    status code (1 byte) + job id -> b"" — every listing by status, in creation order;
              because ids start with their type prefix, status + type is a range too
``keys``      idempotency key -> job id, for active jobs only (the uniqueness check)
``due``       run_after µs (8 bytes, big-endian) + job id -> b"" — Retrying jobs by due time
``cancels``   job id -> b"" — cancel requests for running jobs, from other processes
``counts``    status code + type prefix -> count (8 bytes) — statistics without a scan
``meta``      schema version

Every write is one LMDB write transaction: the idempotency check and the insert happen in the
same transaction, which LMDB serialises across threads and processes. Reads are short MVCC
snapshots. :class:`JobStore` is the public face (read and submit from any process);
:class:`StoreTxn` is the write-side toolkit the runtime's supervisor uses for group commits.
"""

from __future__ import annotations

import contextlib
import heapq
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final, TypeVar

import lmdb
import orjson

from ._txngate import TxnGate
from .errors import (
    CancelNotAllowed,
    CorruptRecord,
    IdempotentConflict,
    InvalidParams,
    InvalidTransition,
    JobNotFound,
    StoreError,
    UnknownJobType,
)
from .executor import JobExecutor
from .ids import JobId, JobType
from .model import (
    MAX_EXCEPTION_TRACE,
    MAX_IDEMPOTENCY_KEY,
    MAX_MESSAGE,
    TRANSITIONS,
    Job,
    JobFilter,
    JobRow,
    JobStatus,
    Progress,
    check_transition,
    truncate_head,
    truncate_tail,
)

__all__ = ["SCHEMA_VERSION", "JobStore", "StoreTxn", "check_idempotency_key", "parse_params"]

SCHEMA_VERSION: Final = 1
MAX_PARAMS_BYTES: Final = 1 << 20
MAX_PARAMS_DEPTH: Final = 32

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

T = TypeVar("T")


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


# --------------------------------------------------------------------------- input checks


def _depth_ok(value: Any, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return False
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return True


def parse_params(params: Any) -> tuple[dict[str, Any], str]:
    """Accept parameters as a dict or JSON text; return the dict and its canonical JSON text.

    The dict is decoded from the text: what a validator sees is exactly what is stored.

    Raises:
        InvalidParams: bad JSON, not an object, NaN/infinity, non-string keys, non-UTF-8 text,
            over 1 MiB, or nested deeper than 32 levels.
    """
    text = params_text(params)
    return orjson.loads(text), text


def params_text(params: Any) -> str:
    """The canonical JSON text of parameters given as a dict or JSON text, checked as
    :func:`parse_params` checks them (for a job whose executor does not look at them)."""
    if isinstance(params, (bytes, bytearray, memoryview)):
        try:
            params = bytes(params).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidParams(f"parameters are not valid UTF-8: {exc}") from exc
    if isinstance(params, str):
        if len(params) > MAX_PARAMS_BYTES:
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
    # Only containers can nest: most parameters are flat and skip the walk.
    nested = bool(value) and any(isinstance(v, (dict, list)) for v in value.values())
    if nested and not _depth_ok(value, MAX_PARAMS_DEPTH):
        raise InvalidParams(f"parameters are nested deeper than {MAX_PARAMS_DEPTH} levels")
    try:
        text = orjson.dumps(value).decode("utf-8")
    except (TypeError, orjson.JSONEncodeError) as exc:
        raise InvalidParams(f"parameters cannot be stored as JSON: {exc}") from exc
    if len(text) > MAX_PARAMS_BYTES:
        raise InvalidParams(f"parameters are {len(text)} bytes as JSON; the limit is 1 MiB")
    # orjson writes NaN and infinities as null; refuse them rather than change the caller's data.
    if "null" in text and _has_non_finite(value):
        raise InvalidParams("parameters contain NaN or infinity, which JSON cannot hold")
    return text


def _has_non_finite(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float) and (item != item or item in (float("inf"), float("-inf"))):
            return True
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def check_idempotency_key(key: Any) -> str | None:
    """Return the key if acceptable: None, or 1–256 characters of text without NUL.

    Raises:
        InvalidParams: naming what is wrong with it.
    """
    if key is None:
        return None
    if not isinstance(key, str):
        raise InvalidParams(
            f"idempotency_key must be a string, not {type(key).__name__}", field="idempotency_key"
        )
    if not key:
        raise InvalidParams("idempotency_key must not be empty", field="idempotency_key")
    if len(key) > MAX_IDEMPOTENCY_KEY:
        raise InvalidParams(
            f"idempotency_key is {len(key)} characters; the limit is {MAX_IDEMPOTENCY_KEY}",
            field="idempotency_key",
        )
    if "\x00" in key:
        raise InvalidParams("idempotency_key must not contain NUL", field="idempotency_key")
    try:
        key.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidParams(
            f"idempotency_key is not valid Unicode text: {exc}", field="idempotency_key"
        ) from exc
    return key


def check_max_retries(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 1000:
        raise InvalidParams(
            f"max_retries must be a whole number from 0 to 1000, not {value!r}",
            field="max_retries",
        )
    return value


def check_timeout(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise InvalidParams(f"timeout_s must be a number > 0, not {value!r}", field="timeout_s")
    return float(value)


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


def _due_key(run_after_us: int, job_id: str) -> bytes:
    return run_after_us.to_bytes(8, "big") + job_id.encode()


# --------------------------------------------------------------------------- environments


class _SharedEnv:
    """One lmdb.Environment per path per process, shared by every JobStore on that path."""

    def __init__(self, path: Path, env: lmdb.Environment, durable: bool) -> None:
        self.path = path
        self.env = env
        self.durable = durable
        self.users = 0
        self.gate = TxnGate()
        self.jobs = env.open_db(b"jobs")
        self.status = env.open_db(b"status")
        self.keys = env.open_db(b"keys")
        self.due = env.open_db(b"due")
        self.cancels = env.open_db(b"cancels")
        self.counts = env.open_db(b"counts")
        self.meta = env.open_db(b"meta")
        # The last active records this process wrote, as (stored bytes, decoded copy): the
        # runtime reads back nearly every record it writes (a job it created, to start it; a
        # job it started, to finish it). A read whose bytes equal the cached bytes takes a copy
        # of the dict instead of decoding; any other writer's change shows as different bytes.
        self.written: dict[str, tuple[bytes, dict[str, Any]]] = {}


_ENVS: dict[Path, _SharedEnv] = {}
_ENVS_LOCK = threading.Lock()
_INITIAL_MAP_SIZE: Final = 256 << 20
_WRITTEN_CACHE: Final = 4096  # records; about 1 KB each


def _acquire_env(path: Path, map_size: int | None, durable: bool) -> _SharedEnv:
    with _ENVS_LOCK:
        shared = _ENVS.get(path)
        if shared is None:
            db_path = path / "jobs.lmdb"
            try:
                db_path.mkdir(parents=True, exist_ok=True)
                env = lmdb.open(
                    str(db_path),
                    map_size=map_size or _INITIAL_MAP_SIZE,
                    max_dbs=8,
                    max_readers=1024,
                    # Durable: every commit flushes its data pages, then its meta page, before
                    # it returns. Committing unsynced and calling env.sync() afterwards is NOT
                    # the same: the kernel may write the new meta page before the pages it
                    # points to, and a power loss in between corrupts the store instead of
                    # losing one transaction.
                    sync=durable,
                    metasync=durable,
                )
            except (OSError, lmdb.Error) as exc:
                raise StoreError(f"cannot open job store at {path}: {exc}") from exc
            shared = _SharedEnv(path, env, durable)
            _check_schema(shared)
            _ENVS[path] = shared
        shared.users += 1
        return shared


def _release_env(shared: _SharedEnv) -> None:
    with _ENVS_LOCK:
        shared.users -= 1
        if shared.users == 0:
            _ENVS.pop(shared.path, None)
            shared.env.close()


def _check_schema(shared: _SharedEnv) -> None:
    with shared.env.begin(write=True, db=shared.meta) as txn:
        raw = txn.get(b"schema")
        if raw is None:
            txn.put(b"schema", str(SCHEMA_VERSION).encode())
            return
    try:
        version = int(raw)
    except ValueError:
        version = -1
    if version > SCHEMA_VERSION or version < 1:
        shared.env.close()
        raise StoreError(
            f"job store at {shared.path} has schema version {raw.decode(errors='replace')}; "
            f"this kalam-actors reads versions 1 to {SCHEMA_VERSION}"
        )
    shared.env.sync(True)


# --------------------------------------------------------------------------- write side


class StoreTxn:
    """The state changes of one write transaction. Made by :meth:`JobStore.write`.

    Keeps the indexes and counters in step with every record it writes.
    """

    def __init__(self, shared: _SharedEnv, txn: lmdb.Transaction) -> None:
        self._s = shared
        self.txn = txn
        self._counts: dict[str, int] = {}
        # Records read or written in this transaction, by id: a job created and started in
        # one group commit, or touched twice, is decoded at most once...
        self._recs: dict[str, dict[str, Any]] = {}
        # ...and the records written are encoded and put once, when the transaction ends.
        self._dirty: dict[str, dict[str, Any]] = {}
        self._new: set[str] = set()
        # Records inserted in this transaction, by id, with their status code now: their
        # status-index entry is written once, at the end. A job created and started in one
        # group commit is indexed Running only (not Queued, then deleted, then Running);
        # first_ids and ids_after merge these in, so the transaction sees them all along.
        self._unindexed: dict[str, str] = {}

    # -- reads inside the transaction
    def get(self, job_id: str) -> dict[str, Any] | None:
        """The record, as this transaction has it. The dict is the transaction's own: change
        it only to write it back (``put`` or ``move``)."""
        rec = self._recs.get(job_id)
        if rec is not None:
            return rec
        raw = self.txn.get(job_id.encode(), db=self._s.jobs)
        if raw is None:
            return None
        known = self._s.written.get(job_id)
        if known is not None and known[0] == raw:
            rec = self._recs[job_id] = dict(known[1])
        else:
            rec = self._recs[job_id] = decode_record(job_id, raw)
        return rec

    def require(self, job_id: str) -> dict[str, Any]:
        rec = self.get(job_id)
        if rec is None:
            raise JobNotFound(job_id)
        return rec

    def active_holder(self, key: str) -> str | None:
        raw = self.txn.get(key.encode(), db=self._s.keys)
        return None if raw is None else bytes(raw).decode()

    def first_ids(self, code: str, prefix: str, limit: int) -> list[str]:
        """Up to ``limit`` ids with status ``code`` and id prefix ``prefix``, oldest first."""
        start = (code + prefix).encode()
        out: list[str] = []
        cur = self.txn.cursor(db=self._s.status)
        if cur.set_range(start):
            for key in cur.iternext(keys=True, values=False):
                if not bytes(key).startswith(start) or len(out) >= limit:
                    break
                out.append(bytes(key[1:]).decode())
        return self._with_unindexed(out, code, prefix, None, limit)

    def _with_unindexed(
        self, stored: list[str], code: str, prefix: str, after: str | None, limit: int
    ) -> list[str]:
        """``stored`` (ids read from the status index, in order) merged with the records this
        transaction inserted whose index entries are still to be written."""
        if not self._unindexed:
            return stored
        fresh = [job_id for job_id, c in self._unindexed.items()
                 if c == code and job_id.startswith(prefix) and (after is None or job_id > after)]
        if not fresh:
            return stored
        return heapq.nsmallest(limit, stored + fresh)

    def ids_after(
        self, code: str, after: str | None, limit: int, *, id_prefix: str = ""
    ) -> list[str]:
        """Up to ``limit`` ids with status ``code`` (and ids starting with ``id_prefix``) that
        sort after ``after`` (from the start when None): a resumable walk of one status range,
        for batched work such as job-history pruning. Ids sort by type first; walk one type
        (``id_prefix="FL-"``) to walk in creation order."""
        prefix = (code + id_prefix).encode()
        start = code.encode() + (after or id_prefix).encode()
        out: list[str] = []
        cur = self.txn.cursor(db=self._s.status)
        if cur.set_range(start):
            for key in cur.iternext(keys=True, values=False):
                if not bytes(key).startswith(prefix) or len(out) >= limit:
                    break
                job_id = bytes(key[1:]).decode()
                if after is not None and job_id <= after:
                    continue
                out.append(job_id)
        return self._with_unindexed(out, code, id_prefix, after, limit)

    def due_ids(self, now: int, limit: int) -> list[tuple[int, str]]:
        """Up to ``limit`` Retrying jobs whose due time is at or before ``now``."""
        out: list[tuple[int, str]] = []
        cur = self.txn.cursor(db=self._s.due)
        if not cur.first():
            return out
        for key in cur.iternext(keys=True, values=False):
            due = int.from_bytes(key[:8], "big")
            if due > now or len(out) >= limit:
                break
            out.append((due, bytes(key[8:]).decode()))
        return out

    def next_due_after(self, now: int) -> int | None:
        """The first due time later than ``now``, if any."""
        cur = self.txn.cursor(db=self._s.due)
        if not cur.set_range((now + 1).to_bytes(8, "big")):
            return None
        return int.from_bytes(cur.key()[:8], "big")

    # -- writes
    def _count(self, code: str, job_id: str, delta: int) -> None:
        key = code + job_id[:2]
        counts = self._counts
        counts[key] = counts.get(key, 0) + delta

    def insert(self, rec: dict[str, Any]) -> None:
        """Store a new record (the caller has checked its idempotency key)."""
        job_id = rec["id"]
        bid = job_id.encode()
        txn = self.txn
        s = self._s
        if job_id in self._recs:
            raise StoreError(f"[{job_id}] a job with this id already exists")
        self._recs[job_id] = self._dirty[job_id] = rec
        self._new.add(job_id)  # _finish refuses it if the id is taken in the store
        code = self._unindexed[job_id] = rec["s"]
        if rec["k"] is not None and code in ACTIVE_CODES:
            txn.put(rec["k"].encode(), bid, db=s.keys)
        if code == "Y" and rec["ra"] is not None:
            txn.put(_due_key(rec["ra"], job_id), b"", db=s.due)
        key = code + job_id[:2]
        counts = self._counts
        counts[key] = counts.get(key, 0) + 1

    def put(self, rec: dict[str, Any]) -> None:
        """Rewrite a record whose status did not change (progress, cancel flags)."""
        self._recs[rec["id"]] = self._dirty[rec["id"]] = rec

    def move(self, rec: dict[str, Any], new: JobStatus, now: int, **fields: Any) -> None:
        """Move a record to ``new`` (checked against the transition table), set ``fields``,
        and keep every index in step. Raises InvalidTransition and writes nothing if refused."""
        job_id = rec["id"]
        old_code = rec["s"]
        new_code = _CODE_OF_VALUE[new._value_]
        # Status codes are short strings: checking them is cheaper than hashing enums, and
        # this runs for every state change.
        if (old_code, new_code) not in _ALLOWED_CODES:
            check_transition(job_id, STATUS_OF[old_code], new)  # raises, naming both
        s = self._s
        txn = self.txn
        if old_code == "Y" and rec["ra"] is not None:
            txn.delete(_due_key(rec["ra"], job_id), db=s.due)
        rec.update(fields)
        rec["s"] = new_code
        rec["u"] = now
        if new_code in _TERMINAL_CODES:
            rec["f"] = now
            key = rec["k"]
            if key is not None and txn.get(key.encode(), db=s.keys) == job_id.encode():
                txn.delete(key.encode(), db=s.keys)
            if rec["cr"]:
                txn.delete(job_id.encode(), db=s.cancels)
        elif new_code == "R":
            rec["st"] = now
        if new_code == "Y" and rec["ra"] is not None:
            txn.put(_due_key(rec["ra"], job_id), b"", db=s.due)
        unindexed = self._unindexed
        if job_id in unindexed:
            unindexed[job_id] = new_code
        else:
            txn.delete((old_code + job_id).encode(), db=s.status)
            txn.put((new_code + job_id).encode(), b"", db=s.status)
        self._recs[job_id] = self._dirty[job_id] = rec
        prefix = job_id[:2]
        counts = self._counts
        old_key = old_code + prefix
        new_key = new_code + prefix
        counts[old_key] = counts.get(old_key, 0) - 1
        counts[new_key] = counts.get(new_key, 0) + 1

    def delete(self, rec: dict[str, Any]) -> None:
        """Remove a terminal record and its index entries (job history pruning)."""
        job_id = rec["id"]
        if rec["s"] in ACTIVE_CODES:
            raise InvalidTransition(
                job_id, STATUS_OF[rec["s"]], None, "cannot delete an active job"
            )
        self._recs.pop(job_id, None)
        self._dirty.pop(job_id, None)
        self._s.written.pop(job_id, None)
        self.txn.delete(job_id.encode(), db=self._s.jobs)
        if self._unindexed.pop(job_id, None) is None:
            self.txn.delete((rec["s"] + job_id).encode(), db=self._s.status)
        self._count(rec["s"], job_id, -1)

    def get_slot(self, name: str) -> int | None:
        """The last schedule slot recorded for ``name``."""
        raw = self.txn.get(b"sched:" + name.encode(), db=self._s.meta)
        return None if raw is None else int(raw)

    def put_slot(self, name: str, slot: int) -> None:
        self.txn.put(b"sched:" + name.encode(), str(slot).encode(), db=self._s.meta)

    def quarantine(self, job_id: str, code: str, due: int | None = None) -> None:
        """Take an unreadable record out of the status (and due) index so work goes on; the
        record stays, and ``meta`` remembers it under ``quarantine:<id>``."""
        if self._unindexed.pop(job_id, None) is None:
            self.txn.delete((code + job_id).encode(), db=self._s.status)
        if due is not None:
            self.txn.delete(_due_key(due, job_id), db=self._s.due)
        self.txn.put(b"quarantine:" + job_id.encode(), code.encode(), db=self._s.meta)
        self._count(code, job_id, -1)

    def cancel_requests(self, limit: int) -> list[str]:
        cur = self.txn.cursor(db=self._s.cancels)
        out: list[str] = []
        for key in cur.iternext(keys=True, values=False):
            if len(out) >= limit:
                break
            out.append(bytes(key).decode())
        return out

    def request_cancel(self, job_id: str) -> None:
        self.txn.put(job_id.encode(), b"", db=self._s.cancels)

    def clear_cancel_request(self, job_id: str) -> None:
        self.txn.delete(job_id.encode(), db=self._s.cancels)

    def _finish(self) -> None:
        """Write what the transaction deferred: each changed record once, then the counters."""
        dirty = self._dirty
        if dirty:
            self._put_records(dirty)
            dirty.clear()
            self._new.clear()
        unindexed = self._unindexed
        if unindexed:
            self.txn.cursor(db=self._s.status).putmulti(
                (code.encode() + job_id.encode(), b"") for job_id, code in unindexed.items()
            )
            unindexed.clear()
        self._flush_counts()

    def _put_records(self, dirty: dict[str, dict[str, Any]]) -> None:
        new = self._new
        written = self._s.written
        if len(written) + len(dirty) > _WRITTEN_CACHE:
            written.clear()
        remember = len(dirty) <= _WRITTEN_CACHE  # a bulk create would only churn it

        def pairs(fresh: bool) -> Iterator[tuple[bytes, bytes]]:
            # A generator, not a list: 100,000 live tuples would wake the cyclic GC for
            # nothing, several times over.
            for job_id, rec in dirty.items():
                if (job_id in new) is fresh:
                    raw = encode_record(rec)
                    if remember and rec["s"] in ACTIVE_CODES:
                        written[job_id] = (raw, dict(rec))
                    else:
                        written.pop(job_id, None)
                    yield job_id.encode(), raw

        # putmulti loops in C: about half the cost of one txn.put call per record.
        cur = self.txn.cursor(db=self._s.jobs)
        cur.putmulti(pairs(False))
        if new:
            consumed, added = cur.putmulti(pairs(True), overwrite=False)
            if added != consumed:  # an id collision: the whole transaction is refused
                get = self.txn.get
                jobs = self._s.jobs
                ours = {job_id.encode(): encode_record(dirty[job_id])
                        for job_id in new if job_id in dirty}
                # A stored record that differs from ours is surely one that was there before.
                taken = next((k for k, v in ours.items() if get(k, db=jobs) != v),
                             next(iter(ours)))
                raise StoreError(f"[{taken.decode()}] a job with this id already exists "
                                 f"({consumed - added} of the {consumed} new ids)")

    def _flush_counts(self) -> None:
        for name, delta in self._counts.items():
            if delta:
                key = name.encode()
                raw = self.txn.get(key, db=self._s.counts)
                value = (int.from_bytes(raw, "big", signed=True) if raw else 0) + delta
                self.txn.put(key, value.to_bytes(8, "big", signed=True), db=self._s.counts)
        self._counts.clear()


# --------------------------------------------------------------------------- the store


class JobStore:
    """Read and submit access to a job store, from any process, without running executors.

    Args:
        path: the store's folder (created if missing).
        executors: executors whose ``validate_params`` check new jobs; by default the built-in
            executors, when they are importable.
        map_size: initial LMDB map size in bytes; it grows when full.
        durable: every commit is on disk before it returns (the default). ``False`` is for
            throwaway stores: a commit may be lost to a power cut, and one not yet flushed
            may corrupt the store. Stores on one path in one process share the environment,
            and with it the choice of the first one opened; a durable store on an
            environment opened non-durably still flushes each write it makes, after its
            commit.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        executors: Iterable[JobExecutor] | None = None,
        map_size: int | None = None,
        durable: bool = True,
    ) -> None:
        self.path = Path(path).resolve()
        self._shared = _acquire_env(self.path, map_size, durable)
        self._closed = False
        self._validators: dict[JobType, JobExecutor] | None = (
            None if executors is None else {e.job_type: e for e in executors}
        )

    # -- lifecycle
    def close(self) -> None:
        """Release the environment (shared with other stores on this path in this process)."""
        if not self._closed:
            self._closed = True
            _release_env(self._shared)

    def __enter__(self) -> JobStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def env(self) -> lmdb.Environment:
        return self._shared.env

    # -- transactions
    def _retry_resized(self, fn: Callable[[], T]) -> T:
        """Run ``fn``, adopting a map size grown by another process, or growing it when full."""
        for _ in range(64):
            try:
                return fn()
            except lmdb.MapResizedError:
                self._shared.gate.exclusive(lambda: self.env.set_mapsize(0))
            except lmdb.MapFullError:
                self._shared.gate.exclusive(self._grow)
            except lmdb.Error as exc:
                raise StoreError(f"job store {self.path}: {exc}") from exc
        raise StoreError(f"job store {self.path}: could not grow the map")

    def _grow(self) -> None:
        self.env.set_mapsize(self.env.info()["map_size"] * 2)

    def write(self, fn: Callable[[StoreTxn], T], *, sync: bool = True) -> T:
        """Run ``fn`` in one write transaction and commit it (re-run whole if the map grows).

        ``fn`` must only touch the store through the StoreTxn it gets: it may run twice. On a
        durable store the commit is on disk when this returns, whatever ``sync`` says; on a
        store opened with ``durable=False``, ``sync`` flushes it afterwards.
        """

        def attempt() -> T:
            with self._shared.gate.txn(), self.env.begin(write=True) as txn:
                stxn = StoreTxn(self._shared, txn)
                result = fn(stxn)
                stxn._finish()
            if sync and not self._shared.durable:
                self.env.sync(True)
            return result

        return self._retry_resized(attempt)

    def sync(self) -> None:
        """Flush committed transactions to disk (fsync). A durable store's commits are on
        disk already; this is for a store opened with ``durable=False``."""
        try:
            self.env.sync(True)
        except lmdb.Error as exc:
            raise StoreError(f"job store {self.path}: sync failed: {exc}") from exc

    def _begin_read(self) -> lmdb.Transaction:
        """A read transaction, opened inside the gate (pair it with :meth:`_end_read`)."""
        return self._retry_resized(self._begin_read_once)

    def _begin_read_once(self) -> lmdb.Transaction:
        gate = self._shared.gate
        gate.enter()
        try:
            return self.env.begin(write=False, buffers=False)
        except BaseException:
            gate.leave()
            raise

    def _end_read(self, txn: lmdb.Transaction) -> None:
        txn.abort()
        self._shared.gate.leave()

    @contextlib.contextmanager
    def _read(self) -> Iterator[lmdb.Transaction]:
        txn = self._begin_read()
        try:
            yield txn
        finally:
            self._end_read(txn)

    # -- reads
    def get_record(self, job_id: str) -> dict[str, Any] | None:
        job_id = JobId.parse(job_id)
        # No context manager and no retry wrapper on the way in: this is the hot read
        # (get_job, watch_job), a few µs in all. A resized map takes the general path.
        try:
            txn = self._begin_read_once()
        except lmdb.Error:
            txn = self._begin_read()
        try:
            raw = txn.get(job_id.encode(), db=self._shared.jobs)
        finally:
            self._end_read(txn)
        if raw is None:
            return None
        known = self._shared.written.get(job_id)
        if known is not None and known[0] == raw:
            return dict(known[1])
        return decode_record(job_id, raw)

    def get_job(self, job_id: str) -> Job | None:
        """The job with this id, or None.

        Raises:
            InvalidJobId: for a malformed id.
            CorruptRecord: if its record cannot be read.
        """
        rec = self.get_record(job_id)
        return None if rec is None else record_to_job(rec)

    def list_jobs(self, job_filter: JobFilter | None = None) -> list[Job]:
        """Jobs matching ``job_filter`` in creation order (or newest first), read by index.

        A record that cannot be decoded raises CorruptRecord naming it.
        """
        return [record_to_job(r) for r in self.iter_records(job_filter or JobFilter())]

    def system_jobs(self, job_filter: JobFilter | None = None) -> Iterator[JobRow]:
        """The ``system.jobs`` view: one :class:`JobRow` per matching job."""
        for rec in self.iter_records(job_filter or JobFilter()):
            yield JobRow.from_job(record_to_job(rec))

    def iter_records(self, f: JobFilter) -> Iterator[dict[str, Any]]:
        limit = f.limit
        if limit is not None and (not isinstance(limit, int) or limit < 0):
            raise InvalidParams(f"limit must be a whole number >= 0, not {limit!r}", field="limit")
        prefixes = self._prefixes(f)
        statuses = f.statuses()
        records = self._iter_filtered(f, prefixes, statuses)
        for count, rec in enumerate(records):
            if limit is not None and count >= limit:
                return
            yield rec

    def _prefixes(self, f: JobFilter) -> list[str]:
        """The id prefixes to range over: one per job type (ids sort by type first, so a
        listing in creation order merges the types' ranges by the time-ordered suffix)."""
        types = f.job_types() or tuple(JobType)
        id_prefix = f.job_id_prefix or ""
        out = []
        for t in types:
            full = t.prefix + "-"
            if full.startswith(id_prefix):
                out.append(full)
            elif id_prefix.startswith(full):
                out.append(id_prefix)
        return sorted(out)

    def _iter_filtered(
        self, f: JobFilter, prefixes: list[str], statuses: tuple[JobStatus, ...] | None
    ) -> Iterator[dict[str, Any]]:
        shared = self._shared
        key = f.idempotency_key
        wanted_prefixes = tuple(prefixes)
        with self._read() as txn:
            if key is not None and statuses is not None and all(s.is_active for s in statuses):
                # The keys index answers this without a scan.
                holder = txn.get(key.encode(), db=shared.keys)
                ids: Iterable[bytes] = [] if holder is None else [bytes(holder)]
            elif statuses is None:
                ids = self._merge(
                    [self._range_ids(txn, shared.jobs, p.encode(), 0, f.newest_first)
                     for p in prefixes],
                    f.newest_first,
                )
            else:
                ids = self._merge(
                    [
                        self._range_ids(txn, shared.status, (CODE[s] + p).encode(), 1,
                                        f.newest_first)
                        for s in statuses
                        for p in prefixes
                    ],
                    f.newest_first,
                )
            for bid in ids:
                raw = txn.get(bid, db=shared.jobs)
                if raw is None:
                    continue
                rec = decode_record(bid.decode(), bytes(raw))
                if statuses is not None and STATUS_OF[rec["s"]] not in statuses:
                    continue
                if key is not None and rec["k"] != key:
                    continue
                if not rec["id"].startswith(wanted_prefixes):
                    continue
                yield rec

    @staticmethod
    def _merge(iters: list[Iterator[bytes]], reverse: bool) -> Iterator[bytes]:
        """Merge per-type id ranges into creation order (by the suffix after ``XX-``)."""
        if len(iters) == 1:
            return iters[0]
        return heapq.merge(*iters, key=_suffix, reverse=reverse)

    @staticmethod
    def _range_ids(
        txn: lmdb.Transaction, db: Any, start: bytes, strip: int, reverse: bool
    ) -> Iterator[bytes]:
        cur = txn.cursor(db=db)
        if reverse:
            # Position just past the prefix range, then walk back.
            end = _prefix_end(start)
            positioned = cur.set_range(end) if end is not None else cur.last()
            if positioned and end is not None:
                positioned = cur.prev()
            elif not positioned:
                positioned = cur.last()
            if not positioned:
                return
            for k in cur.iterprev(keys=True, values=False):
                if not bytes(k).startswith(start):
                    return
                yield bytes(k[strip:])
        else:
            if not cur.set_range(start):
                return
            for k in cur.iternext(keys=True, values=False):
                if not bytes(k).startswith(start):
                    return
                yield bytes(k[strip:])

    def counts(self) -> dict[tuple[JobStatus, JobType], int]:
        """How many jobs there are of each status and type (kept in step by every write)."""
        out: dict[tuple[JobStatus, JobType], int] = {}
        with self._read() as txn:
            for key, raw in txn.cursor(db=self._shared.counts):
                value = int.from_bytes(raw, "big", signed=True)
                code, prefix = bytes(key[:1]).decode(), bytes(key[1:]).decode()
                if value > 0 and code in STATUS_OF and prefix in TYPE_OF_PREFIX:
                    out[(STATUS_OF[code], TYPE_OF_PREFIX[prefix])] = value
        return out

    def last_slot(self, name: str) -> int | None:
        """The last slot the runtime created a job for, for the schedule ``name``."""
        with self._read() as txn:
            raw = txn.get(b"sched:" + name.encode(), db=self._shared.meta)
        return None if raw is None else int(raw)

    def has_status(self, status: JobStatus) -> bool:
        with self._read() as txn:
            cur = txn.cursor(db=self._shared.status)
            code = CODE[status].encode()
            return bool(cur.set_range(code)) and bytes(cur.key()).startswith(code)

    def has_cancel_requests(self) -> bool:
        with self._read() as txn:
            return bool(txn.cursor(db=self._shared.cancels).first())

    # -- submit
    def _validator(self, job_type: JobType) -> JobExecutor | None:
        if self._validators is None:
            self._validators = _builtin_validators()
        return self._validators.get(job_type)

    def prepare(
        self,
        job_type: JobType | str,
        params: Any,
        *,
        idempotency_key: str | None = None,
        max_retries: int = 3,
        timeout_s: float | None = None,
        validator: JobExecutor | None = None,
        require_validator: bool = False,
    ) -> tuple[JobType, str, str | None, int, float | None]:
        """Check everything about a new job that can be checked before a transaction."""
        jt = JobType.parse(job_type)
        params_dict, text = parse_params(params)
        key = check_idempotency_key(idempotency_key)
        retries = check_max_retries(max_retries)
        timeout = check_timeout(timeout_s)
        executor = validator if validator is not None else self._validator(jt)
        if executor is None and require_validator:
            raise UnknownJobType(f"no executor is registered for job type {jt.value}")
        if executor is not None:
            executor.validate_params(params_dict)
        return jt, text, key, retries, timeout

    def create_job(
        self,
        job_type: JobType | str,
        params: Any,
        *,
        idempotency_key: str | None = None,
        max_retries: int = 3,
        timeout_s: float | None = None,
    ) -> JobId:
        """Submit a job (status New); a running runtime picks it up within its poll interval.

        Raises:
            UnknownJobType, InvalidParams: for bad input; nothing is written.
            IdempotentConflict: when an active job holds ``idempotency_key``.
        """
        jt, text, key, retries, timeout = self.prepare(
            job_type, params, idempotency_key=idempotency_key, max_retries=max_retries,
            timeout_s=timeout_s,
        )
        job_id = JobId.new(jt)
        now = now_us()

        def insert(txn: StoreTxn) -> JobId:
            if key is not None:
                holder = txn.active_holder(key)
                if holder is not None:
                    raise IdempotentConflict(key, holder)
            txn.insert(new_record(job_id, text, key=key, max_retries=retries, now=now,
                                  timeout_s=timeout))
            return job_id

        return self.write(insert)

    def cancel_job(self, job_id: str, *, wait_s: float = 5.0) -> Job:
        """Cancel a job. New, Queued and Retrying jobs end Cancelled at once. For a Running
        job a cancel request is recorded for the runtime, and this waits up to ``wait_s`` for
        its verdict.

        Raises:
            JobNotFound, InvalidTransition (terminal job), CancelNotAllowed (the executor
            refused, or the runtime did not answer within ``wait_s``).
        """
        job_id = JobId.parse(job_id)
        now = now_us()

        def cancel(txn: StoreTxn) -> str:
            rec = txn.require(job_id)
            status = STATUS_OF[rec["s"]]
            if status.is_terminal:
                raise InvalidTransition(
                    job_id, status, JobStatus.CANCELLED,
                    f"Cannot cancel job in status {status.value}",
                )
            if status is JobStatus.RUNNING:
                validator = self._validator(JobId(job_id).job_type)
                if validator is not None and not validator.cancellable:
                    raise CancelNotAllowed(job_id, f"{validator.name} jobs cannot be cancelled")
                if not rec["cr"]:
                    rec["cr"] = True
                    rec.pop("cx", None)
                    txn.put(rec)
                    txn.request_cancel(job_id)
                return "requested"
            txn.move(rec, JobStatus.CANCELLED, now, m="Cancelled by user")
            return "done"

        if self.write(cancel) == "done":
            job = self.get_job(job_id)
            assert job is not None
            return job
        return self._await_cancel_verdict(job_id, wait_s)

    def _await_cancel_verdict(self, job_id: JobId, wait_s: float) -> Job:
        deadline = time.monotonic() + wait_s
        delay = 0.005
        while True:
            rec = self.get_record(job_id)
            if rec is None:
                raise JobNotFound(job_id)
            if rec.get("cx"):
                raise CancelNotAllowed(job_id, rec["cx"])
            if STATUS_OF[rec["s"]].is_terminal or (rec["cr"] and rec.get("ca")):
                return record_to_job(rec)
            if time.monotonic() >= deadline:
                raise CancelNotAllowed(
                    job_id, f"the runtime did not answer the cancel request within {wait_s} s "
                    "(is it running?); the request stays recorded"
                )
            time.sleep(delay)  # polling another process's verdict; there is no event to wait on
            delay = min(delay * 2, 0.1)


def _builtin_validators() -> dict[JobType, JobExecutor]:
    try:
        from .executors import builtin_executors
    except ImportError:
        return {}
    return {e.job_type: e for e in builtin_executors()}


def _suffix(job_id: bytes) -> bytes:
    return job_id[3:]


def _prefix_end(prefix: bytes) -> bytes | None:
    """The smallest key greater than every key starting with ``prefix``."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes([stripped[-1] + 1])


def truncate_message(text: str | None) -> str | None:
    return truncate_head(text, MAX_MESSAGE)


def append_trace(existing: str | None, new: str | None) -> str | None:
    """Add an attempt's trace to the job's trace, keeping the newest 10,000 characters."""
    if not new:
        return existing
    combined = new if not existing else f"{existing}\n{new}"
    return truncate_tail(combined, MAX_EXCEPTION_TRACE)
