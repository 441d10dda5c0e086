"""Run one measurement in this (fresh) process and print its result as one JSON line.

Usage: ``python -m bench._child <module> <function> '<json kwargs>'``. The parent reads the
last line that starts with ``RESULT `` from stdout.
"""

from __future__ import annotations

import importlib
import sys

import orjson


def main() -> None:
    module, func, raw = sys.argv[1], sys.argv[2], sys.argv[3]
    kwargs = orjson.loads(raw)
    result = getattr(importlib.import_module(f"bench.{module}"), func)(**kwargs)
    sys.stdout.write("RESULT " + orjson.dumps(result).decode() + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
