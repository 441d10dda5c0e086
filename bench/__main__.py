"""``python -m bench [--quick] [--only B1,B2] [--out DIR] [--profile]``

Runs every figure (ours and the peer, Huey, in the same run), writes ``RESULTS.md`` and
``results.json`` into ``--out`` (default: this folder). ``--quick`` uses small sizes and one
run per figure, for a CI smoke run (under a minute); its numbers are not the recorded ones.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from ._common import WORK
from ._runner import ROOT, median_of, repeat, repeat_pair, run_child, summarize_profile

HERE = Path(__file__).resolve().parent
X = "\u00d7"  # the multiplication sign, for ratios


@dataclass
class Config:
    quick: bool
    runs: int
    n_jobs: int  # B1/B2/B9 jobs per run
    n_sqlite: int  # SqliteHuey jobs per run (it is ~50x slower)
    latency_s: float
    n_bulk: int
    b5_big: int
    b5_small: int
    n_recovery: int
    n_b7: int
    n_b8: int
    profile: bool = False
    log: Callable[[str], None] = print


@dataclass
class Row:
    figure: str
    what: str
    ours: float | None
    peer: float | None
    unit: str
    target: str
    met: bool | None
    how: str
    ratio: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


FULL: dict[str, Any] = dict(runs=5, n_jobs=30_000, n_sqlite=3_000, latency_s=5.0, n_bulk=100_000,
            b5_big=1_000_000, b5_small=10_000, n_recovery=100_000, n_b7=1_000_000,
            n_b8=100_000)
QUICK: dict[str, Any] = dict(runs=1, n_jobs=4_000, n_sqlite=300, latency_s=1.0, n_bulk=20_000,
             b5_big=50_000, b5_small=10_000, n_recovery=10_000, n_b7=50_000, n_b8=5_000)


# --------------------------------------------------------------------------- figures


def b0(cfg: Config, state: dict[str, Any]) -> list[Row]:
    n = cfg.n_sqlite * 2
    ours, peer = repeat_pair(
        ("jobs", "new_user_throughput", {"n": n}),
        ("peer", "noop_throughput", {"n": cfg.n_sqlite, "kind": "sqlite"}), cfg.runs, cfg.log)
    o, p = median_of(ours, "rate"), median_of(peer, "rate")
    ratio = o / p
    return [Row(
        "B0", "as a new user would: durable no-op jobs/s with every default", o, p, "jobs/s",
        f"≥ 10,000/s and ≥ 10{X} SqliteHuey", o >= 10_000 and ratio >= 10,
        f"open_job_manager(path, executors=[a no-op JobExecutor with every default], "
        f"max_concurrent=64); 64 trio tasks each call create_job one job at a time, then "
        f"wait_job on it; default logging; {n} jobs. CPU per job "
        f"{median_of(ours, 'cpu_us_per_job'):.0f} µs. Peer: SqliteHuey(fsync=True) as in B1. "
        f"Median of {cfg.runs} runs each, alternating.",
        ratio,
        {"ours_runs": [r["rate"] for r in ours], "peer_runs": [r["rate"] for r in peer]},
    )]


def b1(cfg: Config, state: dict[str, Any]) -> list[Row]:
    ours, peer = repeat_pair(
        ("jobs", "noop_throughput", {"n": cfg.n_jobs, "durable": True}),
        ("peer", "noop_throughput", {"n": cfg.n_sqlite, "kind": "sqlite"}), cfg.runs, cfg.log)
    o, p = median_of(ours, "rate"), median_of(peer, "rate")
    state["b1"] = o
    ratio = o / p
    return [Row(
        "B1", "durable no-op jobs/s (create → Queued → Running → Completed)", o, p, "jobs/s",
        f"≥ 20,000/s and ≥ 15{X} SqliteHuey", o >= 20_000 and ratio >= 15,
        f"{cfg.n_jobs} jobs submitted by one task with create_jobs in chunks of 100 while they "
        f"run (1 actor, prefetch 256, max_concurrent 256, durable=True: every commit fsynced "
        f"before it is answered); rate = n / (first submission → n-th Completed committed). "
        f"CPU time of the process per job (all threads): "
        f"{median_of(ours, 'cpu_us_per_job'):.0f} µs — the trio loop "
        f"{median_of(ours, 'cpu_us_per_job_loop'):.0f}, the commit thread "
        f"{median_of(ours, 'cpu_us_per_job_writer'):.0f}, actors and the rest "
        f"{median_of(ours, 'cpu_us_per_job_other'):.0f} (per-thread CPU from /proc). "
        f"Peer: SqliteHuey(fsync=True, WAL), 2 thread workers in-process, {cfg.n_sqlite} tasks "
        f"enqueued one by one while the consumer runs. Median of {cfg.runs} runs each, ours "
        f"and the peer's alternating.",
        ratio,
        {"ours_runs": [r["rate"] for r in ours], "peer_runs": [r["rate"] for r in peer],
         "writes_per_commit": median_of(ours, "writes_per_commit")},
    )]


def b2(cfg: Config, state: dict[str, Any]) -> list[Row]:
    ours, peer = repeat_pair(
        ("jobs", "noop_throughput", {"n": cfg.n_jobs, "durable": False}),
        ("peer", "noop_throughput", {"n": cfg.n_jobs, "kind": "memory"}), cfg.runs, cfg.log)
    o, p = median_of(ours, "rate"), median_of(peer, "rate")
    state["b2_peer"] = p
    return [Row(
        "B2", "no-op jobs/s, durable=False", o, p, "jobs/s", f"≥ 1.0{X} MemoryHuey", o >= p,
        f"As B1 with durable=False (commits not fsynced; CPU per job "
        f"{median_of(ours, 'cpu_us_per_job'):.0f} µs). Peer: MemoryHuey, 2 thread workers, "
        f"{cfg.n_jobs} tasks. Median of {cfg.runs} runs each, alternating with the peer's.",
        o / p,
        {"ours_runs": [r["rate"] for r in ours], "peer_runs": [r["rate"] for r in peer]},
    )]


B3_RATE = 2_000.0


def b3(cfg: Config, state: dict[str, Any]) -> list[Row]:
    rate = B3_RATE
    runs = max(1, min(3, cfg.runs))
    ours = repeat("jobs", "start_latency", {"rate": rate, "seconds": cfg.latency_s}, runs,
                  cfg.log)
    peer_rate = rate
    peer = repeat("peer", "start_latency",
                  {"rate": peer_rate, "seconds": cfg.latency_s, "kind": "memory"}, runs, cfg.log)
    p50, p99 = median_of(ours, "p50_ms"), median_of(ours, "p99_ms")
    how = (f"Open loop: single create_job calls at a fixed {rate:,.0f}/s, each from its own "
           f"trio task, for {cfg.latency_s:g} s, durable=True, the runtime configured as in B1 "
           f"(prefetch 256, max_concurrent 256); latency = create_job call → first "
           f"line of execute in the actor thread (one fsync pair is ~1.2 ms here: the floor). "
           f"Peer (for scale, not a target): MemoryHuey at the same rate, enqueue → first "
           f"line of the task. Median over {runs} runs of each run's percentile.")
    extra = {"offered": rate, "achieved": median_of(ours, "achieved_rate"),
             "p90_ms": median_of(ours, "p90_ms"), "peer_offered": peer_rate}
    return [
        Row("B3", "enqueue → start latency p50", p50, median_of(peer, "p50_ms"), "ms",
            "≤ 2.5 ms", p50 <= 2.5, how, None, extra),
        Row("B3", "enqueue → start latency p99", p99, median_of(peer, "p99_ms"), "ms",
            "≤ 10 ms", p99 <= 10.0, "(same runs)", None),
    ]


def b4(cfg: Config, state: dict[str, Any]) -> list[Row]:
    runs = max(1, min(3, cfg.runs))
    ours = repeat("stored", "bulk_create", {"n": cfg.n_bulk}, runs, cfg.log)
    o = median_of(ours, "rate")
    return [Row(
        "B4", f"create_jobs bulk submission ({cfg.n_bulk:,} jobs in one call)", o, None,
        "jobs/s", "≥ 100,000/s", o >= 100_000,
        f"One create_jobs call of {cfg.n_bulk:,} no-op jobs into a running durable runtime; "
        f"time from the call to its return (validated, one write transaction, fsynced). Huey "
        f"has no bulk enqueue. Median of {runs} runs.",
        None, {"runs": [r["rate"] for r in ours]},
    )]


def b5(cfg: Config, state: dict[str, Any]) -> list[Row]:
    runs = max(1, min(3, cfg.runs))
    # Alternating big and small: the figure is a ratio, and load on this machine drifts.
    big, small = repeat_pair(
        ("stored", "reads", {"terminal": cfg.b5_big, "queued": 10_000}),
        ("stored", "reads", {"terminal": cfg.b5_small, "queued": 10_000}), runs, cfg.log)
    rows: list[Row] = []
    how = (f"Store of {cfg.b5_big:,} Completed + 10,000 Queued jobs (every Queued job holds an "
           f"idempotency key), written directly with StoreTxn.insert and cached in bench/.work; "
           f"compared with {cfg.b5_small:,} + 10,000. Median µs per call of 2,000 calls "
           f"(100 for the listing), JobStore API in a process running no runtime; "
           f"median of {runs} runs of each store, alternating.")
    specs = [
        ("list_queued_100_us", "list_jobs(status=Queued, limit=100)", 5000.0, "≤ 5 ms"),
        ("get_job_us", "get_job(id)", 20.0, "≤ 20 µs"),
        ("key_lookup_us", "idempotency check: keys-index lookup (list_jobs by key, active)",
         None, None),
        ("create_conflict_us", "idempotency check: create_job refused by a held key (write "
         "txn, aborted)", None, None),
    ]
    for key, what, limit, target in specs:
        o, s = median_of(big, key), median_of(small, key)
        growth = o / s
        met = growth <= 1.2 and (limit is None or o <= limit)
        rows.append(Row("B5", what, o, None, "µs",
                        (f"{target}; " if target else "")
                        + f"at {cfg.b5_big:,} ≤ 1.2{X} at {cfg.b5_small:,}", met,
                        how if not rows else "(same store, same runs)", None,
                        {"at_small_us": s, "growth": growth}))
    return rows


def b6(cfg: Config, state: dict[str, Any]) -> list[Row]:
    runs = max(1, min(3, cfg.runs))
    ours = repeat("stored", "recovery", {"running": cfg.n_recovery}, runs, cfg.log)
    o = median_of(ours, "elapsed_s")
    return [Row(
        "B6", f"startup recovery, {cfg.n_recovery:,} Running jobs", o, None, "s", "≤ 2 s",
        o <= 2.0,
        f"A store holding {cfg.n_recovery:,} Running jobs (as after a crash); time from "
        f"entering open_job_manager to its body (every one moved to Failed, 'Server "
        f"restarted', in fsynced batches of 10,000). Huey has no recovery of running tasks. "
        f"Median of {runs} runs.",
        None, {"runs": [r["elapsed_s"] for r in ours]},
    )]


def b7(cfg: Config, state: dict[str, Any]) -> list[Row]:
    runs = max(1, min(3, cfg.runs))
    cfg.log(f"    building/reusing the {cfg.n_b7:,}-queued store (cached in bench/.work)")
    empty = repeat("stored", "manager_rss", {"store": "empty"}, runs, cfg.log)
    loaded = repeat("stored", "manager_rss", {"store": "queued", "n": cfg.n_b7}, runs, cfg.log)
    e = sorted(r["rss_kb"]["VmRSS"] for r in empty)[len(empty) // 2]
    lo = sorted(r["rss_kb"]["VmRSS"] for r in loaded)[len(loaded) // 2]
    anon = sorted(r["rss_kb"]["RssAnon"] for r in loaded)[len(loaded) // 2]
    anon_e = sorted(r["rss_kb"]["RssAnon"] for r in empty)[len(empty) // 2]
    delta_mb = (lo - e) / 1024
    state["rss_empty_kb"] = e
    return [Row(
        "B7", f"resident memory over an empty store, {cfg.n_b7:,} queued jobs", delta_mb, None,
        "MB", "≤ 100 MB", delta_mb <= 100,
        f"VmRSS of a process running the runtime 1 s after start (gc.collect() first) over a "
        f"store of {cfg.n_b7:,} Queued jobs, minus the same over an empty store, each in its "
        f"own process (the executor holds its first job so the rest stay queued). "
        f"Absolute: {lo / 1024:.1f} MB vs {e / 1024:.1f} MB; anonymous memory "
        f"{anon / 1024:.1f} vs {anon_e / 1024:.1f} MB (the rest is LMDB pages mapped). "
        f"Median of {runs} runs.",
        None, {"rss_loaded_kb": lo, "rss_empty_kb": e,
               "startup_s": median_of(loaded, "startup_s")},
    )]


def b8(cfg: Config, state: dict[str, Any]) -> list[Row]:
    runs = max(1, min(3, cfg.runs))
    rss = repeat("stored", "manager_rss", {"store": "retrying", "n": cfg.n_b8}, runs, cfg.log)
    empty = repeat("stored", "manager_rss", {"store": "empty"}, runs, cfg.log)
    drain = repeat("stored", "retry_drain", {"n": cfg.n_b8}, runs, cfg.log)
    tasks, tasks_e = median_of(drain, "tasks"), median_of(drain, "tasks_empty_store")
    lo = sorted(r["rss_kb"]["VmRSS"] for r in rss)[len(rss) // 2]
    e = sorted(r["rss_kb"]["VmRSS"] for r in empty)[len(empty) // 2]
    delta_mb = (lo - e) / 1024
    rate = median_of(drain, "drain_rate")
    return [
        Row("B8", f"{cfg.n_b8:,} Retrying jobs, distinct due times: trio tasks (vs empty "
            "store)", tasks, None, "tasks", "one timer (same tasks as over an empty store)",
            tasks == tasks_e,
            f"Retrying records due 20 µs apart, first due 1.5 s after start; trio tasks "
            f"counted by walking the task tree ({tasks_e:g} over an empty store). Once due they "
            f"run at {rate:,.0f}/s (n / first due → last Completed). Median of {runs} runs.",
            None, {"tasks_empty": tasks_e, "drain_rate": rate,
                   "late_ms": median_of(drain, "late_after_last_due_ms")}),
        Row("B8", f"resident memory over an empty store, {cfg.n_b8:,} Retrying jobs", delta_mb,
            None, "MB", "within B7 (≤ 100 MB)", delta_mb <= 100,
            "As B7, over a store of Retrying jobs due 100 µs apart starting in 1 h.", None,
            {"rss_loaded_kb": lo, "rss_empty_kb": e}),
    ]


def b9(cfg: Config, state: dict[str, Any]) -> list[Row]:
    runs = max(1, min(3, cfg.runs))
    n = cfg.n_jobs // 2
    base = repeat("jobs", "noop_throughput", {"n": n}, runs, cfg.log)
    b = median_of(base, "rate")
    rows: list[Row] = []
    # The choice (process) is the figure; the two ways that keep the work in the actor thread
    # are measured beside it, as the alternatives it was chosen over.
    variants: list[tuple[str, dict[str, Any], str, bool]] = [
        ("process", {"cpu": "process"}, "CPU executor hands the work to a 1-process pool and "
         "waits (its actor thread releases the GIL while waiting)", True),
        ("thread (alternative)", {"cpu": "thread"}, "CPU executor in its actor thread, default "
         "switch interval (5 ms)", False),
        ("thread+switch (alternative)", {"cpu": "thread", "switch_interval": 0.0005},
         "CPU executor in its actor thread, sys.setswitchinterval(0.0005)", False),
    ]
    for name, kw, text, chosen in variants:
        res = repeat("jobs", "noop_throughput", {"n": n, "cpu_ms": 20.0, **kw}, runs, cfg.log)
        r = median_of(res, "rate")
        slow = b / r
        rows.append(Row(
            "B9", f"no-op jobs/s beside a CPU-bound executor: {name}", r, None, "jobs/s",
            f"slowdown ≤ 2{X}" if chosen else f"(informative; slowdown {slow:.2f}{X})",
            slow <= 2.0 if chosen else None,
            f"{text}; the CPU executor (JobType.COMPACT, 20 ms of pure-Python work a job, 2,000 "
            f"queued) runs beside {n:,} durable no-ops as in B1. Slowdown = "
            f"{b:,.0f}/s alone ÷ this = {slow:.2f}{X}. Median of {runs} runs.",
            None, {"alone": b, "slowdown": slow},
        ))
    return rows


def logging_cost(cfg: Config, state: dict[str, Any]) -> list[Row]:
    runs = max(1, min(3, cfg.runs))
    rows: list[Row] = []
    base = state.get("b1")
    for level in ("INFO", "DEBUG"):
        res = repeat("jobs", "noop_throughput", {"n": cfg.n_jobs // 2, "log_level": level},
                     runs, cfg.log)
        r = median_of(res, "rate")
        rows.append(Row(
            "LOG", f"B1 with a loguru file sink at {level}", r, None, "jobs/s", "(informative)",
            None,
            f"As B1 with one loguru file sink (enqueue=False) at {level} instead of no sinks"
            + (f"; B1 without sinks: {base:,.0f}/s" if base else "") + f". Median of {runs}.",
        ))
    return rows


def per_job(cfg: Config, state: dict[str, Any]) -> list[Row]:
    res = repeat("breakdown", "stages", {"rounds": 5 if cfg.quick else 20}, 1, cfg.log)[0]
    rows: list[Row] = []
    for stage, us in res["stages_us"].items():
        rows.append(Row("PJ", stage, us, None, "µs", "(informative)", None,
                        "" if rows else (
                            "One durable no-op job's hot path, each stage timed alone in one "
                            "thread on a real store (bench/breakdown.py); batch costs divided "
                            f"by 100. Sum of stages: {res['sum_us']:.0f} µs — a floor under "
                            "B1's CPU time per job.")))
    return rows


FIGURES: dict[str, Callable[[Config, dict[str, Any]], list[Row]]] = {
    "B0": b0, "B1": b1, "B2": b2, "B3": b3, "B4": b4, "B5": b5, "B6": b6, "B7": b7, "B8": b8,
    "B9": b9,
    "LOG": logging_cost, "PJ": per_job,
}


# --------------------------------------------------------------------------- report


def _versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for dist in ("kalam-actors", "trio", "pykka", "lmdb", "orjson", "loguru", "huey"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "?"
    return out


def _git() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                              capture_output=True, text=True).stdout.strip()
    except OSError:
        return "?"


def _fmt(v: float | None, unit: str) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    if unit in ("jobs/s", "tasks"):
        return f"{v:,.0f}"
    if unit == "µs":
        return f"{v:,.1f} µs"
    if unit == "ms":
        return f"{v:.2f} ms"
    if unit == "s":
        return f"{v:.2f} s"
    if unit == "MB":
        return f"{v:.1f} MB"
    return f"{v:g}"


def render(rows: list[Row], meta: dict[str, Any], analysis: str) -> str:
    out = ["# kalam-actors benchmark results", ""]
    out += [f"Command: `{meta['command']}` — {meta['date']} — commit {meta['commit']} — "
            f"{meta['machine']} — load average at start {meta['load_start']}, at end "
            f"{meta['load_end']}." + (" **QUICK RUN: small sizes, one run each; not the "
            "recorded figures.**" if meta["quick"] else ""), ""]
    out += ["Versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()) + ".",
            "", "Logging: no loguru sinks (`logger.remove()`) in every figure except LOG.", ""]
    out += ["| # | figure | ours | peer | ratio | target | met |",
            "|---|---|---|---|---|---|---|"]
    for r in rows:
        ratio = "—" if r.ratio is None else f"{r.ratio:.2f}{X}"
        met = {True: "yes", False: "**no**", None: "—"}[r.met]
        out.append(f"| {r.figure} | {r.what} | {_fmt(r.ours, r.unit)} | "
                   f"{_fmt(r.peer, r.unit)} | {ratio} | {r.target} | {met} |")
    out += ["", "Peer: Huey " + meta["versions"].get("huey", "?") + " — SqliteHuey for "
            "durable figures, MemoryHuey for non-durable ones (configuration in "
            "bench/peer.py).", "", "## How each row was measured", ""]
    for r in rows:
        if not r.how or r.how.startswith("("):
            continue
        out.append(f"- **{r.figure}** {r.what}: {r.how}")
    if analysis:
        out += ["", analysis.strip()]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[2])
    parser.add_argument("--quick", action="store_true",
                        help="small sizes, one run each (CI smoke; under a minute)")
    parser.add_argument("--only", default="", help="comma-separated figures, e.g. B1,B2")
    parser.add_argument("--out", default=None,
                        help="folder for RESULTS.md and results.json (default: bench/)")
    parser.add_argument("--profile", action="store_true",
                        help="also profile one B1 run with py-spy into <out>/profiles/")
    parser.add_argument("--render", action="store_true",
                        help="measure nothing: rewrite <out>/RESULTS.md from <out>/results.json "
                             "and bench/analysis.md")
    args = parser.parse_args(argv)
    if args.render:
        out_dir = Path(args.out) if args.out else HERE
        data = orjson.loads((out_dir / "results.json").read_bytes())
        saved = [Row(**r) for r in data["rows"]]
        analysis_file = HERE / "analysis.md"
        analysis = analysis_file.read_text() if analysis_file.exists() else ""
        if data["meta"]["quick"]:
            analysis = ""
        (out_dir / "RESULTS.md").write_text(render(saved, data["meta"], analysis))
        return 0
    cfg = Config(quick=args.quick, **(QUICK if args.quick else FULL), profile=args.profile)
    only = [f.strip().upper() for f in args.only.split(",") if f.strip()]
    unknown = [f for f in only if f not in FIGURES]
    if unknown:
        parser.error(f"unknown figures {unknown}; known: {', '.join(FIGURES)}")
    out_dir = Path(args.out) if args.out else HERE
    out_dir.mkdir(parents=True, exist_ok=True)
    meta = {
        "command": "python -m bench " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": _git(), "quick": args.quick,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()} "
                   f"{platform.release()}",
        "load_start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "versions": _versions(),
    }
    state: dict[str, Any] = {}
    rows: list[Row] = []
    t0 = time.perf_counter()
    for name, fn in FIGURES.items():
        if only and name not in only:
            continue
        cfg.log(f"{name} ...")
        t = time.perf_counter()
        rows.extend(fn(cfg, state))
        cfg.log(f"{name} done in {time.perf_counter() - t:.1f} s")
    if args.profile:
        prof_dir = out_dir / "profiles"
        prof_dir.mkdir(exist_ok=True)
        WORK.mkdir(parents=True, exist_ok=True)
        raw = WORK / "b1.raw.txt"  # collapsed stacks, large: kept out of git
        run_child("jobs", "noop_throughput", {"n": cfg.n_jobs}, profile_to=raw)
        (prof_dir / "b1-top.txt").write_text(
            f"py-spy record -r 250 of one B1 run ({cfg.n_jobs} jobs), {meta['date']}\n\n"
            + summarize_profile(raw) + "\n"
        )
        cfg.log(f"profile: {prof_dir / 'b1-top.txt'}")
    meta["load_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    meta["total_s"] = round(time.perf_counter() - t0, 1)
    analysis_file = HERE / "analysis.md"
    analysis = analysis_file.read_text() if analysis_file.exists() and not args.quick else ""
    (out_dir / "RESULTS.md").write_text(render(rows, meta, analysis))
    (out_dir / "results.json").write_bytes(orjson.dumps(
        {"meta": meta, "rows": [r.__dict__ for r in rows]},
        option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY,
    ))
    cfg.log(f"wrote {out_dir / 'RESULTS.md'} in {meta['total_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
