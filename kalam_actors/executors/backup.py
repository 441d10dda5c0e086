"""Backup: a consistent snapshot of one table, written as one checksummed archive.

Archive layout (a tar stream, zstd-compressed unless ``compression`` is ``none``)::

    manifest.json            format, table schema, row counts, SHA-256 and size of every file
    data/000001.parquet      data files in the segment format (hot rows first, then segments)

The archive is written as ``<backup_location>/<ns>/<table>/.<time>.tar.zst.<pid>.partial`` and
renamed to ``<time>.tar.zst`` (or ``.tar``) only when complete; a later backup removes partial
files whose process is gone.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import tarfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from time import monotonic
from typing import IO, TYPE_CHECKING, Any, ClassVar, Final

import orjson
import zstandard

from .._process import process_alive
from ..ids import JobType
from ..model import JobDecision
from ..storage.interface import Snapshot, StorageEngine
from . import _params as p
from ._base import EngineExecutor, Target

if TYPE_CHECKING:
    from ..context import JobContext

__all__ = ["ARCHIVE_FORMAT", "ARCHIVE_VERSION", "MANIFEST_NAME", "MEMBER_RE", "BackupExecutor",
           "sha256_file"]

ARCHIVE_FORMAT: Final = "kalam-actors-backup"
ARCHIVE_VERSION: Final = 1
MANIFEST_NAME: Final = "manifest.json"
MEMBER_RE: Final = re.compile(r"data/[0-9]{6}\.parquet")
COMPRESSIONS: Final = ("zstd", "none")
_CHUNK: Final = 1 << 20


def sha256_file(path: Path) -> str:
    """The hex SHA-256 of a file's content."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class _Stopped(Exception):
    """The job was cancelled while the archive was being written."""


class BackupExecutor(EngineExecutor):
    """Parameters: ``namespace_id``, ``table_name``, ``table_type``, ``backup_location`` (a
    local path or ``file://`` URL under one of the engine's backup roots; relative paths are
    taken from the first root), ``compression`` (``zstd``, the default, or ``none``).

    Cancellable between files; a partial archive is removed. A re-run after a crash is safe
    (it writes a new archive and removes the crashed attempt's ``.partial`` file). The success
    message gives the archive's size, its compression ratio (bytes archived / archive size)
    and how long the backup took, as the seed's metrics do.
    """

    job_type: ClassVar[JobType] = JobType.BACKUP
    name: ClassVar[str] = "backup"
    cancellable: ClassVar[bool] = True
    rerun_on_recovery: ClassVar[bool] = True

    def _check_params(self, params: dict[str, Any]) -> Target:
        p.check_fields(params, ("namespace_id", "table_name", "table_type", "backup_location"),
                       ("compression",))
        target = p.table_target(params)
        location = p.location(params, "backup_location")
        p.choice(params, "compression", COMPRESSIONS, default="zstd")
        # Any storage object may be handed over; only an engine with roots can be checked here.
        roots = getattr(self._engine, "backup_roots", None)
        if roots is not None:
            p.resolve_location(location, tuple(roots), "backup_location")
        return target

    def _run(self, ctx: JobContext, engine: StorageEngine) -> JobDecision:
        started = monotonic()
        ns, table, kind = self._check_params(ctx.params)
        compression = p.choice(ctx.params, "compression", COMPRESSIONS, default="zstd")
        root = p.resolve_location(p.location(ctx.params, "backup_location"),
                                  engine.backup_roots, "backup_location")
        found = p.table_or_decision(ctx, engine, ns, table, kind, missing_fails=True)
        if isinstance(found, JobDecision):
            return found
        ctx.log_info(f"backing up {ns}:{table} to {root}")
        with engine.scratch_dir(f"backup-{ctx.job_id}") as scratch:
            snapshot = engine.snapshot(ns, table, scratch)
            total = len(snapshot.files) + 1
            ctx.report_progress(0, total, "snapshot taken")
            files = []
            for i, f in enumerate(snapshot.files, start=1):
                if ctx.cancelled:
                    return p.cancelled_decision(ctx, "backup stopped before writing the archive")
                files.append(self._file_entry(scratch, f.path, f.user_id, f.rows, f.kind))
                ctx.report_progress(i, total, f"checksummed {i} of {len(snapshot.files)}")
            manifest = self._manifest(ctx, snapshot, files, compression)
            folder = root / ns / table
            folder.mkdir(parents=True, exist_ok=True)
            # An existing <ns>/<table> folder may be a symlink out of the roots: check again.
            folder = p.resolve_location(PurePosixPath(folder), engine.backup_roots,
                                        "backup_location")
            try:
                archive = self._write_archive(ctx, folder, scratch, manifest, compression)
            except _Stopped:
                return p.cancelled_decision(ctx, "backup stopped; partial archive removed")
        size = archive.stat().st_size
        ctx.report_progress(total, total, "archive written")
        # The ratio compares what went into the tar (manifest and data files) with the archive.
        archived = len(_manifest_body(manifest)) + sum(f["bytes"] for f in files)
        message = (f"backed up {ns}:{table}: {snapshot.visible_rows} rows "
                   f"({snapshot.hot_rows} hot, {snapshot.cold_rows} cold versions) in "
                   f"{len(files)} files, {p.human_bytes(size)} archive at {archive}; "
                   f"compression ratio {archived / max(size, 1):.2f} "
                   f"({p.human_bytes(archived)} archived), took "
                   f"{monotonic() - started:.2f}s")
        ctx.log_info(message)
        return JobDecision.completed(message)

    @staticmethod
    def _file_entry(scratch: Path, path: Path, user_id: str, rows: int, kind: str
                    ) -> dict[str, Any]:
        return {"name": path.relative_to(scratch).as_posix(), "sha256": sha256_file(path),
                "bytes": path.stat().st_size, "rows": rows, "user_id": user_id, "kind": kind}

    @staticmethod
    def _manifest(ctx: JobContext, snapshot: Snapshot, files: list[dict[str, Any]],
                  compression: str) -> dict[str, Any]:
        t = snapshot.table
        return {
            "format": ARCHIVE_FORMAT,
            "version": ARCHIVE_VERSION,
            "created_at": datetime.now(UTC).isoformat(),
            "job_id": str(ctx.job_id),
            "compression": compression,
            "table": {"namespace": t.namespace, "name": t.name,
                      "table_type": t.table_type.value, "primary_key": t.primary_key,
                      "ttl_seconds": t.ttl_seconds,
                      "options": dict(t.options) if t.options else None},
            "segment_schema": [list(pair) for pair in snapshot.segment_schema],
            "rows": {"visible": snapshot.visible_rows, "hot": snapshot.hot_rows,
                     "cold": snapshot.cold_rows},
            "files": files,
        }

    def _write_archive(self, ctx: JobContext, folder: Path, scratch: Path,
                       manifest: dict[str, Any], compression: str) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        suffix = ".tar.zst" if compression == "zstd" else ".tar"
        final = folder / f"{stamp}{suffix}"
        n = 1
        while final.exists():
            n += 1
            final = folder / f"{stamp}-{n}{suffix}"
        # The pid tells a later backup whether a leftover partial file's writer is still alive.
        partial = folder / f".{final.name}.{os.getpid()}.partial"
        _remove_dead_partials(ctx, folder)
        try:
            with open(partial, "wb") as raw:
                with _compressed(raw, compression) as out:
                    self._write_tar(ctx, out, scratch, manifest)
                raw.flush()
                os.fsync(raw.fileno())
            os.replace(partial, final)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                partial.unlink()
            raise
        return final

    @staticmethod
    def _write_tar(ctx: JobContext, out: IO[bytes], scratch: Path,
                   manifest: dict[str, Any]) -> None:
        mtime = int(datetime.now(UTC).timestamp())
        with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            body = _manifest_body(manifest)
            info = tarfile.TarInfo(MANIFEST_NAME)
            info.size, info.mode, info.mtime = len(body), 0o644, mtime
            tar.addfile(info, io.BytesIO(body))
            for entry in manifest["files"]:
                if ctx.cancelled:
                    raise _Stopped
                path = scratch / entry["name"]
                info = tarfile.TarInfo(entry["name"])
                info.size, info.mode, info.mtime = entry["bytes"], 0o644, mtime
                with open(path, "rb") as f:
                    tar.addfile(info, f)


def _manifest_body(manifest: dict[str, Any]) -> bytes:
    """The manifest as written into the archive."""
    return orjson.dumps(manifest, option=orjson.OPT_INDENT_2)


def _remove_dead_partials(ctx: JobContext, folder: Path) -> None:
    """Delete partial archives left by backups whose process died (a crash mid-write)."""
    for leftover in folder.glob(".*.partial"):
        pid = leftover.name.rsplit(".", 2)[-2]
        if not pid.isdigit() or process_alive(int(pid)):
            continue
        with contextlib.suppress(FileNotFoundError):
            leftover.unlink()
            ctx.log_info(f"removed {leftover.name}, left by a backup that crashed")


@contextlib.contextmanager
def _compressed(raw: IO[bytes], compression: str) -> Iterator[IO[bytes]]:
    if compression == "none":
        yield raw
        return
    compressor = zstandard.ZstdCompressor(level=3, write_checksum=True)
    with compressor.stream_writer(raw, closefd=False) as writer:
        yield writer
