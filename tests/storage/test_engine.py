"""The reference engine's own behaviour: rows, scans, flush protocol, purge, merge, users."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from kalam_actors.errors import InvalidParams
from kalam_actors.storage import (
    Engine,
    InvalidName,
    OperationCancelled,
    RowNotFound,
    SimulatedCrash,
    StorageEngine,
    StorageError,
    TableExists,
    TableNotFound,
    TableType,
    UserStillOwnsData,
    WrongTableType,
)

NS = "default"


def segment_files(engine: Engine, table: str) -> set[str]:
    root = engine.path / "segments" / NS / table
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def keys_and_seqs(engine: Engine, table: str) -> list[tuple[str, str]]:
    return sorted((v.user_id, v.pk) for v in engine.versions(NS, table))


@pytest.fixture
def users(engine: Engine) -> Engine:
    engine.create_table(NS, "users", TableType.USER, primary_key="id")
    return engine


@pytest.fixture
def shared(engine: Engine) -> Engine:
    engine.create_table(NS, "items", TableType.SHARED, primary_key="id")
    return engine


def test_engine_implements_the_storage_protocol(engine: Engine) -> None:
    assert isinstance(engine, StorageEngine)


def test_scan_returns_latest_live_rows_sorted_by_primary_key(shared: Engine) -> None:
    for i in (3, 1, 2):
        shared.insert(NS, "items", {"id": i, "v": f"v{i}"})
    shared.update(NS, "items", {"id": 2, "v": "two"})
    assert shared.delete(NS, "items", 3) is True
    assert shared.scan(NS, "items") == [{"id": 1, "v": "v1"}, {"id": 2, "v": "two"}]
    assert shared.get(NS, "items", 3) is None
    assert shared.delete(NS, "items", 3) is False
    assert shared.delete(NS, "items", 99) is False


def test_update_merges_over_the_cold_row_and_missing_rows_are_refused(shared: Engine) -> None:
    shared.insert(NS, "items", {"id": 1, "a": 1, "b": 2})
    shared.flush_table(NS, "items")
    shared.update(NS, "items", {"id": 1, "b": 3})
    assert shared.scan(NS, "items") == [{"id": 1, "a": 1, "b": 3}]
    with pytest.raises(RowNotFound):
        shared.update(NS, "items", {"id": 2, "b": 3})
    shared.update(NS, "items", 1, {"a": 5})  # the (pk, changes) form
    assert shared.get(NS, "items", 1) == {"id": 1, "a": 5, "b": 3}
    assert shared.table_stats(NS, "items")["hot_rows"] == 1


def test_user_tables_need_user_id_and_scan_per_user(users: Engine) -> None:
    users.insert(NS, "users", {"id": 1, "n": "a"}, user_id="u1")
    users.insert(NS, "users", {"id": 1, "n": "b"}, user_id="u2")
    users.insert(NS, "users", {"id": 2, "n": "c"}, user_id="u1")
    assert users.scan(NS, "users", user_id="u1") == [{"id": 1, "n": "a"}, {"id": 2, "n": "c"}]
    assert users.scan(NS, "users") == [{"id": 1, "n": "a"}, {"id": 1, "n": "b"},
                                       {"id": 2, "n": "c"}]
    with pytest.raises(WrongTableType, match="pass user_id"):
        users.insert(NS, "users", {"id": 3})


def test_shared_tables_refuse_user_id(shared: Engine) -> None:
    with pytest.raises(WrongTableType, match="User tables only"):
        shared.insert(NS, "items", {"id": 1}, user_id="u1")


@pytest.mark.parametrize("bad", ["", "1abc", "a-b", "../etc", "a/b", "a" * 65, "a\x00b", "é"])
def test_names_are_checked_before_anything_is_built_from_them(engine: Engine, bad: str) -> None:
    with pytest.raises(InvalidName) as info:
        engine.create_table(NS, bad, TableType.SHARED)
    assert isinstance(info.value, InvalidParams)
    with pytest.raises(InvalidName):
        engine.create_table(bad, "t", TableType.SHARED)
    with pytest.raises(InvalidName):
        engine.create_user(bad, "ann")
    assert not (engine.path / "segments" / NS).exists()


def test_rows_must_carry_a_usable_primary_key(shared: Engine) -> None:
    with pytest.raises(InvalidName, match="no primary key"):
        shared.insert(NS, "items", {"name": "x"})
    with pytest.raises(InvalidName, match="int or a str"):
        shared.insert(NS, "items", {"id": 1.5})
    with pytest.raises(InvalidName, match="JSON"):
        shared.insert(NS, "items", {"id": 1, "x": object()})


def test_unknown_tables_and_duplicates_are_refused(engine: Engine) -> None:
    with pytest.raises(TableNotFound):
        engine.insert(NS, "nope", {"id": 1})
    engine.create_table(NS, "t", "Shared")
    with pytest.raises(TableExists):
        engine.create_table(NS, "t", TableType.STREAM)
    assert engine.table_info(NS, "t").table_type is TableType.SHARED  # type: ignore[union-attr]
    assert engine.table_info(NS, "nope") is None


def test_flush_moves_hot_rows_to_one_segment_per_user(users: Engine) -> None:
    users.insert_many(NS, "users", [{"id": i} for i in range(5)], user_id="u1")
    users.insert_many(NS, "users", [{"id": i} for i in range(3)], user_id="u2")
    before = users.scan(NS, "users")
    result = users.flush_table(NS, "users")
    assert (result.rows, result.files) == (8, 2)
    stats = users.table_stats(NS, "users")
    assert (stats.hot_rows, stats.segments, stats.cold_rows) == (0, 2, 8)
    assert stats.bytes == result.bytes > 0
    assert {f.split("/")[0] for f in segment_files(users, "users")} == {"u1", "u2"}
    assert users.scan(NS, "users") == before


def test_flush_twice_never_duplicates_a_version(shared: Engine) -> None:
    shared.insert_many(NS, "items", [{"id": i} for i in range(10)])
    shared.flush_table(NS, "items")
    assert shared.flush_table(NS, "items").rows == 0
    shared.update(NS, "items", {"id": 1, "x": 1})
    shared.flush_table(NS, "items")
    pks = [v.pk for v in shared.versions(NS, "items")]
    assert sorted(pks, key=int) == ["0", "1", "1", "2", "3", "4", "5", "6", "7", "8", "9"]
    assert len(shared.scan(NS, "items")) == 10


def test_rows_written_during_a_flush_stay_hot_and_win(shared: Engine) -> None:
    shared.insert_many(NS, "items", [{"id": i, "v": 0} for i in range(6)])

    def race() -> None:  # between the Parquet write and the manifest transaction
        shared.update(NS, "items", {"id": 1, "v": 1})
        shared.delete(NS, "items", 2)
        shared.insert(NS, "items", {"id": 9, "v": 9})

    shared.faults.set("after_segment_write", race)
    result = shared.flush_table(NS, "items")
    assert result.rows == 6
    hot = sorted((v.pk, v.deleted) for v in shared.versions(NS, "items") if v.segment_id is None)
    assert hot == [("1", False), ("2", True), ("9", False)]
    assert shared.scan(NS, "items") == [
        {"id": 0, "v": 0}, {"id": 1, "v": 1}, {"id": 3, "v": 0}, {"id": 4, "v": 0},
        {"id": 5, "v": 0}, {"id": 9, "v": 9}]


def test_crash_between_segment_write_and_manifest_loses_and_duplicates_nothing(
    shared: Engine,
) -> None:
    shared.insert_many(NS, "items", [{"id": i} for i in range(4)])
    before = shared.scan(NS, "items")

    def crash() -> None:
        raise SimulatedCrash

    shared.faults.set("after_segment_write", crash)
    with pytest.raises(SimulatedCrash):
        shared.flush_table(NS, "items")
    orphans = segment_files(shared, "items")
    assert len(orphans) == 1
    assert shared.table_stats(NS, "items").hot_rows == 4
    assert shared.scan(NS, "items") == before

    shared.faults.clear()
    removed = shared.remove_orphaned_files(NS, "items")
    assert removed.files == 1 and removed.bytes > 0
    assert segment_files(shared, "items") == set()
    shared.flush_table(NS, "items")
    assert keys_and_seqs(shared, "items") == [("", str(i)) for i in range(4)]
    assert shared.scan(NS, "items") == before


def test_remove_orphaned_keeps_every_file_the_manifest_names(shared: Engine) -> None:
    shared.insert(NS, "items", {"id": 1})
    shared.flush_table(NS, "items")
    named = segment_files(shared, "items")
    stray = shared.path / "segments" / NS / "items" / "stray.parquet"
    stray.write_bytes(b"junk")
    assert shared.remove_orphaned_files(NS, "items").files == 1
    assert segment_files(shared, "items") == named


def test_purge_removes_every_version_of_a_key_at_once(shared: Engine, clock: object) -> None:
    shared.insert_many(NS, "items", [{"id": 1, "v": "old"}, {"id": 2}])
    shared.flush_table(NS, "items")
    shared.update(NS, "items", {"id": 1, "v": "new"})
    shared.flush_table(NS, "items")
    shared.delete(NS, "items", 1)
    latest = max(v.seq for v in shared.versions(NS, "items") if v.pk == "1")
    result = shared.purge(NS, "items", {("", "1"): latest})
    assert (result.hot_rows, result.cold_rows) == (1, 2)
    assert [v.pk for v in shared.versions(NS, "items")] == ["2"]
    assert shared.scan(NS, "items") == [{"id": 2}]
    assert len(segment_files(shared, "items")) == 1  # the emptied segment went, the other shrank


def test_purge_spares_versions_newer_than_the_bound(shared: Engine) -> None:
    shared.insert(NS, "items", {"id": 1, "v": "a"})
    bound = shared.versions(NS, "items")[0].seq
    shared.flush_table(NS, "items")
    shared.insert(NS, "items", {"id": 1, "v": "b"})
    shared.purge(NS, "items", {("", "1"): bound})
    assert shared.scan(NS, "items") == [{"id": 1, "v": "b"}]


def test_merge_keeps_scan_identical_and_latest_version_wins(shared: Engine) -> None:
    for round_ in range(3):
        shared.insert_many(NS, "items", [{"id": i, "r": round_} for i in range(round_, 5)])
        shared.flush_table(NS, "items")
    before = shared.scan(NS, "items")
    segs = [s.segment_id for s in shared.segments(NS, "items")]
    result = shared.merge_segments(NS, "items", [segs])
    assert (result.files_in, result.files_out, result.rows_in, result.rows_out) == (3, 1, 12, 5)
    assert shared.scan(NS, "items") == before
    assert len(segment_files(shared, "items")) == 1


def test_cancelled_merge_changes_nothing(shared: Engine) -> None:
    for i in range(2):
        shared.insert(NS, "items", {"id": i})
        shared.flush_table(NS, "items")
    files = segment_files(shared, "items")
    segs = [s.segment_id for s in shared.segments(NS, "items")]
    with pytest.raises(OperationCancelled):
        shared.merge_segments(NS, "items", [segs], cancelled=lambda: True)
    assert segment_files(shared, "items") == files
    with pytest.raises(StorageError, match="no segment"):
        shared.merge_segments(NS, "items", [[segs[0], "nope"]])


def test_drop_and_truncate(shared: Engine) -> None:
    shared.insert_many(NS, "items", [{"id": 1}, {"id": 2}])
    shared.flush_table(NS, "items")
    shared.insert(NS, "items", {"id": 3})
    result = shared.drop_table_data(NS, "items", keep_metadata=True)
    assert (result.files, result.hot_rows) == (1, 1)
    assert shared.scan(NS, "items") == []
    assert shared.drop_table_data(NS, "items", keep_metadata=False).files == 0
    assert shared.table_info(NS, "items") is None
    assert not (shared.path / "segments" / NS / "items").exists()


def test_open_twice_shares_the_environment(tmp_path: Path) -> None:
    first = Engine.open(tmp_path / "e")
    second = Engine.open(tmp_path / "e")
    try:
        first.create_table(NS, "t", TableType.SHARED)
        second.insert(NS, "t", {"id": 1})
        assert first.scan(NS, "t") == [{"id": 1}]
    finally:
        first.close()
    assert second.scan(NS, "t") == [{"id": 1}]
    second.close()
    with Engine.open(tmp_path / "e") as again:
        assert again.scan(NS, "t") == [{"id": 1}]


def test_a_full_map_grows(tmp_path: Path) -> None:
    with Engine.open(tmp_path / "e", map_size=64 * 1024) as engine:
        engine.create_table(NS, "t", TableType.SHARED)
        engine.insert_many(NS, "t", [{"id": i, "pad": "x" * 200} for i in range(2000)])
        assert len(engine.scan(NS, "t")) == 2000


def test_concurrent_writers_and_flushes_lose_nothing(shared: Engine) -> None:
    errors: list[BaseException] = []

    def writer(start: int) -> None:
        try:
            for i in range(start, start + 100):
                shared.insert(NS, "items", {"id": i})
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n * 1000,)) for n in range(2)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        shared.flush_table(NS, "items")
    for t in threads:
        t.join(timeout=30)
    shared.flush_table(NS, "items")
    assert errors == []
    ids = [row["id"] for row in shared.scan(NS, "items")]
    assert ids == list(range(100)) + list(range(1000, 1100))
    assert len(shared.versions(NS, "items")) == 200


def test_users_acls_tokens_soft_then_purged(users: Engine) -> None:
    users.create_user("u1", "ann")
    users.grant("u1", NS, "users", "write")
    token = users.create_token("u1")
    users.insert(NS, "users", {"id": 1}, user_id="u1")
    with pytest.raises(StorageError, match="not deleted"):
        users.purge_user("u1", cascade=True)
    users.delete_user("u1")
    assert users.get_user("u1").deleted  # type: ignore[union-attr]
    assert [t["token_id"] for t in users.tokens("u1")] == [token]
    assert all(e["deleted_us"] is not None for e in users.acl_entries("u1") + users.tokens("u1"))
    with pytest.raises(UserStillOwnsData) as info:
        users.purge_user("u1", cascade=False)
    assert info.value.tables == ["default:users"]
    result = users.purge_user("u1", cascade=True)
    assert (result.tables, result.hot_rows, result.acl_entries, result.tokens) == (
        ("default:users",), 1, 1, 1)
    assert users.get_user("u1") is None
    assert users.acl_entries("u1") == [] and users.tokens("u1") == []


def test_snapshot_and_import_round_trip_with_seq_bump(users: Engine, tmp_path: Path) -> None:
    users.insert(NS, "users", {"id": 1}, user_id="u1")
    users.flush_table(NS, "users")
    users.insert(NS, "users", {"id": 2}, user_id="u2")
    with users.scratch_dir("t") as scratch:
        snap = users.snapshot(NS, "users", scratch)
        assert (snap.hot_rows, snap.cold_rows, snap.visible_rows) == (1, 1, 2)
        from kalam_actors.storage import ImportFile

        files = [ImportFile(f.path, f.user_id) for f in snap.files]
        with pytest.raises(TableExists):
            users.import_table(NS, "users", like=snap.table, files=files, overwrite=False)
        result = users.import_table(NS, "copy", like=snap.table, files=files, overwrite=False)
    assert (result.rows, result.files, result.replaced) == (2, 2, False)
    assert users.scan(NS, "copy") == users.scan(NS, "users")
    users.insert(NS, "copy", {"id": 1, "new": True}, user_id="u1")
    assert users.get(NS, "copy", 1, user_id="u1") == {"id": 1, "new": True}


@pytest.mark.slow
def test_flush_of_100k_rows_is_quick(shared: Engine) -> None:
    import time

    shared.insert_many(NS, "items", ({"id": i, "name": f"row {i}"} for i in range(100_000)))
    started = time.perf_counter()
    assert shared.flush_table(NS, "items").rows == 100_000
    assert time.perf_counter() - started < 5
    assert len(shared.scan(NS, "items")) == 100_000


def test_scratch_of_a_dead_process_is_removed_on_open(tmp_path: Path) -> None:
    with Engine.open(tmp_path / "e") as engine, engine.scratch_dir("backup-x") as live:
        (engine.path / "tmp" / "restore-y.999999999.abc").mkdir()
        assert live.exists()
    with Engine.open(tmp_path / "e") as engine:
        assert list((engine.path / "tmp").iterdir()) == []


def test_scans_racing_compactions_always_see_the_same_rows(shared: Engine) -> None:
    rows = [{"id": i, "v": "same"} for i in range(50)]
    shared.insert_many(NS, "items", rows)
    shared.flush_table(NS, "items")
    stop = threading.Event()
    seen: list[bool] = []

    def reader() -> None:
        while not stop.is_set():
            seen.append(shared.scan(NS, "items") == rows)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for _ in range(5):  # each round adds a segment and merges away the old ones
            shared.insert_many(NS, "items", rows)
            shared.flush_table(NS, "items")
            segs = [s.segment_id for s in shared.segments(NS, "items")]
            shared.merge_segments(NS, "items", [segs])
    finally:
        stop.set()
        thread.join(timeout=30)
    assert seen and all(seen)
    assert len(shared.segments(NS, "items")) == 1


def test_hot_summary_and_table_options(engine: Engine, clock: object) -> None:
    info = engine.create_table(NS, "t", TableType.STREAM, ttl_seconds=5,
                               options={"flush_row_limit": 100})
    assert engine.table_info(NS, "t") == info
    assert info.options == {"flush_row_limit": 100}
    empty = engine.hot_summary(NS, "t")
    assert (empty.rows, empty.min_seq, empty.min_ts) == (0, None, None)
    engine.insert_many(NS, "t", [{"id": 1}, {"id": 2}])
    first = min(v.seq for v in engine.versions(NS, "t"))
    summary = engine.hot_summary(NS, "t")
    assert (summary.rows, summary.min_seq, summary.min_ts) == (2, first, engine.now_us())
    with pytest.raises(InvalidName, match="options"):
        engine.create_table(NS, "u", TableType.SHARED, options={"x": object()})
