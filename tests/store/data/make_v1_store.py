"""Make the schema-1 job store that ``test_store_upgrade.py`` opens with today's code.

How ``v1/`` was made (run it again the same way to remake it)::

    rm -rf /tmp/kalam_old && mkdir /tmp/kalam_old
    git -C /work/main archive 6a81b4e | tar -x -C /tmp/kalam_old
    PYTHONPATH=/tmp/kalam_old python tests/store/data/make_v1_store.py tests/store/data/v1

Commit 6a81b4e is the last one before the store became a package (``kalam_actors/store.py``,
``SCHEMA_VERSION = 1``). The script refuses to run on today's code. It builds a store in a
scratch folder with that code: jobs of every status, New ones through ``JobStore.create_job``
and the rest through ``StoreTxn.insert`` + ``new_record``/``move``, as the old runtime wrote
them; an idempotency key held by an active job (and the same key on an older, finished job);
a cancel request for a Running job; a schedule slot. It then writes a compacted copy of
``jobs.lmdb/data.mdb`` (about 40 KB) and ``manifest.json``: every job as the old code read it
back, keyed by its role in the test.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import lmdb

import kalam_actors.store as old_store
from kalam_actors.ids import JobId, JobType
from kalam_actors.model import Job, JobStatus

if hasattr(old_store, "__path__"):
    sys.exit("run with the code at 6a81b4e first on PYTHONPATH (see this file's docstring)")

JobStore, StoreTxn, new_record = old_store.JobStore, old_store.StoreTxn, old_store.new_record

T0 = 1_600_000_000_000_000  # µs (2020-09-13): fixed, and long past, so the retry is due
SECOND = 1_000_000
HELD_KEY = "nightly-compact"
SLOT = ("hourly-flush", 42)


def job_json(job: Job) -> dict[str, Any]:
    def when(dt: Any) -> str | None:
        return None if dt is None else dt.isoformat()

    return {
        "job_id": job.job_id, "job_type": job.job_type.value, "status": job.status.value,
        "parameters": job.parameters, "idempotency_key": job.idempotency_key,
        "retry_count": job.retry_count, "max_retries": job.max_retries,
        "message": job.message, "exception_trace": job.exception_trace,
        "progress": None if job.progress is None else [job.progress.done, job.progress.total,
                                                       job.progress.note],
        "created_at": when(job.created_at), "updated_at": when(job.updated_at),
        "started_at": when(job.started_at), "finished_at": when(job.finished_at),
        "run_after": when(job.run_after), "timeout_s": job.timeout_s,
    }


def build(path: Path) -> dict[str, str]:
    """Fill a store at ``path``; return the job id of each role."""
    roles: dict[str, str] = {}
    with JobStore(path, executors=[]) as store:
        def write(fn: Any) -> None:
            store.write(fn)

        # An older job that held the key and finished: the key is free again after it.
        def completed(txn: Any) -> None:
            job_id = roles["completed"] = JobId.new(JobType.COMPACT)
            rec = new_record(job_id, '{"table":"events"}', key=HELD_KEY, max_retries=3,
                             now=T0, status=JobStatus.QUEUED)
            txn.insert(rec)
            txn.move(rec, JobStatus.RUNNING, T0 + 1 * SECOND)
            txn.move(rec, JobStatus.COMPLETED, T0 + 2 * SECOND, m="compacted 3 segments")

        write(completed)
        # New jobs, as another process submits them; the first holds the key now.
        roles["new_held"] = store.create_job(JobType.COMPACT, {"table": "events"},
                                             idempotency_key=HELD_KEY)
        roles["new_timeout"] = store.create_job(JobType.FLUSH, {"namespace_id": "ns1"},
                                                max_retries=5, timeout_s=30.0)

        def the_rest(txn: Any) -> None:
            t = T0 + 10 * SECOND

            def insert(role: str, job_type: JobType, params: str, **kw: Any) -> dict[str, Any]:
                job_id = roles[role] = JobId.new(job_type)
                rec = new_record(job_id, params, key=kw.pop("key", None),
                                 max_retries=kw.pop("max_retries", 3), now=t,
                                 status=JobStatus.QUEUED)
                txn.insert(rec)
                return rec

            insert("queued", JobType.FLUSH, '{"namespace_id":"default","table":"events"}',
                   key="flush-events")
            rec = insert("running_rerun", JobType.FLUSH, '{"namespace_id":"default"}')
            txn.move(rec, JobStatus.RUNNING, t + 1, m=None, pg=None)
            rec["pg"] = [3, 10, "batch 1 of 10"]
            txn.put(rec)
            rec = insert("running_failed", JobType.RETENTION, '{"older_than_days":7}')
            txn.move(rec, JobStatus.RUNNING, t + 2)
            rec = insert("running_cancel_requested", JobType.BACKUP, '{"dest":"/b"}')
            txn.move(rec, JobStatus.RUNNING, t + 3)
            rec["cr"] = True  # what the old JobStore.cancel_job wrote for a Running job
            txn.put(rec)
            txn.request_cancel(rec["id"])
            rec = insert("retrying", JobType.STREAM_EVICTION, '{"stream":"clicks"}')
            txn.move(rec, JobStatus.RUNNING, t + 4)
            txn.move(rec, JobStatus.RETRYING, t + 5, rc=1, m=None,
                     x="Traceback: attempt 1 timed out", ra=t + 5 + 100_000)
            rec = insert("failed", JobType.USER_CLEANUP, '{"user_id":"u1"}', max_retries=0)
            txn.move(rec, JobStatus.RUNNING, t + 6)
            txn.move(rec, JobStatus.FAILED, t + 7, m="disk full", x="OSError: disk full")
            rec = insert("cancelled", JobType.CLEANUP, '{"table_id":"t1"}')
            txn.move(rec, JobStatus.CANCELLED, t + 8, m="Cancelled by user")
            rec = insert("skipped", JobType.JOB_CLEANUP, '{"older_than_days":30}')
            txn.move(rec, JobStatus.RUNNING, t + 9)
            txn.move(rec, JobStatus.SKIPPED, t + 10, m="nothing to do")
            txn.put_slot(*SLOT)

        write(the_rest)
    return roles


def main(dest: Path) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "jobs"
        roles = build(path)
        with JobStore(path, executors=[]) as store:
            jobs = {role: job_json(store.get_job(job_id)) for role, job_id in roles.items()}
            counts = sorted([s.value, t.value, n] for (s, t), n in store.counts().items())
            cancel_requests = store.has_cancel_requests()
            slot = store.last_slot(SLOT[0])
        out = dest / "jobs.lmdb"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        env = lmdb.open(str(path / "jobs.lmdb"), max_dbs=8, readonly=True)
        try:
            env.copy(str(out), compact=True)
        finally:
            env.close()
    (out / "lock.mdb").unlink(missing_ok=True)
    manifest = {
        "made_by": "kalam_actors at 6a81b4e (see make_v1_store.py)",
        "schema_version": old_store.SCHEMA_VERSION,
        "held_key": HELD_KEY,
        "slot": [SLOT[0], slot],
        "has_cancel_requests": cancel_requests,
        "counts": counts,
        "jobs": jobs,
    }
    (dest / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    print(f"{out / 'data.mdb'}: {(out / 'data.mdb').stat().st_size} bytes")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
