"""RestoreExecutor against hostile archives: bombs, sparse and special members, lying row
counts, manifest gaps. Each ends Failed with a clear message, having written at most the bytes
its manifest declares, and the next restore works."""

from __future__ import annotations

import copy
import itertools
import resource
import tarfile
import tracemalloc
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
import zstandard
from archive_support import (
    ScratchMeter,
    bytes_written_by_process,
    gnu_sparse_member,
    header,
    identical_rows_parquet,
    manifest_member,
    member,
    pax_sparse_member,
    read_backup,
    sha,
    write_archive,
    zeros,
)
from executor_support import run_job, table_params

from kalam_actors import JobDecision, Outcome
from kalam_actors.executors import BackupExecutor, RestoreExecutor
from kalam_actors.storage import Engine, InvalidName, RestoreLimits, TableType

NS = "default"
GIB = 1 << 30
DATA = "data/000001.parquet"


@pytest.fixture
def genuine(engine: Engine) -> tuple[dict[str, Any], dict[str, bytes]]:
    """A real uncompressed backup of a SHARED table with hot and cold rows, taken apart."""
    engine.create_table(NS, "items", TableType.SHARED)
    engine.insert_many(NS, "items", [{"id": i, "v": "x" * i} for i in range(20)])
    engine.flush_table(NS, "items")
    engine.insert(NS, "items", {"id": 99})
    decision, _ = run_job(BackupExecutor(), table_params(
        "items", "Shared", backup_location=str(engine.path / "backups"), compression="none"),
        engine)
    assert decision.outcome is Outcome.COMPLETED, decision.message
    [archive] = (engine.path / "backups" / NS / "items").iterdir()
    parts = read_backup(archive)
    archive.unlink()
    return parts


def build(engine: Engine, name: str, parts: Iterable[bytes], *, compress: bool = False
          ) -> Path:
    folder = engine.path / "backups" / "hostile"
    folder.mkdir(parents=True, exist_ok=True)
    return write_archive(folder / name, parts, compress=compress)


def honest(manifest: dict[str, Any], bodies: dict[str, bytes]) -> list[bytes]:
    return [manifest_member(manifest)] + [member(n, b) for n, b in sorted(bodies.items())]


def restore_measured(engine: Engine, archive: Path, monkeypatch: pytest.MonkeyPatch,
                     table: str = "copy") -> tuple[JobDecision, int, int]:
    """Run the restore; return its decision, the most bytes its scratch folder held and the
    bytes the whole process wrote meanwhile."""
    meter = ScratchMeter(engine)
    monkeypatch.setattr(engine, "scratch_dir", meter)
    before = bytes_written_by_process()
    decision, _ = run_job(RestoreExecutor(engine), {
        "backup_location": str(archive), "target_namespace": NS, "target_table_name": table},
        engine)
    return decision, meter.peak, bytes_written_by_process() - before


def assert_refused(engine: Engine, decision: JobDecision, words: str, *, scratch: int,
                   wrote: int, declared: int) -> None:
    """Failed naming the problem, at most the declared bytes written, nothing installed,
    nothing left behind."""
    assert decision.outcome is Outcome.FAILED
    assert words in (decision.message or ""), decision.message
    assert (decision.message or "").endswith("target default:copy left untouched")
    assert scratch <= declared
    assert wrote < declared + (1 << 20)  # logs and the like; never the bomb
    assert engine.table_info(NS, "copy") is None
    assert not (engine.path / "segments" / NS / "copy").exists()
    assert list((engine.path / "tmp").iterdir()) == []


def assert_still_serving(engine: Engine, genuine: tuple[dict[str, Any], dict[str, bytes]],
                         monkeypatch: pytest.MonkeyPatch) -> None:
    archive = build(engine, "zz-good.tar", honest(*genuine))
    decision, _, _ = restore_measured(engine, archive, monkeypatch, table="good")
    assert decision.outcome is Outcome.COMPLETED, decision.message
    assert engine.scan(NS, "good") == engine.scan(NS, "items")


def rest(bodies: dict[str, bytes]) -> list[bytes]:
    """The genuine members after the first data file."""
    return [member(n, b) for n, b in sorted(bodies.items()) if n != DATA]


def data_bytes(manifest: dict[str, Any]) -> int:
    return sum(f.get("bytes", 0) for f in manifest["files"])


# -- bombs ----------------------------------------------------------------------------------

def test_a_zstd_bomb_is_refused_at_its_header_having_written_nothing(
    engine: Engine, genuine: tuple[dict[str, Any], dict[str, bytes]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    manifest, bodies = genuine
    # Given a 33 KB archive whose first data member unpacks to 1 GiB of zeros
    parts = itertools.chain([manifest_member(manifest), header(DATA, GIB)], zeros(GIB),
                            rest(bodies))
    bomb = build(engine, "bomb.tar.zst", parts, compress=True)
    assert bomb.stat().st_size < 64 << 10
    # When it is restored
    decision, scratch, wrote = restore_measured(engine, bomb, monkeypatch)
    # Then the member is refused by its header: not one of its bytes is written
    declared = manifest["files"][0]["bytes"]
    assert_refused(engine, decision, f"member {DATA} is {GIB} bytes, the manifest declares "
                   f"{declared}", scratch=scratch, wrote=wrote, declared=0)
    assert_still_serving(engine, genuine, monkeypatch)


def test_an_oversized_pax_header_is_never_read_into_memory(
    engine: Engine, genuine: tuple[dict[str, Any], dict[str, bytes]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # tarfile reads a PAX header whole into memory: 1 GiB of it must stop at the manifest cap.
    parts = itertools.chain([header("././@PaxHeader", GIB, tarfile.XHDTYPE)], zeros(GIB))
    bomb = build(engine, "pax-bomb.tar.zst", parts, compress=True)
    tracemalloc.start()
    try:
        decision, scratch, wrote = restore_measured(engine, bomb, monkeypatch)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert_refused(engine, decision, "it holds more than its manifest accounts for",
                   scratch=scratch, wrote=wrote, declared=0)
    assert peak < 64 << 20
    assert_still_serving(engine, genuine, monkeypatch)


def test_a_zstd_frame_asking_for_a_huge_window_is_refused(
    engine: Engine, genuine: tuple[dict[str, Any], dict[str, bytes]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A 128 MiB window is what libzstd would allocate by default; Backup's frames use 2 MiB.
    params = zstandard.ZstdCompressionParameters.from_level(3, window_log=27)
    archive = build(engine, "window.tar", honest(*genuine))
    framed = archive.with_name("window.tar.zst")
    with open(framed, "wb") as raw, zstandard.ZstdCompressor(
            compression_params=params).stream_writer(raw) as out:  # size unknown: full window
        out.write(archive.read_bytes())
    archive.unlink()
    decision, scratch, wrote = restore_measured(engine, framed, monkeypatch)
    assert_refused(engine, decision, "Frame requires too much memory", scratch=scratch,
                   wrote=wrote, declared=0)


@pytest.mark.parametrize("kind", ["gnu", "pax 0.1", "pax 1.0"])
def test_a_sparse_member_is_refused_before_it_expands(
    engine: Engine, genuine: tuple[dict[str, Any], dict[str, bytes]],
    monkeypatch: pytest.MonkeyPatch, kind: str,
) -> None:
    manifest, bodies = genuine
    body = bodies[DATA]
    # Given a 10 KB uncompressed archive whose data member is sparse: its stored bytes are the
    # genuine file, as the manifest declares, but it expands to 1 GiB
    sparse = (gnu_sparse_member(DATA, body, GIB) if kind == "gnu"
              else pax_sparse_member(DATA, body, GIB, kind.split()[1]))
    bomb = build(engine, "sparse.tar", [manifest_member(manifest), sparse, *rest(bodies)])
    assert bomb.stat().st_size < 16 << 10
    decision, scratch, wrote = restore_measured(engine, bomb, monkeypatch)
    assert_refused(engine, decision, f"member {DATA!r} is a sparse file", scratch=scratch,
                   wrote=wrote, declared=0)
    assert_still_serving(engine, genuine, monkeypatch)


def test_a_member_bigger_than_declared_is_refused_before_writing(
    engine: Engine, genuine: tuple[dict[str, Any], dict[str, bytes]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    manifest, bodies = genuine
    parts = honest(manifest, {**bodies, DATA: bodies[DATA] + b"x" * 100_000})
    archive = build(engine, "bigger.tar", parts)
    decision, scratch, wrote = restore_measured(engine, archive, monkeypatch)
    declared = manifest["files"][0]["bytes"]
    assert_refused(engine, decision, f"member {DATA} is {declared + 100_000} bytes, the "
                   f"manifest declares {declared}", scratch=scratch, wrote=wrote,
                   declared=data_bytes(manifest))
    assert_still_serving(engine, genuine, monkeypatch)


@pytest.mark.parametrize(
    ("kind", "words", "extra"),
    [
        (tarfile.SYMTYPE, "is a symbolic link", {"linkname": "/etc/passwd"}),
        (tarfile.LNKTYPE, "is a hard link", {"linkname": "manifest.json"}),
        (tarfile.FIFOTYPE, "is a fifo", {}),
        (tarfile.CHRTYPE, "is a character device", {"devmajor": 1, "devminor": 3}),
        (tarfile.BLKTYPE, "is a block device", {"devmajor": 8, "devminor": 0}),
        (tarfile.DIRTYPE, "is a directory", {}),
    ],
)
def test_special_members_are_refused(
    engine: Engine, genuine: tuple[dict[str, Any], dict[str, bytes]],
    monkeypatch: pytest.MonkeyPatch, kind: bytes, words: str, extra: dict[str, Any],
) -> None:
    manifest, bodies = genuine
    archive = build(engine, "special.tar",
                    [manifest_member(manifest), header(DATA, 0, kind, **extra), *rest(bodies)])
    decision, scratch, wrote = restore_measured(engine, archive, monkeypatch)
    assert_refused(engine, decision, f"member {DATA!r} {words}, not a regular file",
                   scratch=scratch, wrote=wrote, declared=0)
    assert not list(engine.path.rglob("passwd"))


def test_a_manifest_that_is_not_first_is_refused(
    engine: Engine, genuine: tuple[dict[str, Any], dict[str, bytes]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    manifest, bodies = genuine
    parts = honest(manifest, bodies)
    archive = build(engine, "late.tar", [*parts[1:], parts[0]])
    decision, scratch, wrote = restore_measured(engine, archive, monkeypatch)
    assert_refused(engine, decision, "its first member is not manifest.json", scratch=scratch,
                   wrote=wrote, declared=0)


# -- row counts -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ten_million_rows() -> bytes:
    return identical_rows_parquet(10_000_000)


def rows_bomb(manifest: dict[str, Any], body: bytes, declared_rows: int) -> list[bytes]:
    """An archive of one data file, ``body``, declared as holding ``declared_rows``."""
    manifest = copy.deepcopy(manifest)
    manifest["files"] = [{"name": DATA, "sha256": sha(body), "bytes": len(body),
                          "rows": declared_rows, "user_id": "", "kind": "segment"}]
    return [manifest_member(manifest), member(DATA, body)]


def test_ten_million_declared_rows_are_refused_before_unpacking(
    engine: Engine, genuine: tuple[dict[str, Any], dict[str, bytes]],
    monkeypatch: pytest.MonkeyPatch, ten_million_rows: bytes,
) -> None:
    # Given a tiny archive, checksums valid, holding 10 million identical rows, honestly declared
    parts = rows_bomb(genuine[0], ten_million_rows, 10_000_000)
    archive = build(engine, "rows.tar.zst", parts, compress=True)
    assert archive.stat().st_size < 64 << 10
    decision, scratch, wrote = restore_measured(engine, archive, monkeypatch)
    assert_refused(engine, decision, "exceeds this engine's restore limits: data/000001.parquet "
                   "declares 10000000 rows, more than the limit of 1000000 rows per file "
                   "(max_file_rows)", scratch=scratch, wrote=wrote, declared=0)
    assert_still_serving(engine, genuine, monkeypatch)


def test_rows_the_manifest_hides_are_found_in_the_parquet_metadata_before_decoding(
    engine: Engine, genuine: tuple[dict[str, Any], dict[str, bytes]],
    monkeypatch: pytest.MonkeyPatch, ten_million_rows: bytes,
) -> None:
    # Given the same file, declared as 10 rows
    parts = rows_bomb(genuine[0], ten_million_rows, 10)
    archive = build(engine, "rows-lie.tar", parts)
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    decision, scratch, wrote = restore_measured(engine, archive, monkeypatch)
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before
    assert_refused(engine, decision, f"{DATA} holds 10000000 rows, the manifest says 10",
                   scratch=scratch, wrote=wrote, declared=len(ten_million_rows))
    assert grown_kib < 200 << 10  # decoding it grew the process by ~1 GB
    assert_still_serving(engine, genuine, monkeypatch)


def test_restore_limits_are_set_per_engine(
    tmp_path: Path, genuine: tuple[dict[str, Any], dict[str, bytes]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    manifest, bodies = genuine
    rows = [f["rows"] for f in manifest["files"]]
    assert rows == [1, 20]  # the hot rows, then the segment
    cases = [(RestoreLimits(max_file_rows=19), "more than the limit of 19 rows per file"),
             (RestoreLimits(max_total_rows=20), "21 rows, more than the limit of 20"),
             (RestoreLimits(max_total_bytes=100), "more than the limit of 100 ")]
    for n, (limits, words) in enumerate(cases):
        with Engine.open(tmp_path / f"e{n}", restore_limits=limits, durable=False) as strict:
            assert strict.restore_limits == limits
            archive = build(strict, "ok.tar", honest(manifest, bodies))
            decision, scratch, wrote = restore_measured(strict, archive, monkeypatch)
            assert_refused(strict, decision, words, scratch=scratch, wrote=wrote, declared=0)
    with pytest.raises(InvalidName, match="max_file_rows must be a whole number > 0"):
        RestoreLimits(max_file_rows=0)


def test_the_engine_enforces_its_limits_on_any_import(
    tmp_path: Path, genuine: tuple[dict[str, Any], dict[str, bytes]],
) -> None:
    from kalam_actors.storage import ImportFile, LimitExceeded, TableInfo

    _, bodies = genuine
    with Engine.open(tmp_path / "e", restore_limits=RestoreLimits(max_file_rows=5),
                     durable=False) as strict:
        path = tmp_path / "one.parquet"
        path.write_bytes(bodies["data/000002.parquet"])
        like = TableInfo(NS, "items", TableType.SHARED, "id")
        with pytest.raises(LimitExceeded, match="holds 20 rows, more than this engine's "
                                                "restore limit of 5 rows per file"):
            strict.import_table(NS, "t", like=like, files=[ImportFile(path, "")],
                                overwrite=False)
        assert strict.table_info(NS, "t") is None and path.exists()


# -- manifest gaps --------------------------------------------------------------------------

def _drop(key: str) -> Callable[[dict[str, Any]], None]:
    def mutate(m: dict[str, Any]) -> None:
        del m["files"][0][key]
    return mutate


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(m: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = m
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        target[last] = value
    return mutate


def _stream_with_ttl(ttl: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(m: dict[str, Any]) -> None:
        m["table"]["table_type"] = "Stream"
        m["table"]["ttl_seconds"] = ttl
    return mutate


@pytest.mark.parametrize(
    ("mutate", "words"),
    [
        (_drop("bytes"), "manifest.json: files[0].bytes is missing"),
        (_drop("sha256"), "manifest.json: files[0].sha256 is missing"),
        (_drop("rows"), "manifest.json: files[0].rows is missing"),
        (_drop("user_id"), "manifest.json: files[0].user_id is missing"),
        (_set("files.0.bytes", -1), "manifest.json: files[0].bytes must be >= 0, not -1"),
        (_set("files.0.bytes", "12"), "files[0].bytes must be a whole number, not '12'"),
        (_set("files.0.rows", True), "files[0].rows must be a whole number, not True"),
        (_set("files.0.sha256", "abc"), "files[0].sha256 is not a hex SHA-256"),
        (_set("files.0.name", "../x.parquet"), "files[0].name is a bad file name"),
        (_set("files.0.user_id", "u1"), "files[0].user_id 'u1' is not an owner a Shared"),
        (_set("files", {}), "manifest.json: files must be a list, not {}"),
        (_set("rows", None), "manifest.json: rows must be an object, not None"),
        (_stream_with_ttl(-5), "manifest.json: table.ttl_seconds: ttl_seconds must be a whole "
                               "number > 0, not -5"),
        (_stream_with_ttl(1.5), "table.ttl_seconds: ttl_seconds must be a whole number"),
        (_set("table.name", "a/b"), "manifest.json: table.name: invalid table name 'a/b'"),
        (_set("table.table_type", "View"), "table.table_type: unknown table type 'View'"),
        (_set("table.primary_key", None), "table.primary_key: invalid primary key None"),
        (_set("table.options", [1]), "table.options: table options must be a JSON object"),
        (_set("version", 2), "unknown format 'kalam-actors-backup' version 2"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_a_malformed_manifest_fails_for_good_naming_the_field(
    engine: Engine, genuine: tuple[dict[str, Any], dict[str, bytes]],
    monkeypatch: pytest.MonkeyPatch, mutate: Callable[[dict[str, Any]], None], words: str,
) -> None:
    manifest, bodies = copy.deepcopy(genuine[0]), genuine[1]
    mutate(manifest)
    archive = build(engine, "gap.tar", honest(manifest, bodies))
    decision, scratch, wrote = restore_measured(engine, archive, monkeypatch)
    # Failed, not retried (a decision, not an exception), before any data file was written
    assert "backup archive gap.tar is corrupt: " in (decision.message or "")
    assert_refused(engine, decision, words, scratch=scratch, wrote=wrote, declared=0)
    assert_still_serving(engine, genuine, monkeypatch)


def test_the_manifest_table_is_checked_by_create_tables_own_rules(
    engine: Engine, genuine: tuple[dict[str, Any], dict[str, bytes]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(InvalidName) as refused:
        engine.create_table(NS, "s", TableType.STREAM, ttl_seconds=-5)
    assert refused.value.field == "ttl_seconds"
    manifest = copy.deepcopy(genuine[0])
    _stream_with_ttl(-5)(manifest)
    archive = build(engine, "ttl.tar", honest(manifest, genuine[1]))
    decision, _, _ = restore_measured(engine, archive, monkeypatch)
    assert f"table.ttl_seconds: {refused.value}" in (decision.message or "")


def test_an_archive_bigger_than_the_free_disk_is_refused_before_unpacking(
    engine: Engine, genuine: tuple[dict[str, Any], dict[str, bytes]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import shutil

    usage = shutil.disk_usage(engine.path)
    monkeypatch.setattr(shutil, "disk_usage", lambda _path: usage._replace(free=1000))
    archive = build(engine, "roomy.tar", honest(*genuine))
    decision, scratch, wrote = restore_measured(engine, archive, monkeypatch)
    assert_refused(engine, decision, "exceeds this engine's restore limits: its "
                   f"{data_bytes(genuine[0]) / 1024:.1f} KiB of data files do not fit in the "
                   "1000 bytes free on the engine's disk", scratch=scratch, wrote=wrote,
                   declared=0)
