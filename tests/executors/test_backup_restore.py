"""BackupExecutor and RestoreExecutor: archives, checksums, path safety, round trips."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path
from typing import Any

import orjson
import pytest
import zstandard
from executor_support import run_job, table_params

from kalam_actors import InvalidParams, JobDecision, Outcome
from kalam_actors.executors import BackupExecutor, RestoreExecutor
from kalam_actors.storage import Engine, TableType
from kalam_actors.testing import make_context, make_job

NS = "default"


@pytest.fixture
def source(engine: Engine) -> Engine:
    """A USER table with cold rows, hot rows, an update and a soft delete."""
    engine.create_table(NS, "users", TableType.USER, primary_key="id")
    engine.insert_many(NS, "users", [{"id": i, "n": f"a{i}"} for i in range(4)], user_id="u1")
    engine.insert_many(NS, "users", [{"id": i, "n": f"b{i}"} for i in range(2)], user_id="u2")
    engine.flush_table(NS, "users")
    engine.update(NS, "users", {"id": 1, "n": "changed"}, user_id="u1")
    engine.delete(NS, "users", 2, user_id="u1")
    engine.insert(NS, "users", {"id": 9, "n": "hot"}, user_id="u2")
    return engine


def backup_params(engine: Engine, location: str | None = None, **extra: Any) -> dict[str, Any]:
    where = location if location is not None else str(engine.path / "backups")
    return table_params("users", "User", backup_location=where, **extra)


def restore_params(location: Path | str, table: str = "copy", **extra: Any) -> dict[str, Any]:
    return {"backup_location": str(location), "target_namespace": NS,
            "target_table_name": table, **extra}


def archives(engine: Engine) -> list[Path]:
    folder = engine.path / "backups" / NS / "users"
    return sorted(folder.iterdir()) if folder.exists() else []


def backup(engine: Engine, **extra: Any) -> Path:
    decision, _ = run_job(BackupExecutor(engine), backup_params(engine, **extra), engine)
    assert decision.outcome is Outcome.COMPLETED, decision.message
    return archives(engine)[-1]


def restore(engine: Engine, location: Path | str, **extra: Any) -> JobDecision:
    decision, _ = run_job(RestoreExecutor(engine), restore_params(location, **extra), engine)
    return decision


# -- validation ---------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("location", "words"),
    [
        ("s3://backups/kalamdb/", "unsupported scheme 's3'"),
        ("http://host/x", "unsupported scheme 'http'"),
        ("file://otherhost/tmp/x", "host"),
        ("/tmp/../etc", "'..'"),
        ("backups/../../x", "'..'"),
        ("", "non-empty"),
    ],
)
def test_unsafe_or_remote_locations_are_refused_without_an_engine(
    location: str, words: str
) -> None:
    for executor, params in (
        (BackupExecutor(), table_params("users", "User", backup_location=location)),
        (RestoreExecutor(), restore_params(location)),
    ):
        with pytest.raises(InvalidParams, match=words.replace("(", r"\(")) as info:
            executor.validate_params(params)
        assert info.value.field == "backup_location"


def test_locations_outside_the_allowed_roots_are_refused(source: Engine, tmp_path: Path) -> None:
    outside = str(tmp_path / "elsewhere")
    BackupExecutor().validate_params(backup_params(source, outside))  # no engine: syntax only
    with pytest.raises(InvalidParams, match="outside the allowed backup roots") as info:
        BackupExecutor(source).validate_params(backup_params(source, outside))
    assert info.value.field == "backup_location"
    with pytest.raises(InvalidParams, match="outside the allowed backup roots"):
        RestoreExecutor(source).validate_params(restore_params(outside))
    decision, _ = run_job(BackupExecutor(), backup_params(source, outside), source)
    assert decision.outcome is Outcome.FAILED
    assert "outside the allowed backup roots" in (decision.message or "")
    assert not (tmp_path / "elsewhere").exists()


def test_symlinks_cannot_escape_the_root(source: Engine, tmp_path: Path) -> None:
    (source.path / "backups").mkdir()
    (source.path / "backups" / "link").symlink_to(tmp_path)
    with pytest.raises(InvalidParams, match="outside"):
        BackupExecutor(source).validate_params(
            backup_params(source, str(source.path / "backups" / "link")))


@pytest.mark.parametrize(
    ("extra", "field"),
    [({"compression": "gzip"}, "compression"), ({"overwrite": "no"}, "overwrite")],
)
def test_bad_options_name_the_field(extra: dict[str, Any], field: str) -> None:
    executor: Any = BackupExecutor() if field == "compression" else RestoreExecutor()
    params = (table_params("t", "User", backup_location="/b", **extra) if field == "compression"
              else restore_params("/b", **extra))
    with pytest.raises(InvalidParams) as info:
        executor.validate_params(params)
    assert info.value.field == field


# -- backup -------------------------------------------------------------------------------------

def test_backup_writes_one_archive_with_a_checksummed_manifest(source: Engine) -> None:
    archive = backup(source)
    assert archive.name.endswith(".tar.zst") and archive.parent == (
        source.path / "backups" / NS / "users")
    with open(archive, "rb") as raw, zstandard.ZstdDecompressor().stream_reader(raw) as reader:
        data = reader.read()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        names = tar.getnames()
        manifest = orjson.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
    assert names[0] == "manifest.json"
    assert manifest["table"] == {"namespace": NS, "name": "users", "table_type": "User",
                                 "primary_key": "id", "ttl_seconds": None, "options": None}
    assert manifest["rows"] == {"visible": 6, "hot": 3, "cold": 6}
    assert sorted(f["name"] for f in manifest["files"]) == sorted(names[1:])
    assert all(len(f["sha256"]) == 64 for f in manifest["files"])
    assert [c[0] for c in manifest["segment_schema"]] == [
        "user_id", "pk", "seq", "deleted", "ts", "data"]
    assert list((source.path / "tmp").iterdir()) == []  # scratch cleaned up


def test_backup_of_a_missing_table_fails(engine: Engine) -> None:
    decision, _ = run_job(BackupExecutor(), backup_params(engine), engine)
    assert (decision.outcome, decision.message) == (
        Outcome.FAILED, "table default:users does not exist")


def test_cancelled_backup_leaves_no_archive(source: Engine) -> None:
    for after in (1, 2, 5):  # before, during checksums, and while writing the archive
        decision, _ = run_job(BackupExecutor(), backup_params(source), source,
                              cancel_after_progress=after)
        assert decision.outcome is Outcome.FAILED and "cancelled" in (decision.message or "")
    folder = source.path / "backups" / NS / "users"
    assert not folder.exists() or list(folder.iterdir()) == []


# -- restore ------------------------------------------------------------------------------------

@pytest.mark.parametrize("compression", ["zstd", "none"])
def test_round_trip_equals_the_source_at_backup_time(source: Engine, compression: str) -> None:
    at_backup = source.scan(NS, "users")
    archive = backup(source, compression=compression)
    source.insert(NS, "users", {"id": 50, "n": "after"}, user_id="u1")
    decision = restore(source, archive)
    assert decision.outcome is Outcome.COMPLETED, decision.message
    assert decision.message is not None and decision.message.startswith(
        f"restored default:users from {archive.name} into default:copy: 6 rows")
    assert source.scan(NS, "copy") == at_backup
    assert source.scan(NS, "copy", user_id="u2") == [{"id": 0, "n": "b0"}, {"id": 1, "n": "b1"},
                                                     {"id": 9, "n": "hot"}]
    info = source.table_info(NS, "copy")
    assert info is not None and info.table_type is TableType.USER


def test_restore_by_folder_and_file_url_into_another_engine(source: Engine, tmp_path: Path
                                                           ) -> None:
    at_backup = source.scan(NS, "users")
    backup(source)
    with Engine.open(tmp_path / "other", backup_roots=[source.path / "backups"]) as other:
        url = "file://" + str(source.path / "backups" / NS / "users")
        assert restore(other, url).outcome is Outcome.COMPLETED
        assert other.scan(NS, "copy") == at_backup
        other.update(NS, "copy", {"id": 0, "n": "newer"}, user_id="u1")  # seqs were bumped
        assert other.get(NS, "copy", 0, user_id="u1") == {"id": 0, "n": "newer"}


def test_existing_target_needs_overwrite_then_is_replaced(source: Engine) -> None:
    archive = backup(source)
    source.create_table(NS, "copy", TableType.SHARED)
    source.insert(NS, "copy", {"id": 1, "old": True})
    refused = restore(source, archive)
    assert (refused.outcome, refused.message) == (
        Outcome.FAILED, "target table default:copy exists; set overwrite=true to replace it")
    assert source.scan(NS, "copy") == [{"id": 1, "old": True}]
    replaced = restore(source, archive, overwrite=True)
    assert replaced.message is not None and replaced.message.endswith(
        "replacing the existing table")
    assert source.scan(NS, "copy") == source.scan(NS, "users")


def _rewrite_tar(archive: Path, out: Path, mutate: Any) -> None:
    """Copy an uncompressed archive, letting ``mutate(name, bytes)`` change members."""
    with tarfile.open(archive) as src, tarfile.open(out, "w") as dst:
        for member in src.getmembers():
            body = src.extractfile(member).read()  # type: ignore[union-attr]
            name, body = mutate(member.name, body)
            info = tarfile.TarInfo(name)
            info.size = len(body)
            dst.addfile(info, io.BytesIO(body))


def test_a_corrupted_archive_is_refused_and_the_target_untouched(source: Engine) -> None:
    archive = backup(source, compression="none")
    source.create_table(NS, "copy", TableType.SHARED)
    source.insert(NS, "copy", {"id": 1, "keep": True})
    bad = archive.with_name("zz-bad.tar")

    def flip(name: str, body: bytes) -> tuple[str, bytes]:
        if name == "data/000002.parquet":
            body = body[:100] + bytes([body[100] ^ 0xFF]) + body[101:]
        return name, body

    _rewrite_tar(archive, bad, flip)
    decision = restore(source, bad, overwrite=True)
    assert decision.outcome is Outcome.FAILED
    assert decision.message == (f"backup archive {bad.name} is corrupt: checksum mismatch for "
                                f"data/000002.parquet; target default:copy left untouched")
    assert source.scan(NS, "copy") == [{"id": 1, "keep": True}]
    assert list((source.path / "tmp").iterdir()) == []


def test_a_truncated_compressed_archive_is_refused(source: Engine) -> None:
    archive = backup(source)
    cut = archive.with_name("zz-cut.tar.zst")
    cut.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    decision = restore(source, cut)
    assert decision.outcome is Outcome.FAILED and "is corrupt" in (decision.message or "")
    assert source.table_info(NS, "copy") is None


def test_traversal_members_are_refused_and_never_written(source: Engine) -> None:
    archive = backup(source, compression="none")
    evil = archive.with_name("zz-evil.tar")

    def escape(name: str, body: bytes) -> tuple[str, bytes]:
        return ("../../escaped.parquet" if name == "data/000001.parquet" else name), body

    _rewrite_tar(archive, evil, escape)
    decision = restore(source, evil)
    assert decision.outcome is Outcome.FAILED
    assert "unexpected member '../../escaped.parquet'" in (decision.message or "")
    assert not list(source.path.rglob("escaped.parquet"))
    assert source.table_info(NS, "copy") is None


def test_a_missing_archive_fails_clearly(engine: Engine) -> None:
    decision = restore(engine, engine.path / "backups" / "nothing.tar.zst")
    assert decision.outcome is Outcome.FAILED
    assert decision.message is not None and decision.message.endswith("does not exist")


def test_cancelled_restore_leaves_no_table(source: Engine) -> None:
    archive = backup(source)
    decision, _ = run_job(RestoreExecutor(), restore_params(archive), source,
                          cancel_after_progress=1)
    assert decision.outcome is Outcome.FAILED and "cancelled" in (decision.message or "")
    assert source.table_info(NS, "copy") is None
    assert not (source.path / "segments" / NS / "copy").exists() or not list(
        (source.path / "segments" / NS / "copy").rglob("*.parquet"))


def test_a_rerun_of_the_same_job_recognises_its_own_restore(source: Engine) -> None:
    archive = backup(source)
    params = restore_params(archive)
    job = make_job(RestoreExecutor.job_type, params)
    ctx, _ = make_context(job, storage=source)
    assert RestoreExecutor().execute(ctx, job).outcome is Outcome.COMPLETED
    again = RestoreExecutor().execute(ctx, job)
    assert again.outcome is Outcome.COMPLETED
    assert "already restored" in (again.message or "")
    assert RestoreExecutor.rerun_on_recovery is True


def test_an_archive_symlinked_from_outside_the_roots_is_refused(
    source: Engine, tmp_path: Path
) -> None:
    archive = backup(source)
    outside = tmp_path / "outside.tar.zst"
    outside.write_bytes(archive.read_bytes())
    archive.unlink()
    (archive.parent / "zz.tar.zst").symlink_to(outside)
    decision = restore(source, archive.parent)
    assert decision.outcome is Outcome.FAILED
    assert "outside the allowed backup roots" in (decision.message or "")
    assert source.table_info(NS, "copy") is None


@pytest.mark.parametrize("compression", ["zstd", "none"])
def test_any_flipped_byte_is_refused_or_harmless(source: Engine, compression: str) -> None:
    import random

    at_backup = source.scan(NS, "users")
    archive = backup(source, compression=compression)
    data = archive.read_bytes()
    rng = random.Random(4)
    for n, pos in enumerate(rng.sample(range(len(data)), 25)):
        bad = archive.with_name(f"zz-{n:02d}{''.join(archive.suffixes)}")
        bad.write_bytes(data[:pos] + bytes([data[pos] ^ 0x5A]) + data[pos + 1:])
        decision = restore(source, bad, table=f"t{n}")
        if decision.outcome is Outcome.COMPLETED:  # e.g. a byte of tar padding or an mtime
            assert source.scan(NS, f"t{n}") == at_backup
        else:
            assert decision.outcome is Outcome.FAILED
            assert source.table_info(NS, f"t{n}") is None
        bad.unlink()


def test_well_checksummed_but_malformed_rows_are_refused(source: Engine) -> None:
    import hashlib

    import pyarrow as pa
    import pyarrow.parquet as pq

    archive = backup(source, compression="none")
    forged = archive.with_name("zz-forged.tar")
    bodies: dict[str, bytes] = {}

    def forge(name: str, body: bytes) -> tuple[str, bytes]:
        if name == "data/000001.parquet":
            table = pq.read_table(io.BytesIO(body))
            pks = pa.array(["not json"] * table.num_rows, pa.string())
            table = table.set_column(1, table.schema.field(1), pks)
            out = io.BytesIO()
            pq.write_table(table, out)
            body = out.getvalue()
        bodies[name] = body
        return name, body

    _rewrite_tar(archive, forged, forge)
    manifest = orjson.loads(bodies["manifest.json"])
    for entry in manifest["files"]:
        entry["sha256"] = hashlib.sha256(bodies[entry["name"]]).hexdigest()
        entry["bytes"] = len(bodies[entry["name"]])
    fixed = orjson.dumps(manifest)
    _rewrite_tar(forged, forged.with_name("zz-forged2.tar"),
                 lambda name, body: (name, fixed if name == "manifest.json" else body))
    decision = restore(source, forged.with_name("zz-forged2.tar"))
    assert decision.outcome is Outcome.FAILED
    assert "invalid JSON" in (decision.message or "")
    assert source.table_info(NS, "copy") is None


def test_a_crashed_backups_partial_file_is_removed_by_the_next(source: Engine) -> None:
    folder = source.path / "backups" / NS / "users"
    folder.mkdir(parents=True)
    dead = folder / ".20200101T000000000000Z.tar.zst.999999999.partial"
    dead.write_bytes(b"half an archive")
    archive = backup(source)
    assert sorted(p.name for p in folder.iterdir()) == [archive.name]


@pytest.mark.parametrize("compression", ["zstd", "none"])
def test_the_success_message_carries_ratio_and_duration(
    source: Engine, compression: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kalam_actors.executors import backup as backup_module

    ticks = iter([100.0, 102.5])
    monkeypatch.setattr(backup_module, "monotonic", lambda: next(ticks))
    decision, _ = run_job(BackupExecutor(), backup_params(source, compression=compression),
                          source)
    archive = archives(source)[-1]
    with tarfile.open(archive) if compression == "none" else tarfile.open(
            fileobj=io.BytesIO(zstandard.ZstdDecompressor().stream_reader(
                archive.read_bytes()).read())) as tar:
        archived = sum(m.size for m in tar.getmembers())
    ratio = archived / archive.stat().st_size
    assert decision.message is not None and decision.message.endswith(
        f"; compression ratio {ratio:.2f} ({archived / 1024:.1f} KiB archived), took 2.50s")
    assert (ratio > 1) is (compression == "zstd")
