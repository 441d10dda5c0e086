"""The LMDB job store on its own: submit, read by index, idempotency, cancel, bad input."""

from __future__ import annotations

import math
import multiprocessing
from pathlib import Path

import lmdb
import orjson
import pytest

from kalam_actors import (
    SYSTEM_JOBS_COLUMNS,
    CorruptRecord,
    IdempotentConflict,
    InvalidJobId,
    InvalidParams,
    InvalidTransition,
    JobFilter,
    JobId,
    JobNotFound,
    JobStatus,
    JobStore,
    JobType,
    StoreError,
    UnknownJobType,
)
from kalam_actors.model import Progress
from kalam_actors.store import SCHEMA_VERSION, StoreTxn, new_record, parse_params, record_to_job


@pytest.fixture
def store(tmp_path: Path) -> JobStore:
    s = JobStore(tmp_path / "jobs", executors=[])
    yield s
    s.close()


def test_created_job_is_new_with_its_parameters(store: JobStore) -> None:
    job_id = store.create_job(JobType.FLUSH, {"namespace_id": "default", "n": 1})
    job = store.get_job(job_id)
    assert job is not None
    assert job.status is JobStatus.NEW and job.job_type is JobType.FLUSH
    assert job.params == {"namespace_id": "default", "n": 1}
    assert orjson.loads(job.parameters) == job.params
    assert job.retry_count == 0 and job.max_retries == 3
    assert job.created_at == job.updated_at and job.started_at is None


def test_get_of_unknown_id_is_none_and_malformed_id_is_an_error(store: JobStore) -> None:
    assert store.get_job(JobId.new(JobType.FLUSH)) is None
    with pytest.raises(InvalidJobId):
        store.get_job("nope")


def test_active_key_conflicts_and_names_the_holder(store: JobStore) -> None:
    first = store.create_job(JobType.FLUSH, {}, idempotency_key="k")
    with pytest.raises(IdempotentConflict) as info:
        store.create_job(JobType.COMPACT, {}, idempotency_key="k")
    assert info.value.existing_job_id == first and info.value.idempotency_key == "k"
    assert len(store.list_jobs()) == 1


def test_key_is_free_again_once_the_holder_is_cancelled(store: JobStore) -> None:
    first = store.create_job(JobType.FLUSH, {}, idempotency_key="k")
    cancelled = store.cancel_job(first)
    assert cancelled.status is JobStatus.CANCELLED and cancelled.message == "Cancelled by user"
    second = store.create_job(JobType.FLUSH, {}, idempotency_key="k")
    assert second != first


def test_cancel_of_terminal_and_unknown_jobs(store: JobStore) -> None:
    job_id = store.create_job(JobType.FLUSH, {})
    store.cancel_job(job_id)
    with pytest.raises(InvalidTransition, match="Cannot cancel job in status Cancelled"):
        store.cancel_job(job_id)
    with pytest.raises(JobNotFound):
        store.cancel_job(JobId.new(JobType.FLUSH))


def _submit_with_key(path: str, n: int) -> tuple[list[str], list[str]]:
    store = JobStore(path, executors=[])
    made, conflicts = [], []
    for _ in range(n):
        try:
            made.append(store.create_job(JobType.FLUSH, {}, idempotency_key="shared"))
        except IdempotentConflict as exc:
            conflicts.append(exc.existing_job_id)
    store.close()
    return made, conflicts


def test_idempotency_holds_across_processes(tmp_path: Path) -> None:
    path = str(tmp_path / "jobs")
    JobStore(path, executors=[]).close()
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        results = pool.starmap(_submit_with_key, [(path, 50), (path, 50)])
    made = [j for m, _ in results for j in m]
    conflicts = [j for _, c in results for j in c]
    assert len(made) == 1
    assert len(conflicts) == 99 and set(conflicts) == set(made)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ("42", "must be a JSON object"),
        (b"\xff\xfe", "not valid UTF-8"),
        (["a"], "must be a JSON object"),
        ({"x": math.nan}, "NaN or infinity"),
        ({"x": math.inf}, "NaN or infinity"),
        ("x" * (2 << 20), "limit is 1 MiB"),
    ],
)
def test_bad_parameters_are_refused_and_nothing_is_written(
    store: JobStore, params: object, match: str
) -> None:
    with pytest.raises(InvalidParams, match=match):
        store.create_job(JobType.FLUSH, params)
    assert store.list_jobs() == []


def test_deeply_nested_parameters_are_refused(store: JobStore) -> None:
    deep: dict[str, object] = {}
    node = deep
    for _ in range(100):
        node["x"] = {}
        node = node["x"]  # type: ignore[assignment]
    with pytest.raises(InvalidParams, match="nested deeper"):
        store.create_job(JobType.FLUSH, deep)
    assert store.list_jobs() == []


@pytest.mark.parametrize(
    ("key", "match"), [("", "must not be empty"), ("k" * 257, "limit is 256"), (5, "string"),
                       ("a\x00b", "NUL")]
)
def test_bad_keys_are_refused(store: JobStore, key: object, match: str) -> None:
    with pytest.raises(InvalidParams, match=match):
        store.create_job(JobType.FLUSH, {}, idempotency_key=key)  # type: ignore[arg-type]
    assert store.list_jobs() == []


def test_unknown_type_is_refused(store: JobStore) -> None:
    with pytest.raises(UnknownJobType):
        store.create_job("Vacuum", {})


def test_json_text_parameters_are_kept_as_json_text() -> None:
    value, text = parse_params('{"b": 1, "a": [true, null]}')
    assert value == {"b": 1, "a": [True, None]} and orjson.loads(text) == value


def test_listing_by_status_type_and_prefix_uses_creation_order(store: JobStore) -> None:
    co = [store.create_job(JobType.COMPACT, {"i": i}) for i in range(2)]
    fl = [store.create_job(JobType.FLUSH, {"i": i}) for i in range(3)]
    store.cancel_job(fl[1])
    # Creation order across types, although "CO-" sorts before "FL-" as text.
    by_time = co + fl
    assert [j.job_id for j in store.list_jobs()] == by_time
    assert [j.job_id for j in store.list_jobs(JobFilter(job_id_prefix="FL-"))] == fl
    assert [j.job_id for j in store.list_jobs(JobFilter(job_type=JobType.COMPACT))] == co
    new = store.list_jobs(JobFilter(status=JobStatus.NEW, job_type=JobType.FLUSH))
    assert [j.job_id for j in new] == [fl[0], fl[2]]
    both = store.list_jobs(JobFilter(status=[JobStatus.NEW, JobStatus.CANCELLED], limit=3))
    assert [j.job_id for j in both] == by_time[:3]
    newest = store.list_jobs(JobFilter(newest_first=True, limit=4))
    assert [j.job_id for j in newest] == by_time[::-1][:4]
    late = [j.job_id for j in store.list_jobs(JobFilter(job_id_prefix="F"))]
    assert late == fl
    by_key = store.list_jobs(JobFilter(job_type=[JobType.FLUSH, JobType.COMPACT],
                                       status=JobStatus.CANCELLED))
    assert [j.job_id for j in by_key] == [fl[1]]


def test_filter_by_idempotency_key(store: JobStore) -> None:
    keyed = store.create_job(JobType.FLUSH, {}, idempotency_key="users")
    store.create_job(JobType.FLUSH, {})
    assert [j.job_id for j in store.list_jobs(JobFilter(idempotency_key="users"))] == [keyed]
    active = JobFilter(idempotency_key="users", status=[JobStatus.NEW, JobStatus.QUEUED])
    assert [j.job_id for j in store.list_jobs(active)] == [keyed]


def test_system_jobs_rows_have_the_view_columns_in_order(store: JobStore) -> None:
    job_id = store.create_job(JobType.FLUSH, {"a": 1}, idempotency_key="k")
    (row,) = list(store.system_jobs())
    assert row._fields == SYSTEM_JOBS_COLUMNS
    assert row.job_id == job_id and row.job_type == "Flush" and row.status == "New"
    assert row.parameters == '{"a":1}' and row.idempotency_key == "k"


def test_counts_follow_every_write(store: JobStore) -> None:
    a = store.create_job(JobType.FLUSH, {})
    store.create_job(JobType.FLUSH, {})
    store.create_job(JobType.COMPACT, {})
    store.cancel_job(a)
    assert store.counts() == {
        (JobStatus.NEW, JobType.FLUSH): 1,
        (JobStatus.CANCELLED, JobType.FLUSH): 1,
        (JobStatus.NEW, JobType.COMPACT): 1,
    }


def _corrupt(store: JobStore, job_id: str, raw: bytes) -> None:
    env = store.env
    with env.begin(write=True) as txn:
        txn.put(job_id.encode(), raw, db=env.open_db(b"jobs", txn=txn))


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (b"\x00garbage", "not JSON"),
        (b"[1,2,3]", "not a job record"),
        (orjson.dumps({"v": 99, "id": "x"}), "schema version 99"),
    ],
)
def test_corrupt_record_is_named_and_the_rest_stays_usable(
    store: JobStore, raw: bytes, match: str
) -> None:
    bad = store.create_job(JobType.FLUSH, {})
    good = store.create_job(JobType.FLUSH, {})
    _corrupt(store, bad, raw)
    with pytest.raises(CorruptRecord, match=match) as info:
        store.get_job(bad)
    assert info.value.job_id == bad
    assert store.get_job(good) is not None
    assert store.create_job(JobType.FLUSH, {}) is not None


def test_store_from_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "jobs"
    JobStore(path, executors=[]).close()
    env = lmdb.open(str(path / "jobs.lmdb"), max_dbs=8)
    with env.begin(write=True) as txn:
        txn.put(b"schema", str(SCHEMA_VERSION + 1).encode(), db=env.open_db(b"meta", txn=txn))
    env.close()
    with pytest.raises(StoreError, match="schema version 2"):
        JobStore(path, executors=[])


def test_store_grows_when_the_map_is_full(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs", executors=[], map_size=256 * 1024)
    big = {"blob": "x" * 20_000}
    ids = [store.create_job(JobType.FLUSH, big) for _ in range(100)]
    assert all(store.get_job(i) is not None for i in ids)
    assert store.env.info()["map_size"] > 256 * 1024
    store.close()


def test_two_stores_on_one_path_share_one_environment(tmp_path: Path) -> None:
    a = JobStore(tmp_path / "jobs", executors=[])
    b = JobStore(tmp_path / "jobs", executors=[])
    assert a.env is b.env
    job_id = a.create_job(JobType.FLUSH, {})
    a.close()
    assert b.get_job(job_id) is not None
    b.close()


# --------------------------------------------------------------------------- write transactions


def _queued(job_id: str, now: int = 1_700_000_000_000_000) -> dict[str, object]:
    return new_record(job_id, '{"n": 1}', key=None, max_retries=3, now=now,
                      status=JobStatus.QUEUED)


def test_a_record_written_twice_in_one_transaction_is_stored_as_last_written(
    store: JobStore,
) -> None:
    job_id = JobId.new(JobType.FLUSH)

    def create_and_start(txn: StoreTxn) -> None:
        txn.insert(_queued(job_id))
        rec = txn.require(job_id)
        txn.move(rec, JobStatus.RUNNING, 1_700_000_000_000_001)
        assert txn.get(job_id) is rec  # read back from the transaction, not decoded again

    store.write(create_and_start)
    job = store.get_job(job_id)
    assert job is not None and job.status is JobStatus.RUNNING
    assert store.list_jobs(JobFilter(status=JobStatus.QUEUED)) == []
    assert [j.job_id for j in store.list_jobs(JobFilter(status=JobStatus.RUNNING))] == [job_id]
    assert store.counts() == {(JobStatus.RUNNING, JobType.FLUSH): 1}


def test_inserting_an_id_that_exists_is_refused(store: JobStore) -> None:
    job_id = JobId.new(JobType.FLUSH)
    store.write(lambda txn: txn.insert(_queued(job_id)))
    with pytest.raises(StoreError, match="already exists"):
        store.write(lambda txn: txn.insert(_queued(job_id)))

    def twice(txn: StoreTxn) -> None:
        other = JobId.new(JobType.FLUSH)
        txn.insert(_queued(other))
        txn.insert(_queued(other))

    with pytest.raises(StoreError, match="already exists"):
        store.write(twice)


def test_a_record_changed_by_another_writer_is_read_as_stored(store: JobStore) -> None:
    """Records this process wrote are remembered with their bytes; a change made behind that
    memory (another process, a raw write) must be what the next transaction reads."""
    job_id = JobId.new(JobType.FLUSH)
    store.write(lambda txn: txn.insert(_queued(job_id)))
    changed = dict(_queued(job_id), rc=2, m="changed elsewhere")
    with store.env.begin(write=True) as raw_txn:
        raw_txn.put(job_id.encode(), orjson.dumps(changed), db=store.env.open_db(b"jobs",
                                                                               txn=raw_txn))
    seen = store.write(lambda txn: dict(txn.require(job_id)))
    assert seen["rc"] == 2 and seen["m"] == "changed elsewhere"


def test_a_remembered_record_is_handed_out_as_a_copy(store: JobStore) -> None:
    job_id = JobId.new(JobType.FLUSH)
    store.write(lambda txn: txn.insert(_queued(job_id)))

    def scribble(txn: StoreTxn) -> None:
        txn.require(job_id)["m"] = "changed but never written"

    store.write(scribble)
    assert store.write(lambda txn: txn.require(job_id))["m"] is None
    job = store.get_job(job_id)
    assert job is not None and job.message is None


def test_record_to_job_maps_every_field() -> None:
    job_id = JobId.new(JobType.COMPACT)
    rec = {"v": SCHEMA_VERSION, "id": job_id, "s": "Y", "p": '{"a": 1}', "k": "key-1",
           "rc": 2, "mr": 5, "m": "msg", "x": "trace", "pg": [3, 9, "note"],
           "c": 1_000_000, "u": 2_000_000, "st": 3_000_000, "f": 4_000_000, "ra": 5_000_000,
           "to": 7.5, "cr": False}
    job = record_to_job(rec)
    assert (job.job_id, job.job_type, job.status) == (job_id, JobType.COMPACT,
                                                       JobStatus.RETRYING)
    assert (job.parameters, job.idempotency_key, job.retry_count, job.max_retries) == (
        '{"a": 1}', "key-1", 2, 5)
    assert (job.message, job.exception_trace, job.timeout_s) == ("msg", "trace", 7.5)
    assert job.progress == Progress(3, 9, "note")
    assert [int(t.timestamp()) for t in (job.created_at, job.updated_at, job.started_at,
                                         job.finished_at, job.run_after)] == [1, 2, 3, 4, 5]


def test_a_transaction_lists_the_jobs_it_inserted_in_id_order(store: JobStore) -> None:
    older = JobId.new(JobType.FLUSH)
    store.write(lambda txn: txn.insert(_queued(older)))
    newer = [JobId.new(JobType.FLUSH) for _ in range(3)]

    def insert_and_list(txn: StoreTxn) -> tuple[list[str], list[str], list[str]]:
        for job_id in reversed(newer):  # inserted out of order: listed in id order all the same
            txn.insert(_queued(job_id))
        txn.move(txn.require(newer[1]), JobStatus.RUNNING, 1)
        return (txn.first_ids("Q", "FL-", 10), txn.ids_after("Q", older, 10),
                txn.first_ids("R", "", 10))

    queued, after_older, running = store.write(insert_and_list)
    assert queued == [older, newer[0], newer[2]]
    assert after_older == [newer[0], newer[2]]
    assert running == [newer[1]]
    listed = store.list_jobs(JobFilter(status=JobStatus.QUEUED))
    assert [j.job_id for j in listed] == [older, newer[0], newer[2]]


def test_a_durable_store_lets_lmdb_sync_every_commit(tmp_path: Path) -> None:
    """Durability comes from LMDB's own commit (data pages, then the meta page), never from
    an unsynced commit followed by env.sync(): in that mode a power cut may write the new meta
    page before the pages it points to, and corrupt the store."""
    with JobStore(tmp_path / "durable", executors=[]) as durable:
        assert durable.env.flags()["sync"] and durable.env.flags()["metasync"]
    with JobStore(tmp_path / "scratch", executors=[], durable=False) as scratch:
        assert not scratch.env.flags()["sync"]
