"""An overwriting restore under a fault at each of its steps: the old table stays whole or the
new one is complete, never a mix; no segment file outlives the crash once the engine reopens;
the job's next attempt finishes it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from executor_support import FakeClock, run_job, table_params

import kalam_actors
from kalam_actors import Job, Outcome
from kalam_actors.executors import BackupExecutor, RestoreExecutor
from kalam_actors.executors import restore as restore_module
from kalam_actors.storage import Engine, SimulatedCrash, TableType
from kalam_actors.testing import make_context, make_job

NS = "default"
# The restore's steps, in order: unpacking into scratch, moving each file into the segment
# folder, all files moved (before the commit), committed (old files not yet deleted).
STEPS = ["unpack", "after_file_move", "after_segment_write", "after_commit"]
FAULTS = {"crash": SimulatedCrash, "error": OSError}


def prepare(engine: Engine, clock: FakeClock) -> tuple[Path, Any, Any]:
    """A source table backed up, and a different table already at the target: returns the
    archive, the target's rows now and the rows a restore brings."""
    engine.create_table(NS, "users", TableType.USER)
    for user in ("u1", "u2", "u3"):
        engine.insert_many(NS, "users", [{"id": i, "new": user} for i in range(5)], user_id=user)
        engine.flush_table(NS, "users")
    engine.insert(NS, "users", {"id": 9, "hot": True}, user_id="u1")
    decision, _ = run_job(BackupExecutor(), table_params(
        "users", "User", backup_location=str(engine.path / "backups")), engine)
    assert decision.outcome is Outcome.COMPLETED, decision.message
    engine.create_table(NS, "copy", TableType.SHARED)
    for round_ in range(2):
        engine.insert_many(NS, "copy", [{"id": i, "old": round_} for i in range(4)])
        engine.flush_table(NS, "copy")
        clock.advance(1)
    [archive] = (engine.path / "backups" / NS / "users").iterdir()
    return archive, rows(engine), engine.scan(NS, "users", user_id=None)


def rows(engine: Engine) -> Any:
    info = engine.table_info(NS, "copy")
    return None if info is None else (info.table_type, engine.scan(NS, "copy", user_id=None))


def restore_job(archive: Path) -> Job:
    return make_job(RestoreExecutor.job_type, {
        "backup_location": str(archive), "target_namespace": NS, "target_table_name": "copy",
        "overwrite": True})


def unreferenced(engine: Engine) -> set[str]:
    """Segment files no table's manifest names."""
    root = engine.path / "segments"
    named = {s.relpath for t in engine.list_tables() for s in engine.segments(NS, t.name)}
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()} - named


def inject(engine: Engine, step: str, fault: BaseException, monkeypatch: pytest.MonkeyPatch
           ) -> None:
    def fail(*_args: Any) -> None:
        raise fault

    if step == "unpack":  # fail on the first data file checked in scratch
        monkeypatch.setattr(restore_module, "_check_rows", fail)
    else:
        engine.faults.set(step, fail)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "engine"


@pytest.mark.parametrize("fault", sorted(FAULTS))
@pytest.mark.parametrize("step", STEPS)
def test_an_overwriting_restore_is_all_or_nothing_at_every_step(
    path: Path, clock: FakeClock, step: str, fault: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    with Engine.open(path, clock=clock, durable=False) as engine:
        archive, old, new = prepare(engine, clock)
        job = restore_job(archive)
        # Given a fault at this step of an overwriting restore
        inject(engine, step, FAULTS[fault]("injected"), monkeypatch)
        with pytest.raises(FAULTS[fault]):
            RestoreExecutor().execute(make_context(job, storage=engine)[0], job)
        # Then the target is the old table or the complete new one, never a mix
        committed = step == "after_commit"
        assert rows(engine) == ((TableType.USER, new) if committed else old)
        left = unreferenced(engine)
        if fault == "crash" and step != "unpack":
            assert left  # a dead process tidies nothing: what it moved or replaced is left
    monkeypatch.undo()
    # When the engine is opened again (a new process after a crash)
    with Engine.open(path, clock=clock, durable=False) as engine:
        assert unreferenced(engine) == set()
        assert rows(engine) == ((TableType.USER, new) if committed else old)
        # Then the job's next attempt completes it
        rerun = RestoreExecutor().execute(make_context(job, storage=engine, attempt=2)[0], job)
        assert rerun.outcome is Outcome.COMPLETED, rerun.message
        assert ("already restored" in (rerun.message or "")) is committed
        assert rows(engine) == (TableType.USER, new)
        assert unreferenced(engine) == set()
        assert list((engine.path / "tmp").iterdir()) == []


def test_files_are_kept_while_another_process_has_the_engine_open(
    path: Path, clock: FakeClock
) -> None:
    import fcntl

    with Engine.open(path, clock=clock, durable=False) as engine:
        archive, _, _ = prepare(engine, clock)
        engine.faults.set("after_segment_write", _crash)
        job = restore_job(archive)
        with pytest.raises(SimulatedCrash):
            RestoreExecutor().execute(make_context(job, storage=engine)[0], job)
        left = unreferenced(engine)
    # Another process holding the engine open may be between a write and its commit: its
    # files look exactly like these, so the sweep waits for an open nobody else shares.
    other = os.open(path / "engine.lock", os.O_RDWR)
    try:
        fcntl.flock(other, fcntl.LOCK_SH)
        with Engine.open(path, clock=clock, durable=False) as engine:
            assert unreferenced(engine) == left
    finally:
        os.close(other)
    with Engine.open(path, clock=clock, durable=False) as engine:
        assert unreferenced(engine) == set()


def _crash() -> None:
    raise SimulatedCrash


CHILD = """
import os, signal, sys
import orjson
from kalam_actors.executors import RestoreExecutor
from kalam_actors.ids import JobId
from kalam_actors.storage import Engine
from kalam_actors.testing import make_context, make_job

path, point, job_id, params = sys.argv[1:5]
engine = Engine.open(path, durable=False)
engine.faults.set(point, lambda: os.kill(os.getpid(), signal.SIGKILL))
job = make_job(RestoreExecutor.job_type, orjson.loads(params), job_id=JobId.parse(job_id))
RestoreExecutor().execute(make_context(job, storage=engine)[0], job)
print("finished without being killed")
"""


@pytest.mark.parametrize("point", ["after_file_move", "after_segment_write", "after_commit"])
def test_no_orphan_survives_a_sigkill_once_the_engine_reopens(
    path: Path, clock: FakeClock, point: str
) -> None:
    with Engine.open(path, clock=clock, durable=False) as engine:
        archive, old, new = prepare(engine, clock)
    job = restore_job(archive)
    # Given a process killed with SIGKILL at this point of an overwriting restore
    env = {**os.environ, "PYTHONPATH": str(Path(kalam_actors.__file__).parents[1])}
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), point, str(job.job_id),
         orjson.dumps(job.params).decode()],
        env=env, capture_output=True, text=True, timeout=120, check=False)
    assert child.returncode == -signal.SIGKILL, child.stderr
    # When the engine opens again, no segment file is left that no table references,
    # the dead process's scratch folder is gone, and the target is whole
    with Engine.open(path, clock=clock, durable=False) as engine:
        assert unreferenced(engine) == set()
        assert list((engine.path / "tmp").iterdir()) == []
        committed = point == "after_commit"
        assert rows(engine) == ((TableType.USER, new) if committed else old)
        # Then recovery's re-run of the same job finishes it
        rerun = RestoreExecutor().execute(make_context(job, storage=engine, attempt=2)[0], job)
        assert rerun.outcome is Outcome.COMPLETED, rerun.message
        assert rows(engine) == (TableType.USER, new)
