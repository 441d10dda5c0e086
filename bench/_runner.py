"""Run measurements in fresh child processes and take medians (runs in the parent)."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent


def _env() -> dict[str, str]:
    env = dict(os.environ)
    # The repo root after anything the caller put first (a scratch copy under test wins).
    parts = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join([*parts, str(ROOT)])
    return env


def run_child(module: str, func: str, kwargs: dict[str, Any], *, timeout: float = 900,
              profile_to: Path | None = None) -> dict[str, Any]:
    """Run ``bench.<module>.<func>(**kwargs)`` in a fresh interpreter; return its result."""
    cmd = [sys.executable, "-m", "bench._child", module, func, orjson.dumps(kwargs).decode()]
    if profile_to is not None and shutil.which("py-spy"):
        cmd = ["py-spy", "record", "-r", "250", "-f", "raw", "-o", str(profile_to),
               "--nonblocking", "--", *cmd]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True,
                          timeout=timeout)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(
            f"bench.{module}.{func}({kwargs}) failed (exit {proc.returncode}):\n"
            f"{proc.stderr[-3000:]}"
        )
    result: dict[str, Any] = orjson.loads(lines[-1][len("RESULT "):])
    result["_wall_s"] = time.perf_counter() - t0
    return result


def repeat(module: str, func: str, kwargs: dict[str, Any], runs: int,
           log: Any = print) -> list[dict[str, Any]]:
    out = []
    for i in range(runs):
        r = run_child(module, func, kwargs)
        log(f"    {module}.{func}{_short(kwargs)} run {i + 1}/{runs}: {_brief(r)}")
        out.append(r)
    return out


def repeat_pair(a: tuple[str, str, dict[str, Any]], b: tuple[str, str, dict[str, Any]],
                runs: int, log: Any = print) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Run two measurements alternately (a, b, a, b, …): on a machine whose load changes from
    minute to minute, both sides of a ratio then see the same conditions."""
    out_a: list[dict[str, Any]] = []
    out_b: list[dict[str, Any]] = []
    for i in range(runs):
        for spec, out in ((a, out_a), (b, out_b)):
            module, func, kwargs = spec
            r = run_child(module, func, kwargs)
            log(f"    {module}.{func}{_short(kwargs)} run {i + 1}/{runs}: {_brief(r)}")
            out.append(r)
    return out_a, out_b


def median_of(results: Sequence[dict[str, Any]], key: str) -> float:
    values = [r[key] for r in results if r.get(key) is not None]
    return float(statistics.median(values)) if values else float("nan")


def _short(kwargs: dict[str, Any]) -> str:
    return "(" + ", ".join(f"{k}={v}" for k, v in kwargs.items()) + ")"


def _brief(r: dict[str, Any]) -> str:
    keys = [k for k, v in r.items() if isinstance(v, (int, float)) and not k.startswith("_")]
    return ", ".join(f"{k}={_fmt(r[k])}" for k in keys[:6])


def _fmt(v: float) -> str:
    if isinstance(v, int):
        return str(v)
    return f"{v:.4g}"


def summarize_profile(raw: Path, top: int = 25) -> str:
    """Top frames of a py-spy raw (collapsed stacks) profile: by self time, then inclusive."""
    import collections

    self_c: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        count = int(n)
        total += count
        frames = stack.split(";")
        self_c[frames[-1]] += count
        for f in set(frames):
            incl[f] += count
    lines = [f"samples: {total} (all threads; py-spy, idle threads excluded)", "", "self:"]
    lines += [f"  {100 * v / total:5.1f}%  {k}" for k, v in self_c.most_common(top)]
    lines += ["", "inclusive (runtime and library frames):"]
    lines += [f"  {100 * v / total:5.1f}%  {k}" for k, v in incl.most_common(top * 3)
              if "kalam_actors" in k or "trio/" in k or "pykka" in k or "lmdb" in k
              or "loguru" in k][: top * 2]
    return "\n".join(lines)
