"""Issue 7.5 — store faults: the LMDB map filling up, the disk refusing writes, a corrupted or
foreign record, a store written by another schema version.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import lmdb
import orjson
import pytest
import trio
import trio.testing
from reliability_support import HERE, audit_store, report, scripted_executor

from kalam_actors import (
    CorruptRecord,
    JobFilter,
    JobId,
    JobStatus,
    JobStore,
    JobType,
    KalamError,
    RuntimeFailed,
    RuntimeStopped,
    StoreError,
    open_job_manager,
    start_job_manager,
)
from kalam_actors.store import new_record

TESTS = "store_faults"
SMALL_MAP = 1 << 18  # 256 KiB: a few dozen 40 KB jobs fill it


def executors() -> list[Any]:
    return [scripted_executor(JobType.CLEANUP), scripted_executor(JobType.RETENTION)]


# ----------------------------------------------------------------------------- map full


def test_map_full_grows_while_readers_read(tmp_path: Path) -> None:
    """The runtime's map fills again and again while other threads read: it grows, every
    job is stored, readers never see an error."""
    blob = "x" * 40_000
    stop = threading.Event()
    reader_errors: list[BaseException] = []
    reads = 0

    with start_job_manager(tmp_path / "store", executors=executors(), map_size=SMALL_MAP) as jm:

        def reader() -> None:
            nonlocal reads
            while not stop.is_set():
                try:
                    jm.list_jobs(JobFilter(limit=3, newest_first=True))
                    jm.statistics()
                    reads += 1
                except BaseException as exc:  # any error is the finding
                    reader_errors.append(exc)
                    return
                stop.wait(0.001)

        threads = [threading.Thread(target=reader) for _ in range(3)]
        for t in threads:
            t.start()
        try:
            ids = [jm.create_job("CL", {"do": "noop", "blob": blob}) for _ in range(120)]
        finally:
            stop.set()
            for t in threads:
                t.join()
        assert not reader_errors, reader_errors[:3]
        for job_id in ids:
            assert jm.wait_job(job_id, timeout_s=60).status is JobStatus.COMPLETED
        size = jm.manager.store.env.info()["map_size"]
        assert size > SMALL_MAP
        audit_store(jm.manager.store)
    report(TESTS, map_grown_to_kib=size // 1024, big_jobs=len(ids), concurrent_reads=reads)


def test_map_full_in_another_process_while_the_runtime_writes(tmp_path: Path) -> None:
    """A JobStore in another process fills the map the runtime also writes: both adopt the
    other's growth (MapResizedError) and nothing is lost."""
    store_path = tmp_path / "store"
    with start_job_manager(store_path, executors=executors(), map_size=SMALL_MAP) as jm:
        script = (
            "import sys\n"
            "from kalam_actors import JobStore\n"
            f"sys.path.insert(0, {str(HERE)!r})\n"
            "from reliability_support import scripted_executor\n"
            "from kalam_actors import JobType\n"
            f"s = JobStore({str(store_path)!r}, map_size={SMALL_MAP}, "
            "executors=[scripted_executor(JobType.CLEANUP)])\n"
            "for i in range(60):\n"
            "    print(s.create_job('CL', {'do': 'noop', 'blob': 'y' * 40000}), flush=True)\n"
        )
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        mine = [jm.create_job("CL", {"do": "noop", "blob": "z" * 40_000}) for _ in range(60)]
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()[-3000:]
        theirs = out.decode().split()
        assert len(theirs) == 60
        for job_id in mine + theirs:
            assert jm.wait_job(job_id, timeout_s=60).status is JobStatus.COMPLETED
        audit_store(jm.manager.store)
    report(TESTS, cross_process_big_jobs=len(mine) + len(theirs))


# ----------------------------------------------------------------------------- disk refuses


class _RefusingTxn:
    """A write transaction whose commit the disk refuses (as LMDB reports EIO / ENOSPC)."""

    def __init__(self, txn: lmdb.Transaction) -> None:
        self._txn = txn

    def __getattr__(self, name: str) -> Any:
        return getattr(self._txn, name)

    def __enter__(self) -> Any:
        self._txn.__enter__()
        return self

    def __exit__(self, *exc: object) -> bool:
        self._txn.abort()
        if exc[0] is None:
            raise lmdb.DiskError("mdb_txn_commit: Input/output error")
        return False


class _RefusingEnv:
    """Wraps the runtime's lmdb Environment: reads work; once ``refuse`` is set, every write
    transaction fails at commit, as a disk that refuses writes does."""

    def __init__(self, env: lmdb.Environment) -> None:
        self._env = env
        self.refuse = threading.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._env, name)

    def begin(self, *args: Any, write: bool = False, **kwargs: Any) -> Any:
        txn = self._env.begin(*args, write=write, **kwargs)
        if write and self.refuse.is_set():
            return _RefusingTxn(txn)
        return txn


async def test_disk_refusing_writes_stops_the_runtime_and_loses_nothing(tmp_path: Path) -> None:
    store_path = tmp_path / "store"
    acked: list[str] = []
    refused: list[BaseException] = []
    with pytest.raises(RuntimeFailed) as info:
        async with open_job_manager(store_path, executors=executors(),
                                    poll_interval_s=0.01) as jm:
            shared = jm.store._shared
            fake = _RefusingEnv(shared.env)
            shared.env = fake
            try:
                acked += [await jm.create_job("CL", {"do": "slow", "ms": 50}) for _ in range(10)]
                fake.refuse.set()
                # The first refused commit answers its callers with the store's error...
                for _ in range(5):
                    try:
                        acked.append(await jm.create_job("CL", {"do": "noop"}))
                    except (StoreError, RuntimeStopped) as exc:
                        refused.append(exc)
                    await trio.sleep(0.01)
                # The loop dies with the refused commit, which cancels this body; the
                # deadline only bounds a runtime that wrongly carries on.
                with trio.fail_after(30):
                    await trio.sleep_forever()
            finally:
                shared.env = fake._env
    assert "job store" in str(info.value), info.value
    assert refused, "writes were refused but nobody was told"
    assert isinstance(refused[0], StoreError), refused[0]
    assert all(isinstance(e, (StoreError, RuntimeStopped)) for e in refused)
    # The disk is back: nothing acknowledged is lost, running jobs are recovered, work resumes.
    async with open_job_manager(store_path, executors=executors(), poll_interval_s=0.01) as jm:
        for job_id in acked:
            job = await jm.wait_job(job_id, timeout_s=60)
            assert job.status.is_terminal
        audit_store(jm.store)
    report(TESTS, disk_refusals=len(refused), acked_kept=len(acked))


# ----------------------------------------------------------------------------- bad records

CORRUPTIONS: dict[str, bytes] = {
    "garbage": b"\x00\xff not json at all",
    "json-list": b"[1, 2, 3]",
    "foreign": orjson.dumps({"hello": "world"}),
    "future-version": b"",  # filled in per job: a record with v = 99
    "missing-fields": b"",  # a record of this version without most fields
}


def _bad_bytes(kind: str, job_id: str) -> bytes:
    if kind == "future-version":
        rec = new_record(job_id, "{}", key=None, max_retries=0, now=1, status=JobStatus.QUEUED)
        rec["v"] = 99
        return orjson.dumps(rec)
    if kind == "missing-fields":
        return orjson.dumps({"v": 1, "id": job_id, "s": "Q"})
    return CORRUPTIONS[kind]


def _plant(store: JobStore, job_id: str, raw: bytes, status_code: str | None) -> None:
    """Write a record straight into LMDB, as bit rot or a foreign writer would."""
    shared = store._shared
    with store.env.begin(write=True) as txn:
        txn.put(job_id.encode(), raw, db=shared.jobs)
        if status_code is not None:
            txn.put((status_code + job_id).encode(), b"", db=shared.status)


@pytest.mark.parametrize("kind", list(CORRUPTIONS))
async def test_corrupt_record_outside_any_index_names_the_job(tmp_path: Path, kind: str) -> None:
    """A damaged record that no index points at: reading it is a clear error naming it; the
    rest of the store, and the runtime, go on."""
    store_path = tmp_path / "store"
    async with open_job_manager(store_path, executors=executors(), poll_interval_s=0.01) as jm:
        good = await jm.create_job("CL", {"do": "noop"})
        bad = JobId.new(JobType.CLEANUP)
        _plant(jm.store, bad, _bad_bytes(kind, bad), None)
        with pytest.raises(CorruptRecord) as info:
            await jm.get_job(bad)
        assert info.value.job_id == bad and bad in str(info.value)
        assert (await jm.wait_job(good, timeout_s=30)).status is JobStatus.COMPLETED
        later = await jm.create_job("CL", {"do": "noop"})
        assert (await jm.wait_job(later, timeout_s=30)).status is JobStatus.COMPLETED
        done = await jm.list_jobs(JobFilter(status=JobStatus.COMPLETED))
        assert {j.job_id for j in done} == {good, later}
    report(TESTS, corrupt_records_named=1)


# The Q case found a stall (rel-5: the quarantined record's room was lost and no new dispatch
# was scheduled); fixed in 65f7a98 ("out.again").
@pytest.mark.parametrize("status_code", ["Q", "N", "R"])
async def test_corrupt_indexed_record_is_quarantined_and_the_runtime_goes_on(
    tmp_path: Path, status_code: str
) -> None:
    store_path = tmp_path / "store"
    bad = JobId.new(JobType.CLEANUP)
    with JobStore(store_path, executors=executors()) as store:
        before = store.create_job("CL", {"do": "noop"})
        _plant(store, bad, b"\x00 bit rot", status_code)
    async with open_job_manager(store_path, executors=executors(), poll_interval_s=0.01) as jm:
        assert (await jm.wait_job(before, timeout_s=30)).status is JobStatus.COMPLETED
        later = await jm.create_job("CL", {"do": "noop"})
        assert (await jm.wait_job(later, timeout_s=30)).status is JobStatus.COMPLETED
        with pytest.raises(CorruptRecord):
            await jm.get_job(bad)


# ----------------------------------------------------------------------------- schema


@pytest.mark.parametrize("version", [b"0", b"2", b"banana"])
def test_store_of_another_schema_version_is_refused_clearly(tmp_path: Path, version: bytes) -> None:
    store_path = tmp_path / "store"
    with JobStore(store_path, executors=executors()) as store:
        job_id = store.create_job("CL", {"do": "noop"})
        with store.env.begin(write=True, db=store._shared.meta) as txn:
            txn.put(b"schema", version)
    with pytest.raises(StoreError) as info:
        JobStore(store_path, executors=executors())
    assert "schema version" in str(info.value) and version.decode() in str(info.value)
    with pytest.raises(KalamError), start_job_manager(store_path, executors=executors()):
        pass
    # Nothing was changed by the refusals: put the version back and the job is there.
    env = lmdb.open(str(store_path / "jobs.lmdb"), max_dbs=8)
    with env.begin(write=True, db=env.open_db(b"meta")) as txn:
        assert txn.get(b"schema") == version
        txn.put(b"schema", b"1")
    env.close()
    with JobStore(store_path, executors=executors()) as store:
        assert store.get_job(job_id) is not None
    report(TESTS, schema_versions_refused=1)


def test_record_of_an_older_schema_version_is_read(tmp_path: Path) -> None:
    """A record without the fields added since version 1 (``to``) still reads."""
    store_path = tmp_path / "store"
    with JobStore(store_path, executors=executors()) as store:
        job_id = JobId.new(JobType.CLEANUP)
        rec = new_record(job_id, "{}", key=None, max_retries=0, now=1, status=JobStatus.COMPLETED)
        del rec["to"]
        shared = store._shared
        with store.env.begin(write=True) as txn:
            txn.put(job_id.encode(), orjson.dumps(rec), db=shared.jobs)
            txn.put(("C" + job_id).encode(), b"", db=shared.status)
        job = store.get_job(job_id)
        assert job is not None and job.timeout_s is None
