"""The PostgreSQL job store: the store contract on a server that several runtimes share.

Layout, in one PostgreSQL schema (``kalam`` unless the URL's ``?schema=`` or ``schema=`` names
another one):

``kalam_schema``   the layout version (one row). The library creates and migrates the layout
                   inside a transaction that holds an advisory lock on the schema's name, so a
                   second process that opens the store meanwhile waits for it to finish.
``jobs``           one row per job: the record's fields as columns (see ``_COLUMNS``), plus
                   ``queue``, ``node`` and ``lease_until`` for multi-runtime work (unused yet)
                   and ``quarantined`` (the status code of an unreadable record taken out of
                   the work queues). Indexes: ``(status, id)`` for listings and claims;
                   ``(run_after, id)`` of Retrying jobs, the due index; a UNIQUE index on the
                   idempotency key of active jobs, so a key is held once across runtimes.
``kalam_cancels``  job id: cancel requests for running jobs, for the runtime running them.
``kalam_slots``    schedule name -> the last slot a job was created for.
``kalam_counts``   (status, type, delta) rows whose sums are the counts. Insert-only, so two
                   writers never wait for each other on a counter row; compacted now and then.

Records stay dicts with the short keys of :mod:`.records`; this module alone converts rows to
records and back. :class:`PgStoreTxn` has the methods of the LMDB ``StoreTxn`` with the same
semantics, so the verbs run on it unchanged; :class:`PgJobStore` is ``JobStore`` on this store.

Concurrency: READ COMMITTED, optimistic. Every UPDATE or DELETE of a job row is conditional on
the version of the row that the transaction read (its ``xmin``, which any change makes new,
whoever makes it: another runtime, a JobStore, an operator with psql). A row changed since is a
conflict: the transaction is rolled back and ``fn`` runs again on fresh reads; from the third
attempt on, reads lock their rows (``FOR NO KEY UPDATE``) so it cannot conflict again. An
idempotency key taken by a transaction that committed first (the unique index) is retried the
same way, and the retry then finds the holder and refuses the create, as one process would.

Round trips are what cost here (about 0.1 ms each on this machine): a write transaction sends
its changes as ONE statement when it ends (or before an index read, so that reads see the
transaction's own writes), the records a store object wrote or read last are kept (with their
row versions) so the next transaction needs no read to find them, and index reads fetch whole
rows in one query.
"""

from __future__ import annotations

import contextlib
import heapq
import random
import re
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Final, NoReturn, TypeVar, cast
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import errors as pg_errors
from psycopg.rows import TupleRow

from ..errors import CorruptRecord, InvalidParams, InvalidTransition, JobNotFound, StoreError
from ..executor import JobExecutor
from ..ids import JobId, JobType
from ..model import JobFilter, JobStatus
from ._lmdb import StoreTxn
from .jobstore import JobStore
from .records import (
    _TERMINAL_CODES,
    ACTIVE_CODES,
    CODE,
    SCHEMA_VERSION,
    STATUS_OF,
    TYPE_OF_PREFIX,
    apply_move,
)

__all__ = [
    "PG_SCHEMA_VERSION", "PgJobStore", "PgStoreTxn", "is_pg_url", "open_pg_store",
]

T = TypeVar("T")
Connection = psycopg.Connection[TupleRow]

#: The version of the table layout this code writes (``kalam_schema.version``).
PG_SCHEMA_VERSION: Final = 1
DEFAULT_SCHEMA: Final = "kalam"
URL_SCHEMES: Final = ("postgresql", "postgres")

# Attempts of one write before it gives up; after _OPTIMISTIC of them, reads lock their rows.
_ATTEMPTS: Final = 12
_OPTIMISTIC: Final = 2
# Records kept between transactions (about 1 KB each), as in the LMDB store.
_CACHE_SIZE: Final = 4096
# Rows fetched per query of a listing.
_PAGE: Final = 1000
# Commits between compactions of kalam_counts; and the rows counts() tolerates uncompacted.
_COMPACT_EVERY: Final = 256
_COMPACT_ROWS: Final = 4096
# pg_advisory_xact_lock(classid, objid): "kala", then the schema name's CRC.
_LOCK_CLASS: Final = 0x6B616C61
_SCHEMA_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_PREFIXES: Final = sorted(t.prefix for t in JobType)


# --------------------------------------------------------------------------- layout

_COLUMNS: Final = (
    "id", "v", "status", "params", "idempotency_key", "retry_count", "max_retries", "message",
    "trace", "progress_done", "progress_total", "progress_note", "created", "updated",
    "started", "finished", "run_after", "timeout_s", "cancel_requested", "cancel_accepted",
    "cancel_refused",
)
# The array type each column is sent as (one array per column: a batch is one statement).
_ARRAY_TYPES: Final = (
    "text", "int2", "bpchar", "text", "text", "int4", "int4", "text", "text", "int8", "int8",
    "text", "int8", "int8", "int8", "int8", "int8", "float8", "bool", "bool", "text",
)
# Columns a state change may rewrite (id, params, key, max_retries, created and timeout never
# change), by their index in _COLUMNS.
_MUTABLE: Final = (1, 2, 5, 7, 8, 9, 10, 11, 13, 14, 15, 16, 18, 19, 20)

# Layout version n -> n+1 is _MIGRATIONS[n]; {s} is the quoted schema name.
_CREATE_V1: Final = (
    "CREATE SCHEMA IF NOT EXISTS {s}",
    """CREATE TABLE {s}.kalam_schema (
        one boolean PRIMARY KEY DEFAULT true CHECK (one),
        version integer NOT NULL
    )""",
    """CREATE TABLE {s}.jobs (
        id text COLLATE "C" PRIMARY KEY,
        v smallint NOT NULL,
        status char(1) NOT NULL CHECK (status IN ('N', 'Q', 'R', 'Y', 'C', 'F', 'X', 'S')),
        params text NOT NULL,
        idempotency_key text COLLATE "C",
        retry_count integer NOT NULL,
        max_retries integer NOT NULL,
        message text,
        trace text,
        progress_done bigint,
        progress_total bigint,
        progress_note text,
        created bigint NOT NULL,
        updated bigint NOT NULL,
        started bigint,
        finished bigint,
        run_after bigint,
        timeout_s double precision,
        cancel_requested boolean NOT NULL DEFAULT false,
        cancel_accepted boolean,
        cancel_refused text,
        queue text NOT NULL DEFAULT 'default',
        node text,
        lease_until bigint,
        quarantined char(1)
    ) WITH (fillfactor = 85)""",
    "CREATE INDEX jobs_status_id ON {s}.jobs (status, id) WHERE quarantined IS NULL",
    # By type first, as LMDB's: a type with no free actor cannot hide another type's retries.
    "CREATE INDEX jobs_due ON {s}.jobs (left(id, 2), run_after, id) "
    "WHERE status = 'Y' AND quarantined IS NULL",
    "CREATE UNIQUE INDEX jobs_active_key ON {s}.jobs (idempotency_key) "
    "WHERE status IN ('N', 'Q', 'R', 'Y') AND idempotency_key IS NOT NULL",
    """CREATE TABLE {s}.kalam_cancels (
        job_id text COLLATE "C" PRIMARY KEY REFERENCES {s}.jobs (id) ON DELETE CASCADE
    )""",
    "CREATE TABLE {s}.kalam_slots (name text PRIMARY KEY, slot bigint NOT NULL)",
    """CREATE TABLE {s}.kalam_counts (
        status char(1) NOT NULL, job_type char(2) NOT NULL, n bigint NOT NULL
    )""",
    "INSERT INTO {s}.kalam_schema (version) VALUES (0)",
)
_MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (_CREATE_V1,)
# Constraints whose violation means "someone else committed first": run the write again.
_RETRY_CONSTRAINTS: Final = frozenset({"jobs_active_key", "kalam_slots_pkey"})


class _Sql:
    """Every statement of one schema, written out once."""

    def __init__(self, schema: str) -> None:
        s = _quote(schema)
        cols = ", ".join(_COLUMNS)
        self.schema = s
        select = f"SELECT {cols}, xmin::text FROM {s}.jobs"
        in_queue = "quarantined IS NULL"
        self.select = select
        self.get = f"{select} WHERE id = %s"
        self.first = f"{select} WHERE status = %s::bpchar AND {in_queue}"
        due = f"status = 'Y' AND {in_queue} AND left(id, 2) = %s"
        self.due = f"{select} WHERE {due} AND run_after <= %s ORDER BY run_after, id LIMIT %s"
        # Every type's due range, each read by the index, in one statement.
        due_all = (
            f"SELECT j.* FROM unnest(%s::text[]) AS p(prefix), LATERAL ("
            f"SELECT {cols}, xmin::text AS ver FROM {s}.jobs WHERE "
            f"{due.replace('%s', 'p.prefix')} AND run_after <= %s "
            "ORDER BY run_after, id LIMIT %s{lock}) AS j ORDER BY j.run_after, j.id LIMIT %s"
        )
        self.due_all = due_all.replace("{lock}", "")
        # Rows of a subquery are locked in it (FOR UPDATE outside would not reach them).
        self.due_all_locked = due_all.replace("{lock}", " FOR NO KEY UPDATE")
        self.next_due = (
            "SELECT min(first) FROM unnest(%s::text[]) AS p(prefix), LATERAL ("
            f"SELECT run_after AS first FROM {s}.jobs WHERE {due.replace('%s', 'p.prefix')} "
            "AND run_after > %s ORDER BY run_after LIMIT 1) AS j"
        )
        self.holder = (f"SELECT id FROM {s}.jobs WHERE idempotency_key = %s "
                       "AND status IN ('N', 'Q', 'R', 'Y') LIMIT 1")
        self.has_status = (f"SELECT EXISTS (SELECT 1 FROM {s}.jobs "
                           f"WHERE status = %s::bpchar AND {in_queue})")
        self.cancels = f"SELECT job_id FROM {s}.kalam_cancels ORDER BY job_id LIMIT %s"
        self.has_cancels = f"SELECT EXISTS (SELECT 1 FROM {s}.kalam_cancels)"
        self.slot = f"SELECT slot FROM {s}.kalam_slots WHERE name = %s"
        self.counts = (f"SELECT status, job_type, sum(n)::bigint, count(*) "
                       f"FROM {s}.kalam_counts GROUP BY 1, 2")
        self.compact = (
            f"WITH gone AS (DELETE FROM {s}.kalam_counts RETURNING status, job_type, n) "
            f"INSERT INTO {s}.kalam_counts (status, job_type, n) "
            "SELECT status, job_type, sum(n) FROM gone GROUP BY 1, 2 HAVING sum(n) <> 0"
        )
        # The parts of the one statement that writes a transaction's changes. Its arrays go
        # in binary (%b): half the time of text, which escapes every element.
        arrays = ", ".join(f"%b::{t}[]" for t in _ARRAY_TYPES)
        self.w_insert = f"i AS (INSERT INTO {s}.jobs ({cols}) SELECT * FROM unnest({arrays}))"
        mutable = [_COLUMNS[i] for i in _MUTABLE]
        sets = ", ".join(f"{c} = w.{c}" for c in mutable)
        upd_arrays = ", ".join(f"%b::{_ARRAY_TYPES[i]}[]" for i in _MUTABLE)
        self.w_update = (
            f"u AS (UPDATE {s}.jobs AS j SET {sets} "
            f"FROM unnest(%b::text[], %b::text[], {upd_arrays}) "
            f"AS w(id, ver, {', '.join(mutable)}) "
            f"WHERE {_BY_ID} AND (w.ver IS NULL OR j.xmin::text = w.ver) RETURNING 1)"
        )
        self.w_delete = (
            f"d AS (DELETE FROM {s}.jobs AS j USING unnest(%b::text[], %b::text[]) "
            f"AS w(id, ver) WHERE {_BY_ID} AND (w.ver IS NULL OR j.xmin::text = w.ver) "
            "RETURNING 1)"
        )
        self.w_quarantine = (
            f"q AS (UPDATE {s}.jobs AS j SET quarantined = w.code "
            "FROM unnest(%b::text[], %b::bpchar[], %b::text[]) AS w(id, code, ver) "
            f"WHERE {_BY_ID} AND (w.ver IS NULL OR j.xmin::text = w.ver) RETURNING 1)"
        )
        self.w_cancel_del = (f"cd AS (DELETE FROM {s}.kalam_cancels "
                             "WHERE job_id = ANY(%b::text[]))")
        self.w_cancel_add = (f"ca AS (INSERT INTO {s}.kalam_cancels (job_id) "
                             "SELECT unnest(%b::text[]) ON CONFLICT DO NOTHING)")
        self.w_slot_update = (
            f"su AS (UPDATE {s}.kalam_slots AS t SET slot = w.slot "
            "FROM unnest(%b::text[], %b::int8[], %b::int8[]) AS w(name, old, slot) "
            "WHERE t.name = w.name AND t.slot = w.old RETURNING 1)"
        )
        self.w_slot_insert = (f"si AS (INSERT INTO {s}.kalam_slots (name, slot) "
                              "SELECT * FROM unnest(%b::text[], %b::int8[]))")
        # Not a change: records served from the cache and not written must still be as
        # read when the transaction ends (what it decided from them holds at that moment).
        self.w_validate = (
            f"cv AS (SELECT 1 FROM {s}.jobs AS j, unnest(%b::text[], %b::text[]) AS w(id, ver) "
            f"WHERE {_BY_ID} AND j.xmin::text = w.ver)"
        )
        self.w_counts = (f"n AS (INSERT INTO {s}.kalam_counts (status, job_type, n) "
                         "SELECT * FROM unnest(%b::bpchar[], %b::bpchar[], %b::int8[]))")


# A batch joins its rows by id. The ids again as an array make the planner find the rows by
# the primary key (one probe each) instead of hashing the batch and scanning the whole table.
_BY_ID: Final = "j.id = w.id AND j.id = ANY(%b::text[])"


def _quote(schema: str) -> str:
    return f'"{schema}"'


def _lock_key(schema: str) -> int:
    """The schema's advisory-lock key: its name's CRC-32 as a signed 32-bit integer."""
    crc = zlib.crc32(schema.encode())
    return crc - (1 << 32) if crc >= 1 << 31 else crc


# --------------------------------------------------------------------------- rows <-> records


def _record(row: Sequence[Any]) -> dict[str, Any]:
    """The record a row of ``_COLUMNS`` holds.

    Raises:
        CorruptRecord: for a row written in a record layout this code does not read.
    """
    (job_id, v, s, p, k, rc, mr, m, x, pd, pt, pn, c, u, st, f, ra, to, cr, ca, cx) = row[:21]
    if v != SCHEMA_VERSION:
        raise CorruptRecord(job_id, f"schema version {v!r}; this code reads {SCHEMA_VERSION}")
    if s not in STATUS_OF:
        raise CorruptRecord(job_id, "record does not describe this job")
    rec = {"v": v, "id": job_id, "s": s, "p": p, "k": k, "rc": rc, "mr": mr, "m": m, "x": x,
           "pg": None if pd is None else [pd, pt, pn], "c": c, "u": u, "st": st, "f": f,
           "ra": ra, "to": to, "cr": cr}
    if ca is not None:
        rec["ca"] = ca
    if cx is not None:
        rec["cx"] = cx
    return rec


def _row(rec: dict[str, Any]) -> tuple[Any, ...]:
    """A record as the values of ``_COLUMNS``."""
    pg = rec["pg"]
    to = rec.get("to")
    return (
        rec["id"], rec["v"], rec["s"], rec["p"], rec["k"], rec["rc"], rec["mr"],
        _text(rec["m"]), _text(rec["x"]),
        None if pg is None else pg[0], None if pg is None else pg[1],
        None if pg is None else _text(pg[2]),
        rec["c"], rec["u"], rec["st"], rec["f"], rec["ra"], None if to is None else float(to),
        bool(rec["cr"]), rec.get("ca"), _text(rec.get("cx")),
    )


def _mutable(row: tuple[Any, ...]) -> list[Any]:
    return [row[i] for i in _MUTABLE]


def _text(value: str | None) -> str | None:
    """Free text (messages, traces, notes) as PostgreSQL can hold it: its text type has no NUL
    character, so a NUL is kept as the escape ``\\x00`` (as a lone surrogate is kept as its
    escape at the door)."""
    if value is None:
        return None
    if "\x00" in value:
        value = value.replace("\x00", "\\x00")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            value = value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value


def _columns(rows: Iterable[Sequence[Any]], width: int) -> list[list[Any]]:
    """Rows as one list per column (each sent as one array)."""
    out: list[list[Any]] = [[] for _ in range(width)]
    for row in rows:
        for column, value in zip(out, row, strict=True):
            column.append(value)
    return out


def _prefix_end(prefix: str) -> str | None:
    """The smallest text greater than every id starting with ``prefix`` (ids are ASCII)."""
    if not prefix:
        return None
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


# --------------------------------------------------------------------------- the write side


class _Conflict(Exception):
    """A row this transaction read was changed by another since: run it again.

    Not a KalamError on purpose: the runtime turns a verb's KalamError into a refusal of one
    call and goes on with the batch, but after a conflict the transaction is void.
    """


class _Failed(Exception):
    """A statement failed inside ``fn``: the transaction is void (see :class:`_Conflict`)."""

    def __init__(self, cause: psycopg.Error) -> None:
        super().__init__(str(cause))
        self.cause = cause


_MISSING: Final = object()


class PgStoreTxn:
    """The state changes of one write transaction on PostgreSQL; made by
    :meth:`PgJobStore.write`. The same methods, with the same meaning, as the LMDB
    ``StoreTxn``: the verbs work through either.

    Changes are kept here and written as one statement when the transaction ends, or before a
    read of an index (so that reads see this transaction's own writes).
    """

    def __init__(self, store: PgJobStore, conn: Connection, *, locking: bool) -> None:
        self._store = store
        self._conn = conn
        self._sql = store._sql
        self._locking = locking
        # From the third attempt on, a read locks what it reads: it cannot conflict again.
        self._lock_rows = " FOR NO KEY UPDATE" if locking else ""
        self._lock_slot = " FOR UPDATE" if locking else ""
        # Records as this transaction has them, by id (handed out: verbs change them)...
        self._recs: dict[str, dict[str, Any]] = {}
        # ...and as read, with their row versions (never handed out: the cache gets these).
        self._seen: dict[str, tuple[str, dict[str, Any]]] = {}
        self._mine: set[str] = set()  # rows this transaction wrote (and so holds locked)
        self._cached: set[str] = set()  # records the cache served (validated at the end)
        self._bad: dict[str, tuple[CorruptRecord, str | None]] = {}
        self._gone: set[str] = set()
        # Changes not yet sent.
        self._inserts: dict[str, dict[str, Any]] = {}
        self._updates: dict[str, dict[str, Any]] = {}
        self._deletes: dict[str, str | None] = {}
        self._quarantines: dict[str, tuple[str, str | None]] = {}
        self._cancel_ops: dict[str, bool] = {}
        self._slot_now: dict[str, int | None] = {}
        self._slot_stored: dict[str, int | None] = {}
        self._slot_writes: dict[str, int] = {}
        self._counts: dict[tuple[str, str], int] = {}
        self.xid: str | None = None  # the transaction id, once it has written
        self.counted = False

    # -- statements
    def _fetch(self, sql: str, params: Sequence[Any]) -> list[TupleRow]:
        try:
            return self._conn.execute(sql, params).fetchall()
        except psycopg.Error as exc:
            raise _Failed(exc) from exc

    def _fetchone(self, sql: str, params: Sequence[Any]) -> TupleRow | None:
        rows = self._fetch(sql, params)
        return rows[0] if rows else None

    def _version(self, job_id: str) -> str | None:
        """The row version a write of this record is conditional on (None: the row is ours)."""
        if job_id in self._mine:
            return None
        seen = self._seen.get(job_id)
        return None if seen is None else seen[0]

    def _take(self, row: TupleRow) -> dict[str, Any]:
        """Keep a record read from the store; raise CorruptRecord (remembered) if unreadable."""
        job_id: str = row[0]
        version: str = row[-1]
        try:
            rec = _record(row)
        except CorruptRecord as exc:
            self._bad[job_id] = (exc, version)
            raise
        self._seen[job_id] = (version, rec)
        taken = self._recs[job_id] = dict(rec)
        return taken

    def _take_rows(self, rows: list[TupleRow]) -> None:
        """Keep the records an index read found (an unreadable one raises only when got)."""
        for row in rows:
            job_id = row[0]
            if job_id in self._recs or job_id in self._bad or job_id in self._gone:
                continue
            with contextlib.suppress(CorruptRecord):  # raised again when it is got
                self._take(row)

    # -- reads inside the transaction
    def get(self, job_id: str) -> dict[str, Any] | None:
        """The record, as this transaction has it. The dict is the transaction's own: change
        it only to write it back (``put`` or ``move``)."""
        rec = self._recs.get(job_id)
        if rec is not None:
            return rec
        if job_id in self._gone:
            return None
        bad = self._bad.get(job_id)
        if bad is not None:
            raise bad[0]
        if not self._locking:
            hit = self._store._cache.get(job_id)
            if hit is not None:
                self._seen[job_id] = hit
                self._cached.add(job_id)
                rec = self._recs[job_id] = dict(hit[1])
                return rec
        row = self._fetchone(self._sql.get + self._lock_rows, (job_id,))
        return None if row is None else self._take(row)

    def require(self, job_id: str) -> dict[str, Any]:
        """The record (see :meth:`get`). Raises JobNotFound if there is none."""
        rec = self.get(job_id)
        if rec is None:
            raise JobNotFound(job_id)
        return rec

    def active_holder(self, key: str) -> str | None:
        """The active job holding idempotency key ``key``, if any (the unique index)."""
        self._flush()
        row = self._fetchone(self._sql.holder, (key,))
        return None if row is None else str(row[0])

    def first_ids(self, code: str, prefix: str, limit: int) -> list[str]:
        """Up to ``limit`` ids with status ``code`` and id prefix ``prefix``, oldest first."""
        return self.ids_after(code, None, limit, id_prefix=prefix)

    def ids_after(
        self, code: str, after: str | None, limit: int, *, id_prefix: str = ""
    ) -> list[str]:
        """Up to ``limit`` ids with status ``code`` (and ids starting with ``id_prefix``) that
        sort after ``after`` (from the start when None), in id order. The records come in the
        same query."""
        self._flush()
        sql = [self._sql.first]
        params: list[Any] = [code]
        end = _prefix_end(id_prefix)
        if id_prefix:
            sql.append(" AND id >= %s")
            params.append(id_prefix)
        if end is not None:
            sql.append(" AND id < %s")
            params.append(end)
        if after is not None:
            sql.append(" AND id > %s")
            params.append(after)
        sql.append(" ORDER BY id LIMIT %s")
        params.append(limit)
        sql.append(self._lock_rows)
        rows = self._fetch("".join(sql), params)
        self._take_rows(rows)
        return [row[0] for row in rows]

    def due_ids(self, now: int, limit: int, *, prefix: str | None = None
                ) -> list[tuple[int, str]]:
        """Up to ``limit`` Retrying jobs whose due time is at or before ``now``, earliest
        first: of the type with id prefix ``prefix`` (``"FL"``), or of every type."""
        self._flush()
        if prefix is None:
            sql = self._sql.due_all_locked if self._locking else self._sql.due_all
            rows = self._fetch(sql, (_PREFIXES, now, limit, limit))
        else:
            rows = self._fetch(self._sql.due + self._lock_rows, (prefix, now, limit))
        self._take_rows(rows)
        return [(row[16], row[0]) for row in rows]

    def next_due_after(self, now: int) -> int | None:
        """The first due time later than ``now``, if any (one index probe per type)."""
        self._flush()
        row = self._fetchone(self._sql.next_due, (_PREFIXES, now))
        return None if row is None or row[0] is None else int(row[0])

    def cancel_requests(self, limit: int) -> list[str]:
        """Up to ``limit`` jobs with a cancel request not yet answered, by id."""
        self._flush()
        return [row[0] for row in self._fetch(self._sql.cancels, (limit,))]

    def get_slot(self, name: str) -> int | None:
        """The last schedule slot recorded for ``name``."""
        slot = self._slot_now.get(name, _MISSING)
        if slot is not _MISSING:
            return cast("int | None", slot)
        row = self._fetchone(self._sql.slot + self._lock_slot, (name,))
        stored = None if row is None else int(row[0])
        self._slot_now[name] = self._slot_stored[name] = stored
        return stored

    # -- writes
    def _count(self, code: str, job_id: str, delta: int) -> None:
        key = (code, job_id[:2])
        self._counts[key] = self._counts.get(key, 0) + delta

    def insert(self, rec: dict[str, Any]) -> None:
        """Store a new record (the caller has checked its idempotency key)."""
        job_id = rec["id"]
        if job_id in self._recs or job_id in self._bad:
            raise StoreError(f"[{job_id}] a job with this id already exists")
        self._gone.discard(job_id)
        self._recs[job_id] = self._inserts[job_id] = rec
        self._count(rec["s"], job_id, 1)

    def put(self, rec: dict[str, Any]) -> None:
        """Rewrite a record whose status did not change (progress, cancel flags)."""
        job_id = rec["id"]
        self._recs[job_id] = rec
        if job_id not in self._inserts:
            self._updates[job_id] = rec

    def move(self, rec: dict[str, Any], new: JobStatus, now: int, **fields: Any) -> None:
        """Move a record to ``new`` (checked against the transition table), set ``fields``,
        and keep every index in step. Raises InvalidTransition and writes nothing if refused."""
        job_id = rec["id"]
        old_code = apply_move(rec, new, now, fields)  # raises before anything is written
        new_code = rec["s"]
        if new_code in _TERMINAL_CODES and rec["cr"]:
            self._cancel_ops[job_id] = False
        self.put(rec)
        self._count(old_code, job_id, -1)
        self._count(new_code, job_id, 1)

    def delete(self, rec: dict[str, Any]) -> None:
        """Remove a terminal record (job history pruning)."""
        job_id = rec["id"]
        if rec["s"] in ACTIVE_CODES:
            raise InvalidTransition(
                job_id, STATUS_OF[rec["s"]], None, "cannot delete an active job"
            )
        self._recs.pop(job_id, None)
        self._updates.pop(job_id, None)
        if self._inserts.pop(job_id, None) is None:
            self._deletes[job_id] = self._version(job_id)
        self._gone.add(job_id)
        self._cancel_ops.pop(job_id, None)
        self._count(rec["s"], job_id, -1)

    def put_slot(self, name: str, slot: int) -> None:
        """Record ``slot`` as the last one served for the schedule ``name`` (written only if
        the stored slot is still the one this transaction read)."""
        if name not in self._slot_now:
            self.get_slot(name)
        self._slot_now[name] = slot
        self._slot_writes[name] = slot

    def quarantine(self, job_id: str, code: str, due: int | None = None) -> None:
        """Take an unreadable record out of the status (and due) index so work goes on; the
        row stays, its ``quarantined`` column says from which status."""
        bad = self._bad.get(job_id)
        version = None if bad is None or job_id in self._mine else bad[1]
        self._quarantines[job_id] = (code, version)
        self._count(code, job_id, -1)

    def request_cancel(self, job_id: str) -> None:
        """Record a cancel request for a running job (see :func:`verbs.request_cancel`)."""
        self._cancel_ops[job_id] = True

    def clear_cancel_request(self, job_id: str) -> None:
        """Drop the job's cancel request (answered, or the job ended)."""
        self._cancel_ops[job_id] = False

    # -- sending
    def _flush(self, *, final: bool = False) -> None:
        """Send every change kept so far, as one statement (data-modifying WITH queries).

        Within one statement no change may depend on another: an insert's key was checked
        by a read that flushed every earlier change first, so the updates sent with it never
        free a key it takes.
        """
        parts: list[str] = []
        params: list[Any] = []
        checked: list[tuple[str, int]] = []  # (part, rows it must change)
        sql = self._sql
        if self._updates:
            rows = [(job_id, self._version(job_id), *_mutable(_row(rec)))
                    for job_id, rec in self._updates.items()]
            parts.append(sql.w_update)
            params.extend(_columns(rows, 2 + len(_MUTABLE)))
            params.append(list(self._updates))
            checked.append(("u", len(rows)))
        if self._deletes:
            parts.append(sql.w_delete)
            params.extend([list(self._deletes), list(self._deletes.values()),
                           list(self._deletes)])
            checked.append(("d", len(self._deletes)))
        if self._inserts:
            parts.append(sql.w_insert)
            params.extend(_columns((_row(rec) for rec in self._inserts.values()),
                                   len(_COLUMNS)))
        if self._quarantines:
            parts.append(sql.w_quarantine)
            params.extend([list(self._quarantines),
                           [code for code, _ in self._quarantines.values()],
                           [version for _, version in self._quarantines.values()],
                           list(self._quarantines)])
            checked.append(("q", len(self._quarantines)))
        cancels = self._cancel_ops
        if cancels:
            cleared = [job_id for job_id, add in cancels.items() if not add]
            added = [job_id for job_id, add in cancels.items() if add]
            if cleared:
                parts.append(sql.w_cancel_del)
                params.append(cleared)
            if added:
                parts.append(sql.w_cancel_add)
                params.append(added)
        updated_slots: list[tuple[str, int | None, int]] = []
        new_slots: list[tuple[str, int]] = []
        for name, slot in self._slot_writes.items():
            stored = self._slot_stored.get(name)
            if stored is None:
                new_slots.append((name, slot))
            else:
                updated_slots.append((name, stored, slot))
        if updated_slots:
            parts.append(sql.w_slot_update)
            params.extend(_columns(updated_slots, 3))
            checked.append(("su", len(updated_slots)))
        if new_slots:
            parts.append(sql.w_slot_insert)
            params.extend(_columns(new_slots, 2))
        counts = [(code, prefix, n) for (code, prefix), n in self._counts.items() if n]
        if final and counts:
            parts.append(sql.w_counts)
            params.extend(_columns(counts, 3))
            self.counted = True
        writes = bool(parts)
        if final:
            unwritten = [job_id for job_id in self._cached
                         if job_id not in self._mine and job_id not in self._gone]
            if unwritten:
                parts.append(sql.w_validate)
                params.extend([unwritten, [self._seen[job_id][0] for job_id in unwritten],
                               unwritten])
                checked.append(("cv", len(unwritten)))
        if not parts:
            return
        selected = "".join(f"(SELECT count(*) FROM {part}), " for part, _ in checked)
        # The transaction id is the version of every row it writes (asking assigns one).
        xid = "pg_current_xact_id()::xid::text" if writes else "NULL"
        row = self._fetchone(f"WITH {', '.join(parts)} SELECT {selected}{xid}", params)
        assert row is not None
        for (part, expected), got in zip(checked, row, strict=False):
            if got != expected:
                raise _Conflict(f"{expected - got} of {expected} rows ({part}) changed "
                                "since they were read")
        if writes:
            self.xid = row[-1]
        self._mine.update(self._inserts, self._updates)
        for job_id in self._quarantines:
            self._mine.add(job_id)
        self._inserts.clear()
        self._updates.clear()
        self._deletes.clear()
        self._quarantines.clear()
        cancels.clear()
        for name, slot in self._slot_writes.items():
            self._slot_stored[name] = slot
        self._slot_writes.clear()
        if final:
            self._counts.clear()

    def _finish(self) -> None:
        """Send what the transaction kept, counts included (it commits next)."""
        self._flush(final=True)

    def _publish(self, cache: dict[str, tuple[str, dict[str, Any]]]) -> None:
        """After the commit: keep the active records for the next transactions, with their
        row versions (rows this transaction wrote have its transaction id as their xmin)."""
        for job_id in self._gone:
            cache.pop(job_id, None)
        for job_id in self._bad:
            cache.pop(job_id, None)
        if len(self._recs) > _CACHE_SIZE:  # a bulk create would only churn it
            for job_id in self._recs:
                cache.pop(job_id, None)
            return
        if len(cache) + len(self._recs) > _CACHE_SIZE:
            cache.clear()
        xid = self.xid
        for job_id, rec in self._recs.items():
            if job_id in self._mine:
                if xid is None or rec["s"] not in ACTIVE_CODES:
                    cache.pop(job_id, None)
                else:
                    cache[job_id] = (xid, dict(rec))
            else:
                seen = self._seen.get(job_id)
                if seen is not None and seen[1]["s"] in ACTIVE_CODES:
                    cache[job_id] = seen
                else:
                    cache.pop(job_id, None)

    def _forget(self, cache: dict[str, tuple[str, dict[str, Any]]]) -> None:
        """After a rollback: what this transaction read may be stale."""
        for job_id in (*self._recs, *self._bad, *self._gone, *self._seen):
            cache.pop(job_id, None)


# --------------------------------------------------------------------------- the store


class PgJobStore(JobStore):
    """A :class:`JobStore` on PostgreSQL: the same API, statuses, verbs and errors.

    Args:
        path: a ``postgresql://`` (or ``postgres://``) URL; a ``schema`` query parameter
            chooses the PostgreSQL schema (``?schema=kalam_test``).
        executors: as for JobStore: they check new jobs' parameters and say whether their
            jobs may be cancelled.
        map_size: ignored (LMDB's map size).
        durable: every commit is on disk when it returns (``synchronous_commit`` on). With
            ``False``, commits are asynchronous unless ``write(..., sync=True)``: a crash of the
            server may lose the last ones, never corrupt the store.
        writer: connect the writing connection at once (otherwise on the first write).
        schema: the PostgreSQL schema of the store (default ``kalam``, or the URL's).
        connect_timeout_s: how long to wait for the server.

    Raises:
        StoreError: the server cannot be reached, or the store's layout is newer than this
            code reads.
        InvalidParams: a URL that is not PostgreSQL's, or an invalid schema name.

    Reads are single statements (each its own snapshot) on one connection; writes are
    transactions on another, so a reader never waits for a write. Both are safe to use from
    several threads (each connection is used by one thread at a time).
    """

    def __init__(
        self,
        path: str,
        *,
        executors: Iterable[JobExecutor] | None = None,
        map_size: int | None = None,
        durable: bool = True,
        writer: bool = False,
        schema: str | None = None,
        connect_timeout_s: float = 10.0,
    ) -> None:
        conninfo, url_schema = _split_url(str(path))
        self.schema = _check_schema_name(schema if schema is not None
                                         else url_schema or DEFAULT_SCHEMA)
        self.url = _redact(conninfo)
        self.durable = durable
        self._conninfo = conninfo
        self._connect_timeout = max(1, round(connect_timeout_s))
        self._executors: dict[JobType, JobExecutor] = {
            e.job_type: e for e in (executors or ())
        }
        self._sql = _Sql(self.schema)
        self._closed = False
        self._read_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._writing_thread: int | None = None
        self._reader_conn: Connection | None = None
        self._writer_conn: Connection | None = None
        self._cache: dict[str, tuple[str, dict[str, Any]]] = {}
        self._commits_since_compact = 0
        self.migrated: tuple[int, int] | None = None  # (from, to) if this open migrated
        try:
            with self._read_lock:
                self.migrated = _ensure_schema(self._reader(), self.schema, self.url)
            if writer:
                with self._write_lock:
                    self._writer()
        except BaseException:
            self.close()
            raise

    def __repr__(self) -> str:
        return f"<PgJobStore {self.url} schema={self.schema}>"

    # -- lifecycle
    def close(self) -> None:
        """Close the store's connections."""
        self._closed = True
        for conn in (self._reader_conn, self._writer_conn):
            if conn is not None:
                conn.close()
        self._reader_conn = self._writer_conn = None

    def __enter__(self) -> PgJobStore:
        return self

    @property
    def env(self) -> NoReturn:
        """A PostgreSQL store has no LMDB environment."""
        raise StoreError(f"{self!r} is a PostgreSQL store: it has no LMDB environment")

    # -- connections
    def _connect(self, *, writer: bool) -> Connection:
        if self._closed:
            raise StoreError(f"job store {self.url} is closed")
        try:
            conn = psycopg.connect(
                self._conninfo, autocommit=True, connect_timeout=self._connect_timeout,
                application_name="kalam-actors",
            )
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to the job store at {self.url}: {exc}") from exc
        if writer and not self.durable:
            conn.execute("SET synchronous_commit = off")
        return conn

    def _reader(self) -> Connection:
        conn = self._reader_conn
        if conn is None or conn.closed or conn.broken:
            conn = self._reader_conn = self._connect(writer=False)
        return conn

    def _writer(self) -> Connection:
        conn = self._writer_conn
        if (conn is not None and not conn.closed and not conn.broken
                and conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE):
            conn.close()  # interrupted inside a transaction: start afresh
        if conn is None or conn.closed or conn.broken:
            conn = self._writer_conn = self._connect(writer=True)
        return conn

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[TupleRow]:
        """Run one read statement (its own snapshot), reconnecting once if the connection
        was lost."""
        with self._read_lock:
            for attempt in range(2):
                conn = self._reader()
                try:
                    return conn.execute(sql, params).fetchall()
                except psycopg.OperationalError as exc:
                    if attempt or not conn.broken:
                        raise StoreError(f"job store {self.url}: {exc}") from exc
                except psycopg.Error as exc:
                    raise StoreError(f"job store {self.url}: {exc}") from exc
        raise AssertionError("unreachable")

    # -- transactions
    def write(self, fn: Callable[[StoreTxn], T], *, sync: bool = True) -> T:
        """Run ``fn`` in one write transaction and commit it.

        ``fn`` must only touch the store through the transaction it gets: it may run more than
        once (when a row it read was changed by another process meanwhile, or another
        transaction took an idempotency key first). A durable store's commit is on disk when
        this returns, whatever ``sync`` says; on a store opened with ``durable=False``,
        ``sync=True`` makes this commit durable too.

        Raises:
            StoreError: the server failed, or the transaction kept conflicting.
            Whatever ``fn`` raises (the transaction is rolled back).
        """
        me = threading.get_ident()
        if self._writing_thread == me:
            raise StoreError(f"job store {self.url}: a write transaction is already open in "
                             "this thread")
        last: BaseException | None = None
        for attempt in range(_ATTEMPTS):
            if attempt:
                time.sleep(random.uniform(0, min(0.05, 0.001 * 2 ** attempt)))
            with self._write_lock:
                self._writing_thread = me
                try:
                    done, result, last = self._attempt(fn, sync, locking=attempt >= _OPTIMISTIC)
                finally:
                    self._writing_thread = None
            if done:
                return cast(T, result)
        raise StoreError(f"job store {self.url}: the write kept conflicting with other "
                         f"writers ({_ATTEMPTS} attempts; last: {last})") from last

    def _attempt(
        self, fn: Callable[[StoreTxn], T], sync: bool, *, locking: bool
    ) -> tuple[bool, T | None, BaseException | None]:
        """One attempt of :meth:`write`: (done, fn's result, the conflict if not done)."""
        conn = self._writer()
        txn = PgStoreTxn(self, conn, locking=locking)
        finished = False
        try:
            with conn.transaction():
                if sync and not self.durable:
                    conn.execute("SET LOCAL synchronous_commit = on")
                # The verbs are typed against the LMDB StoreTxn; PgStoreTxn has its methods.
                result = fn(cast(StoreTxn, txn))
                txn._finish()
                finished = True
        except _Conflict as exc:
            txn._forget(self._cache)
            return False, None, exc
        except _Failed as exc:
            txn._forget(self._cache)
            return self._failed(exc.cause, committing=False)
        except psycopg.Error as exc:
            txn._forget(self._cache)
            return self._failed(exc, committing=finished)
        except BaseException:
            txn._forget(self._cache)
            raise
        txn._publish(self._cache)
        if txn.counted:
            self._commits_since_compact += 1
            if self._commits_since_compact >= _COMPACT_EVERY:
                self._commits_since_compact = 0
                self._compact(conn)
        return True, result, None

    def _failed(
        self, exc: psycopg.Error, *, committing: bool
    ) -> tuple[bool, None, BaseException]:
        """A statement failed: retry what another writer's commit caused; raise the rest."""
        if isinstance(exc, (pg_errors.SerializationFailure, pg_errors.DeadlockDetected,
                            pg_errors.LockNotAvailable, pg_errors.ForeignKeyViolation)):
            return False, None, exc
        if isinstance(exc, pg_errors.UniqueViolation):
            constraint = exc.diag.constraint_name
            if constraint in _RETRY_CONSTRAINTS:
                return False, None, exc
            if constraint == "jobs_pkey":
                taken = re.search(r"\(id\)=\((.*)\)", exc.diag.message_detail or "")
                job_id = taken.group(1) if taken else "?"
                raise StoreError(f"[{job_id}] a job with this id already exists") from exc
        if isinstance(exc, psycopg.OperationalError) and not committing:
            conn = self._writer_conn
            if conn is not None and conn.broken:  # lost before the commit: nothing was done
                return False, None, exc
        what = "the commit's outcome is unknown: " if committing else ""
        raise StoreError(f"job store {self.url}: {what}{exc}") from exc

    def _compact(self, conn: Connection) -> None:
        """Sum kalam_counts into one row per status and type (exact under concurrent writers:
        the DELETE takes only the rows its snapshot sees)."""
        try:
            conn.execute(self._sql.compact)
        except psycopg.Error as exc:
            raise StoreError(f"job store {self.url}: compacting counts: {exc}") from exc

    def sync(self) -> None:
        """Make every commit of this store durable (on a store opened ``durable=False``)."""
        with self._write_lock:
            conn = self._writer()
            try:
                with conn.transaction():
                    conn.execute("SET LOCAL synchronous_commit = on")
                    # A transaction id makes the commit write, and wait for, the WAL flush.
                    conn.execute("SELECT pg_current_xact_id()")
            except psycopg.Error as exc:
                raise StoreError(f"job store {self.url}: sync failed: {exc}") from exc

    # -- reads
    def get_record(self, job_id: str) -> dict[str, Any] | None:
        """The job's stored record (for the store package), or None.

        Raises:
            InvalidJobId: for a malformed id.
            CorruptRecord: if its record cannot be read.
        """
        job_id = JobId.parse(job_id)
        rows = self._query(self._sql.get, (job_id,))
        return _record(rows[0]) if rows else None

    def _iter_filtered(
        self, f: JobFilter, prefixes: list[str], statuses: tuple[JobStatus, ...] | None
    ) -> Iterator[dict[str, Any]]:
        """The matching records in creation order: one id range per type prefix, read in
        pages (each page one statement), merged by the ids' time-ordered suffix."""
        codes = None if statuses is None else sorted({CODE[s] for s in statuses})
        if codes == [] or not prefixes:
            return
        page = _PAGE if f.limit is None else max(1, min(f.limit, _PAGE))
        ranges = [self._pages(prefix, codes, f.idempotency_key, f.newest_first, page)
                  for prefix in prefixes]
        rows: Iterator[TupleRow] = (
            ranges[0] if len(ranges) == 1
            else heapq.merge(*ranges, key=_row_suffix, reverse=f.newest_first)
        )
        for row in rows:
            yield _record(row)

    def _pages(
        self, prefix: str, codes: list[str] | None, key: str | None, newest_first: bool,
        page: int,
    ) -> Iterator[TupleRow]:
        where = ["id >= %s"]
        params: list[Any] = [prefix]
        end = _prefix_end(prefix)
        if end is not None:
            where.append("id < %s")
            params.append(end)
        if codes is not None:
            where.append("status = ANY(%s::bpchar[]) AND quarantined IS NULL")
            params.append(codes)
        if key is not None:
            where.append("idempotency_key = %s")
            params.append(key)
        order = " ORDER BY id DESC LIMIT %s" if newest_first else " ORDER BY id LIMIT %s"
        base = f"{self._sql.select} WHERE {' AND '.join(where)}"
        after: str | None = None
        while True:
            if after is None:
                rows = self._query(base + order, [*params, page])
            else:
                beyond = " AND id < %s" if newest_first else " AND id > %s"
                rows = self._query(base + beyond + order, [*params, after, page])
            yield from rows
            if len(rows) < page:
                return
            after = rows[-1][0]

    def counts(self) -> dict[tuple[JobStatus, JobType], int]:
        """How many jobs there are of each status and type (kept in step by every write)."""
        out: dict[tuple[JobStatus, JobType], int] = {}
        stored = 0
        for code, prefix, n, rows in self._query(self._sql.counts):
            stored += rows
            if n > 0 and code in STATUS_OF and prefix in TYPE_OF_PREFIX:
                out[(STATUS_OF[code], TYPE_OF_PREFIX[prefix])] = n
        if stored > _COMPACT_ROWS:
            self._query(self._sql.compact + " RETURNING 1")
        return out

    def last_slot(self, name: str) -> int | None:
        """The last slot the runtime created a job for, for the schedule ``name``."""
        rows = self._query(self._sql.slot, (name,))
        return None if not rows else int(rows[0][0])

    def has_status(self, status: JobStatus) -> bool:
        """Whether any job has ``status`` (one index probe)."""
        return bool(self._query(self._sql.has_status, (CODE[status],))[0][0])

    def has_cancel_requests(self) -> bool:
        """Whether another process has asked to cancel a running job."""
        return bool(self._query(self._sql.has_cancels)[0][0])


def open_pg_store(
    url: str,
    *,
    executors: Iterable[JobExecutor] | None = None,
    durable: bool = True,
    writer: bool = False,
    schema: str | None = None,
    connect_timeout_s: float = 10.0,
) -> PgJobStore:
    """Open the PostgreSQL job store at ``url`` (see :class:`PgJobStore`); close it after use.

    The layout is created, or migrated, on first open.
    """
    return PgJobStore(url, executors=executors, durable=durable, writer=writer, schema=schema,
                      connect_timeout_s=connect_timeout_s)


def is_pg_url(path: object) -> bool:
    """Whether ``path`` names a PostgreSQL store (a ``postgresql://`` URL)."""
    return isinstance(path, str) and path.partition("://")[0] in URL_SCHEMES


def _row_suffix(row: TupleRow) -> str:
    job_id: str = row[0]
    return job_id[3:]


# --------------------------------------------------------------------------- URL and layout


def _split_url(url: str) -> tuple[str, str | None]:
    """The URL without its ``schema`` query parameter (libpq does not know it), and that."""
    parts = urlsplit(url)
    if parts.scheme not in URL_SCHEMES:
        raise InvalidParams(f"not a PostgreSQL URL (postgresql://…): {_redact(url)}",
                            field="path")
    base, _, query = url.partition("?")
    schema: str | None = None
    rest = []
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name == "schema":
            schema = value
        else:
            rest.append((name, value))
    if schema is None:
        return url, None
    # Rebuilt by hand: urlunsplit drops the empty host of postgresql:///db.
    return (f"{base}?{urlencode(rest)}" if rest else base), schema


def _redact(url: str) -> str:
    """The URL with its password, if any, replaced by ``***`` (for messages)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def _check_schema_name(schema: str) -> str:
    if not _SCHEMA_NAME.fullmatch(schema):
        raise InvalidParams(
            f"schema must be 1-63 letters, digits or underscores, not starting with a digit, "
            f"not {schema!r}", field="schema",
        )
    return schema


def _stored_version(conn: Connection, schema: str) -> int | None:
    """The layout version stored in ``schema``, or None when there is no store there yet."""
    s = _quote(schema)
    # The catalogs by a query (its own snapshot), not to_regclass: that reads the backend's
    # catalog cache, which may not know of a table another process committed a moment ago.
    row = conn.execute(
        "SELECT 1 FROM pg_catalog.pg_class AS c JOIN pg_catalog.pg_namespace AS n "
        "ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = 'kalam_schema'",
        (schema,),
    ).fetchone()
    if row is None:
        return None
    row = conn.execute(f"SELECT version FROM {s}.kalam_schema").fetchone()
    return -1 if row is None else int(row[0])


def _ensure_schema(conn: Connection, schema: str, url: str) -> tuple[int, int] | None:
    """Create or migrate the store's layout; return (from, to) if this call did it.

    The layout is read first without a lock (the common case: it is current). Otherwise the
    work happens in one transaction that holds an advisory lock on the schema's name: a second
    process arriving meanwhile waits on the lock, then finds the work done.

    Raises:
        StoreError: the layout is newer than this code, or cannot be made.
    """
    try:
        version = _stored_version(conn, schema)
        if version == PG_SCHEMA_VERSION:
            return None
        _refuse_newer(version, schema, url)
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s, %s)",
                         (_LOCK_CLASS, _lock_key(schema)))
            version = _stored_version(conn, schema)
            _refuse_newer(version, schema, url)
            start = 0 if version is None else version
            if start == PG_SCHEMA_VERSION:
                return None
            s = _quote(schema)
            for migration in _MIGRATIONS[start:]:
                for statement in migration:
                    conn.execute(statement.format(s=s))
            conn.execute(f"UPDATE {s}.kalam_schema SET version = %s", (PG_SCHEMA_VERSION,))
            return start, PG_SCHEMA_VERSION
    except psycopg.Error as exc:
        raise StoreError(
            f"cannot open the job store at {url} (schema {schema}): {exc}"
        ) from exc


def _refuse_newer(version: int | None, schema: str, url: str) -> None:
    if version is not None and not 0 <= version <= PG_SCHEMA_VERSION:
        raise StoreError(
            f"job store at {url} (schema {schema}) has layout version {version}; this "
            f"kalam-actors reads versions 1 to {PG_SCHEMA_VERSION}"
        )
