"""Issue 7.1 — kill -9 under load.

The runtime runs in a child process (kill_child.py) that submits a mix of work continuously;
the harness SIGKILLs it at random moments and restarts it, 20 times in CI (200 with --soak),
then lets it drain. After every kill and every restart it checks:

- every acknowledged job id exists (journaled by the child only after create_job returned, and
  by the parent for jobs it submitted through JobStore from its own process);
- once the restarted runtime is READY (recovery done) no job is Running from before the crash;
- no terminal job changed state (or finish time); every acknowledged cancel stands;
- no two active jobs share an idempotency key, and every index agrees with the records;
- no attempt of any job started twice (the executors' fsynced run journal);
- the engine's ``scan`` of every table equals the rows whose insert returned, and no version is
  stored twice, with flush / compact / backup jobs killed anywhere.
"""

from __future__ import annotations

from pathlib import Path

from kill9_harness import KillHarness
from reliability_support import report


def test_kill9_under_load_loses_nothing(tmp_path: Path, soak_mode: bool) -> None:
    cycles = 200 if soak_mode else 20
    harness = KillHarness(tmp_path, seed=7)
    try:
        for _ in range(cycles):
            harness.cycle()
        # Given the store after the last kill, when the runtime runs undisturbed,
        # then every job that was New, Queued, Retrying (or recovered) ends.
        harness.start(drain=True)
        harness.finish_drain()
        harness.check_drained()
    finally:
        harness.close()
    report("kill9", cycles_survived=harness.cycles, recovered_running=harness.recovered_running,
           terminal_tracked=len(harness.terminal), lost=0, **harness.figures)
