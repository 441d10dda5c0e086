"""A library is quiet: importing supervisors adds no log output until the application turns
its logger on (each case in a fresh process, with loguru's default sink: stderr, DEBUG)."""

from __future__ import annotations

import subprocess
import sys
from typing import Final

SCRIPT: Final = """
import sys

import trio

from supervisors import TRANSIENT, ChildSpec, EventKind, Supervisor


async def flaky(runs, *, task_status=trio.TASK_STATUS_IGNORED):
    task_status.started()
    runs.append(1)
    if len(runs) == 1:
        raise RuntimeError("first run fails")


async def main():
    if sys.argv[1] == "loud":
        from loguru import logger

        logger.enable("supervisors")
    runs, restarted = [], trio.Event()

    def on_event(event):
        if event.kind is EventKind.RESTARTED:
            restarted.set()

    async with Supervisor.open(name="quiet", on_event=on_event) as sup:
        await sup.start_child(ChildSpec(id="w", start=flaky, args=(runs,), restart=TRANSIENT))
        with trio.fail_after(30):
            await restarted.wait()
    assert len(runs) == 2, runs


trio.run(main)
"""


def run(mode: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result


def test_a_crash_and_a_restart_log_nothing_by_default() -> None:
    result = run("quiet")
    assert (result.stdout, result.stderr) == ("", "")


def test_the_application_turns_the_events_on() -> None:
    result = run("loud")
    assert result.stdout == ""
    assert "supervisor 'quiet': child 'w' crashed (RuntimeError('first run fails'))" in (
        result.stderr)
    assert "supervisor 'quiet': child 'w' restarted" in result.stderr
