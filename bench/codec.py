"""Does a fixed-layout record codec pay? (issue #11, item 3) — measured before the store changes.

Today a job record is a 17-key dict with short keys, stored as orjson bytes
(``new_record`` / ``encode_record`` / ``decode_record`` / ``record_to_job``). The candidate is a
``msgspec.Struct`` with ``array_like=True``: fields in a fixed order, the schema version first
(as the struct's tag, so a record of another version fails to decode, and a later version can
be a tagged union), stored with ``msgspec.msgpack`` or ``msgspec.json`` and decoded straight
into the Struct (typed: shape and types validated while decoding).

Side by side, in one process, on three realistic Flush records (params
``{"namespace_id":"default","table_name":"users","table_type":"User"}``):

- ``completed`` — a finished job with an idempotency key (what a 1M-job store is full of: B5);
- ``running``   — Running on its second attempt, with progress, a message and a 2 KB trace;
- ``fresh``     — just created (Queued), as B1 writes it.

Per operation, in µs (timeit, GC off as timeit does, each repeat ~``--target-ms`` long; min and
median of ``--repeat`` repeats):

- ``encode``       record -> bytes (orjson.dumps of the dict; Encoder.encode of the Struct);
- ``decode, bare`` bytes -> record, the codec alone (orjson.loads; the typed Decoder.decode);
- ``decode``       bytes -> record with the checks decode_record makes (orjson: decode_record
  itself; msgspec: typed decode + the id check, version and status checked by the decoder);
- ``decode->Job``  the full read path to the public ``Job`` (get_job minus LMDB and id parsing);
- ``->Job only``   record -> Job alone (record_to_job; its twin over Struct attributes);

and the stored size. Then the write side (the runtime mutates records in place and keeps a copy
of each written active record in the ``written`` cache): ``dict(rec)`` against copying a
Struct, and a dict item set against a Struct attribute set.

Run from the repository root: ``python -m bench.codec`` (``--repeat``, ``--target-ms``).
"""

from __future__ import annotations

import argparse
import copy
import importlib
import pkgutil
import platform
import statistics
import sys
import timeit
from typing import Any, Literal

import msgspec
import orjson

from kalam_actors.errors import CorruptRecord
from kalam_actors.ids import JobId, JobType
from kalam_actors.model import Job, JobStatus, Progress

# --------------------------------------------------------------------------- today's codec


def _store_names(*names: str) -> dict[str, Any]:
    """The store's record functions, wherever they live (``kalam_actors.store`` is a module
    today and may become a package: look in it, then in its submodules)."""
    pkg = importlib.import_module("kalam_actors.store")
    mods = [pkg]
    if hasattr(pkg, "__path__"):
        for info in pkgutil.iter_modules(pkg.__path__):
            try:
                mods.append(importlib.import_module(f"{pkg.__name__}.{info.name}"))
            except ImportError:
                continue  # a submodule that does not import alone; the names are elsewhere
    found = {}
    for name in names:
        for mod in mods:
            if hasattr(mod, name):
                found[name] = getattr(mod, name)
                break
        else:
            raise ImportError(f"kalam_actors.store has no {name}")
    return found


_S = _store_names("SCHEMA_VERSION", "new_record", "encode_record", "decode_record",
                  "record_to_job", "STATUS_OF", "TYPE_OF_PREFIX", "_datetime_of")
SCHEMA_VERSION: int = _S["SCHEMA_VERSION"]
new_record = _S["new_record"]
encode_record = _S["encode_record"]
decode_record = _S["decode_record"]
record_to_job = _S["record_to_job"]
STATUS_OF = _S["STATUS_OF"]
TYPE_OF_PREFIX = _S["TYPE_OF_PREFIX"]
_datetime_of = _S["_datetime_of"]

# --------------------------------------------------------------------------- the candidate

StatusCode = Literal["N", "Q", "R", "Y", "C", "F", "X", "S"]


class RecordV1(msgspec.Struct, array_like=True, tag=SCHEMA_VERSION, tag_field="v", gc=False):
    """The same 17 fields in a fixed order; the schema version (the tag) is element 0.

    ``gc=False``: a record holds only str/int/float/bool/None and one small tuple, so it can
    never be part of a cycle. ``ca`` (cancel requested, set by the manager) is the optional
    18th key of today's dicts: a trailing default here.
    """

    id: str
    s: StatusCode
    p: str
    k: str | None
    rc: int
    mr: int
    m: str | None
    x: str | None
    pg: tuple[int, int | None, str | None] | None
    c: int
    u: int
    st: int | None
    f: int | None
    ra: int | None
    to: float | None
    cr: bool
    ca: bool = False


def struct_of(rec: dict[str, Any]) -> RecordV1:
    fields = {k: v for k, v in rec.items() if k != "v"}
    fields["id"] = str(fields["id"])  # msgspec refuses str subclasses (JobId); orjson takes them
    if fields["pg"] is not None:
        fields["pg"] = tuple(fields["pg"])
    return RecordV1(**fields)


def _struct_decoder(decoder: Any) -> Any:
    decode = decoder.decode

    def decode_struct(job_id: str, raw: bytes) -> RecordV1:
        """As decode_record: CorruptRecord naming the job for bad bytes, a foreign record or
        another schema version (the decoder checks types, the version tag and the status)."""
        try:
            rec: RecordV1 = decode(raw)
        except msgspec.DecodeError as exc:  # ValidationError is a DecodeError
            raise CorruptRecord(job_id, f"not a job record ({exc})") from exc
        if rec.id != job_id:
            raise CorruptRecord(job_id, "record does not describe this job")
        return rec

    return decode_struct


def struct_to_job(rec: RecordV1) -> Job:
    """record_to_job over attributes (the decoder has already checked every field's type)."""
    job_id = JobId(rec.id)
    pg = rec.pg
    st, f, ra = rec.st, rec.f, rec.ra
    return Job(
        job_id,
        TYPE_OF_PREFIX[job_id[:2]],
        STATUS_OF[rec.s],
        rec.p,
        rec.k,
        rec.rc,
        rec.mr,
        rec.m,
        rec.x,
        None if pg is None else Progress(pg[0], pg[1], pg[2]),
        _datetime_of(rec.c),
        _datetime_of(rec.u),
        None if st is None else _datetime_of(st),
        None if f is None else _datetime_of(f),
        None if ra is None else _datetime_of(ra),
        rec.to,
    )


MP_ENC = msgspec.msgpack.Encoder()
MP_DEC = msgspec.msgpack.Decoder(RecordV1)
JS_ENC = msgspec.json.Encoder()
JS_DEC = msgspec.json.Decoder(RecordV1)
decode_msgpack = _struct_decoder(MP_DEC)
decode_json = _struct_decoder(JS_DEC)

# --------------------------------------------------------------------------- records

PARAMS = '{"namespace_id":"default","table_name":"users","table_type":"User"}'
T0 = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z in µs


def _trace(size: int = 2048) -> str:
    lines = ["Traceback (most recent call last):"]
    i = 0
    while sum(len(x) + 1 for x in lines) < size:
        lines.append(f'  File "/srv/kalam/storage/flush.py", line {120 + i}, in flush_table\n'
                     f"    batch = writer.write_segment(rows[{i}:{i + 1}], schema)")
        i += 1
    lines.append("OSError: [Errno 28] No space left on device: '/data/users/seg-000183.parquet'")
    return "\n".join(lines)[:size]


def records() -> dict[str, dict[str, Any]]:
    completed = new_record(JobId.new(JobType.FLUSH), PARAMS, key="flush:default.users:42",
                           max_retries=3, now=T0, status=JobStatus.QUEUED)
    completed.update(s="C", st=T0 + 1_250, f=T0 + 48_900, u=T0 + 48_900,
                     m="flushed 18,432 rows in 3 segments")
    running = new_record(JobId.new(JobType.FLUSH), PARAMS, key=None, max_retries=3,
                         now=T0 + 7, status=JobStatus.QUEUED, timeout_s=300.0)
    running.update(s="R", rc=1, st=T0 + 2_000_131, u=T0 + 2_350_007,
                   m="retrying after OSError: no space left on device",
                   x=_trace(2048), pg=[3, 7, "batch 3 of 7"])
    fresh = new_record(JobId.new(JobType.FLUSH), PARAMS, key=None, max_retries=3,
                       now=T0 + 11, status=JobStatus.QUEUED)
    return {"completed": completed, "running": running, "fresh": fresh}


# --------------------------------------------------------------------------- timing


def _calibrate(timer: timeit.Timer, target_s: float) -> int:
    number = 1
    while True:
        t = timer.timeit(number)
        if t >= target_s / 4:
            return max(1, int(number * target_s / t))
        number *= 4


def measure(stmts: dict[str, str], ns: dict[str, Any], repeat: int,
            target_s: float) -> dict[str, tuple[float, float]]:
    """{label: (min, median) µs per execution} over ``repeat`` repeats of ~target_s each.

    The statements' repeats are interleaved (a, b, c, a, b, c, ...): a busy machine slows all
    of them alike, and the minimum of many short repeats finds the quiet moments.
    """
    timers = {label: timeit.Timer(stmt, globals=ns) for label, stmt in stmts.items()}
    numbers = {label: _calibrate(t, target_s) for label, t in timers.items()}
    per: dict[str, list[float]] = {label: [] for label in stmts}
    for _ in range(repeat):
        for label, t in timers.items():
            per[label].append(t.timeit(numbers[label]) / numbers[label] * 1e6)
    return {label: (min(v), statistics.median(v)) for label, v in per.items()}


def fmt(v: tuple[float, float]) -> str:
    return f"{v[0]:6.3f} / {v[1]:6.3f}"


CODECS = ("orjson (dict)", "msgpack (Struct)", "json (Struct)")


def run(repeat: int, target_ms: float) -> dict[str, Any]:
    target = target_ms / 1000
    recs = records()
    out: dict[str, Any] = {"codec": {}, "size": {}, "write": {}}

    for name, rec in recs.items():
        jid = rec["id"]
        st = struct_of(rec)
        raw_or = encode_record(rec)
        raw_mp = MP_ENC.encode(st)
        raw_js = JS_ENC.encode(st)
        # Same Job whichever way it was stored.
        want = record_to_job(decode_record(jid, raw_or))
        assert struct_to_job(decode_msgpack(jid, raw_mp)) == want, name
        assert struct_to_job(decode_json(jid, raw_js)) == want, name
        assert decode_msgpack(jid, raw_mp) == st and decode_json(jid, raw_js) == st, name
        out["size"][name] = (len(raw_or), len(raw_mp), len(raw_js))

        ns = dict(
            rec=rec, st=st, jid=jid, raw_or=raw_or, raw_mp=raw_mp, raw_js=raw_js,
            dumps=orjson.dumps, loads=orjson.loads, mp_decode=MP_DEC.decode,
            js_decode=JS_DEC.decode, decode_record=decode_record, record_to_job=record_to_job,
            mp_encode=MP_ENC.encode, js_encode=JS_ENC.encode, decode_msgpack=decode_msgpack,
            decode_json=decode_json, struct_to_job=struct_to_job,
            rec_dec=decode_record(jid, raw_or),
        )
        rows = {
            "encode": ("dumps(rec)", "mp_encode(st)", "js_encode(st)"),
            "decode, bare": ("loads(raw_or)", "mp_decode(raw_mp)", "js_decode(raw_js)"),
            "decode": ("decode_record(jid, raw_or)", "decode_msgpack(jid, raw_mp)",
                       "decode_json(jid, raw_js)"),
            "decode->Job": ("record_to_job(decode_record(jid, raw_or))",
                            "struct_to_job(decode_msgpack(jid, raw_mp))",
                            "struct_to_job(decode_json(jid, raw_js))"),
            "->Job only": ("record_to_job(rec_dec)", "struct_to_job(st)", "struct_to_job(st)"),
        }
        out["codec"][name] = {}
        for op, stmts in rows.items():
            got = measure(dict(zip(CODECS, stmts, strict=True)), ns, repeat, target)
            out["codec"][name][op] = tuple(got[c] for c in CODECS)

    rec = dict(recs["fresh"])
    st = struct_of(rec)
    ns = dict(rec=rec, st=st, copy=copy.copy, replace=msgspec.structs.replace, now=T0 + 99)
    write_rows = {
        "dict(rec)  [today: the written cache, both ways]": "dict(rec)",
        "rec.copy()": "rec.copy()",
        "copy.copy(struct)": "copy(st)",
        "struct.__copy__()": "st.__copy__()",
        "msgspec.structs.replace(struct)": "replace(st)",
        "msgspec.structs.replace(struct, s=, u=)  [copy-on-write move]":
            "replace(st, s='R', u=now)",
        "rec['s'] = 'R'  (dict item set)": "rec['s'] = 'R'",
        "st.s = 'R'  (attribute set)": "st.s = 'R'",
        "move's sets: rec['s'], rec['u'], rec['st']":
            "rec['s'] = 'R'; rec['u'] = now; rec['st'] = now",
        "move's sets: st.s, st.u, st.st": "st.s = 'R'; st.u = now; st.st = now",
        "(empty statement: timeit's own loop)": "pass",
    }
    out["write"] = measure(write_rows, ns, repeat, target)
    return out


# --------------------------------------------------------------------------- report

GET_JOB_US = 22.7  # B5 get_job, end to end (bench/RESULTS.md)
B1_CPU_US = (64.0, 81.0)  # B1/B2 CPU µs per job, all threads


def report(out: dict[str, Any], repeat: int, target_ms: float) -> None:
    print(f"bench.codec — Python {platform.python_version()}, orjson {orjson.__version__}, "
          f"msgspec {msgspec.__version__}; µs per operation, min / median of {repeat} repeats "
          f"(~{target_ms:g} ms each, GC off)\n")
    print(f"{'record':<10} {'operation':<12} | " + " | ".join(f"{c:^17}" for c in CODECS))
    print("-" * 10 + " " + "-" * 12 + "-+-" + "-+-".join("-" * 17 for _ in CODECS))
    for name, ops in out["codec"].items():
        for op, vals in ops.items():
            print(f"{name:<10} {op:<12} | " + " | ".join(f"{fmt(v):^17}" for v in vals))
        sizes = out["size"][name]
        print(f"{name:<10} {'size, bytes':<12} | " + " | ".join(f"{s:^17}" for s in sizes))
        print()
    print("write side (record 'fresh'; the runtime mutates records in place)      min / median")
    for label, v in out["write"].items():
        print(f"  {label:<66} {fmt(v)}")
    print()

    # ---- what it would save. Minimums: on a shared machine the median carries other
    # processes' load; the medians give the same picture with more noise.
    def cost(name: str, op: str, col: int, k: int = 0) -> float:
        return float(out["codec"][name][op][col][k])

    def wr(prefix: str, k: int = 0) -> float:
        return next(v[k] for label, v in out["write"].items() if label.startswith(prefix))

    saves: dict[str, dict[str, tuple[float, float, float]]] = {}
    for k, stat in ((0, "min"), (1, "median")):
        saves[stat] = {}
        for col in (1, 2):
            # get_job over a store this process did not write (B5: a 1M Completed store, no
            # written-cache hit): bytes -> Job for the Completed record.
            get = cost("completed", "decode->Job", 0, k) - cost("completed", "decode->Job", col, k)
            # One B1 no-op job as the runtime runs it (records without trace, as 'fresh'):
            # 3 encodes (Queued, Running, Completed); the dispatch and completion reads served
            # by the written cache (one copy each) and 2 copies into it (Queued, Running);
            # 2 moves of 3 field sets; one record -> Job in the actor.
            enc = 3 * (cost("fresh", "encode", 0, k) - cost("fresh", "encode", col, k))
            cp = 4 * (wr("dict(rec)", k) - wr("struct.__copy__()", k))
            sets = 2 * (wr("move's sets: rec", k) - wr("move's sets: st.", k))
            job = cost("fresh", "->Job only", 0, k) - cost("fresh", "->Job only", col, k)
            cached = enc + cp + sets + job
            # The same when both reads decode instead (cache misses): 2 decodes replace 2 copies.
            dec = 2 * (cost("fresh", "decode", 0, k) - cost("fresh", "decode", col, k))
            decoding = enc + dec + cp / 2 + sets + job
            saves[stat][CODECS[col]] = (get, cached, decoding)

    print("what msgspec would save per operation (+ = msgspec cheaper), from the minimums "
          "[medians]")
    print(f"  {'':<17} {'get_job (B5, decode->Job)':>27} {'B1 job, cache hits':>25} "
          f"{'B1 job, reads decode':>25}")
    for codec in CODECS[1:]:
        g, c, d = saves["min"][codec]
        gm, cm, dm = saves["median"][codec]
        print(f"  {codec:<17} {g:>+7.2f} µs [{gm:+6.2f}] {100 * g / GET_JOB_US:>3.0f}%"
              f" {c:>+9.2f} µs [{cm:+6.2f}] {100 * c / B1_CPU_US[0]:>3.0f}%"
              f" {d:>+9.2f} µs [{dm:+6.2f}] {100 * d / B1_CPU_US[0]:>3.0f}%")
    print(f"  (% of get_job's {GET_JOB_US} µs end to end, and of B1's {B1_CPU_US[0]:.0f} µs CPU "
          f"per job, the low end of {B1_CPU_US[0]:.0f}–{B1_CPU_US[1]:.0f}: the largest share)")
    print()

    best = max(CODECS[1:], key=lambda c: saves["min"][c][0] + saves["min"][c][1])
    g, c, d = saves["min"][best]
    jshare = cost("completed", "->Job only", 0) / cost("completed", "decode->Job", 0)
    lo, hi = min(c, d), max(c, d)
    verdict = (
        f"Verdict: the better candidate, {best}, saves about {g:.1f} µs of get_job's "
        f"{GET_JOB_US} µs ({100 * g / GET_JOB_US:.0f}%) and {lo:.1f}–{hi:.1f} µs of a B1 job's "
        f"{B1_CPU_US[0]:.0f}–{B1_CPU_US[1]:.0f} µs of CPU ({100 * lo / B1_CPU_US[1]:.0f}–"
        f"{100 * hi / B1_CPU_US[0]:.0f}%); building the Job is {100 * jshare:.0f}% of today's "
        f"bytes -> Job and the same work either way. "
    )
    if hi / B1_CPU_US[0] >= 0.10 or g / GET_JOB_US >= 0.20:
        verdict += ("That is enough to matter: worth a schema version, a migration and a "
                    "second decoding path.")
    else:
        verdict += (
            f"That does not pay for a schema version, a migration and a second decoding path: "
            f"today's codec costs {cost('fresh', 'encode', 0):.1f} µs to encode and "
            f"{cost('fresh', 'decode', 0):.1f} µs to decode a B1 record, so even if every "
            f"read decoded, a B1 job would save a few per cent of its CPU, which goes to "
            f"commits, thread hops and actor messages; and get_job would still miss its 20 µs "
            f"target. The read path's µs are in building the Job (record_to_job), which no "
            f"codec touches."
        )
    print(verdict)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.codec", description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=25, help="repeats per operation (25)")
    ap.add_argument("--target-ms", type=float, default=10.0, help="length of one repeat (10)")
    args = ap.parse_args(argv)
    out = run(args.repeat, args.target_ms)
    report(out, args.repeat, args.target_ms)
    return 0


if __name__ == "__main__":
    sys.exit(main())
