"""A submitting process for the idempotency race: opens a JobStore on a store a runtime owns,
prints READY, waits for a line on stdin, then makes N create_job calls with one key from T
threads at once and prints one line per call: ``OK <id>``, ``CONFLICT <holder>`` or
``ERROR <type> <message>``.

Usage: submit_child.py STORE KEY CALLS THREADS
"""

from __future__ import annotations

import sys
import threading

from kalam_actors import IdempotentConflict, JobStore

PARAMS = {"namespace_id": "rel", "table_name": "race", "table_type": "Shared"}


def main(store_path: str, key: str, calls: int, threads: int) -> None:
    store = JobStore(store_path)
    results: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(threads)

    def worker(n: int) -> None:
        barrier.wait()
        for _ in range(n):
            try:
                line = "OK " + store.create_job("FL", PARAMS, idempotency_key=key)
            except IdempotentConflict as exc:
                line = "CONFLICT " + exc.existing_job_id
            except Exception as exc:  # reported to the parent, which fails the test
                line = f"ERROR {type(exc).__name__} {exc}"
            with lock:
                results.append(line)

    per = [calls // threads + (1 if i < calls % threads else 0) for i in range(threads)]
    workers = [threading.Thread(target=worker, args=(n,)) for n in per]
    print("READY", flush=True)
    sys.stdin.readline()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    store.close()
    print("\n".join(results), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
