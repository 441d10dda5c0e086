"""Child process of ``test_reliability_hostile_values``: offers parameters nested ``DEPTH``
levels deep to every submit surface of a runtime, then serves one good job.

    python hostile_child.py KIND DEPTH PATH

KIND is ``dict``, ``list``, ``tuple`` or ``mixed`` (see :func:`nest`). It prints one JSON line
per surface (``create_job``, ``create_jobs``, ``JobStore``) saying how the submit ended, one
with the number of stored jobs, and one with the status the good job ended in; it exits 0.

It is a child process because a deep enough tuple once corrupted orjson's heap: the process
died with SIGABRT (exit 134) instead of raising, taking the runtime with it.

The test module imports :func:`nest` from here, so both build the same values.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

KINDS = ("dict", "list", "tuple", "mixed")
_CYCLE = ("dict", "list", "tuple")


def nest(kind: str, depth: int) -> dict[str, Any]:
    """Parameters ``{"hostile": ...}`` whose containers nest ``depth`` levels deep, counting
    the parameters object itself as level 1 (as the store's depth limit does); the innermost
    container is empty, so no scalar adds a level. ``mixed`` cycles dict, list and tuple."""
    if kind not in KINDS or depth < 2:
        raise ValueError(f"nest({kind!r}, {depth})")
    node: Any = None
    for level in range(depth, 1, -1):
        k = _CYCLE[level % 3] if kind == "mixed" else kind
        if node is None:
            node = {} if k == "dict" else [] if k == "list" else ()
        elif k == "dict":
            node = {"hostile": node}
        elif k == "list":
            node = [node]
        else:
            node = (node,)
    return {"hostile": node}


def _emit(**fields: Any) -> None:
    # json (ASCII-escaped), not orjson: a message holding a lone surrogate still prints.
    print(json.dumps(fields), flush=True)


async def _main(kind: str, depth: int, path: Path) -> None:
    from reliability_support import scripted_executor

    from kalam_actors import InvalidParams, JobStore, JobType, open_job_manager

    params = nest(kind, depth)
    executors = [scripted_executor(JobType.FLUSH)]
    async with open_job_manager(path, executors=executors, durable=False,
                                poll_interval_s=0.02) as jm:
        store = JobStore(path, executors=executors)
        try:
            for surface in ("create_job", "create_jobs", "JobStore"):
                _emit(surface=surface, trying=True)
                try:
                    if surface == "create_job":
                        await jm.create_job("FL", params)
                    elif surface == "create_jobs":
                        await jm.create_jobs([("FL", {"do": "noop"}), ("FL", params)])
                    else:
                        store.create_job("FL", params)
                except InvalidParams as exc:
                    _emit(surface=surface, outcome="refused", error=type(exc).__name__,
                          message=str(exc)[:500])
                except Exception as exc:
                    _emit(surface=surface, outcome="error", error=type(exc).__name__,
                          message=str(exc)[:500])
                else:
                    _emit(surface=surface, outcome="accepted")
            _emit(stored=len(store.list_jobs()))
            good = await jm.create_job("FL", {"do": "noop"})
            job = await jm.wait_job(good, timeout_s=30)
            _emit(served=job.status.value)
        finally:
            store.close()


if __name__ == "__main__":
    import trio

    trio.run(_main, sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]))
