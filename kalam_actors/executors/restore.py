"""Restore: verify a backup archive completely, then install it as a table atomically."""

from __future__ import annotations

import contextlib
import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING, Any, ClassVar, Final

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import zstandard

from ..ids import JobType
from ..model import JobDecision
from ..storage.errors import CorruptSegment
from ..storage.interface import ImportFile, StorageEngine, TableInfo, TableType
from ..storage.names import is_name
from . import _params as p
from ._base import EngineExecutor
from .backup import ARCHIVE_FORMAT, MANIFEST_NAME, MEMBER_RE, sha256_file

if TYPE_CHECKING:
    from ..context import JobContext

__all__ = ["RestoreExecutor"]

_ZSTD_MAGIC: Final = b"\x28\xb5\x2f\xfd"
_MAX_MANIFEST: Final = 16 << 20
_COPY_CHUNK: Final = 1 << 20


class _Corrupt(Exception):
    """The archive is unreadable or fails a check; nothing has been touched."""


class _Stopped(Exception):
    """Cancelled while reading the archive."""


class RestoreExecutor(EngineExecutor):
    """Parameters: ``backup_location`` (an archive written by Backup, or the folder holding
    them, in which case the newest is used; under the engine's backup roots),
    ``target_namespace``, ``target_table_name``, ``overwrite`` (default false).

    Every member is checked (names, sizes, SHA-256, row counts, schema) before anything is
    touched; an existing target is refused unless ``overwrite``, and then replaced in one
    transaction. Cancellable until that transaction; no partial table is ever visible. A re-run
    after a crash is safe: a table this job already restored is recognised and left alone.
    """

    job_type: ClassVar[JobType] = JobType.RESTORE
    name: ClassVar[str] = "restore"
    cancellable: ClassVar[bool] = True
    rerun_on_recovery: ClassVar[bool] = True

    def validate_params(self, params: dict[str, Any]) -> None:
        p.check_fields(params, ("backup_location", "target_namespace", "target_table_name"),
                       ("overwrite",))
        location = p.location(params, "backup_location")
        p.name(params, "target_namespace")
        p.name(params, "target_table_name")
        p.flag(params, "overwrite")
        # Any storage object may be handed over; only an engine with roots can be checked here.
        roots = getattr(self._engine, "backup_roots", None)
        if roots is not None:
            p.resolve_location(location, tuple(roots), "backup_location")

    def _run(self, ctx: JobContext, engine: StorageEngine) -> JobDecision:
        self.validate_params(ctx.params)
        ns = p.name(ctx.params, "target_namespace")
        table = p.name(ctx.params, "target_table_name")
        overwrite = p.flag(ctx.params, "overwrite")
        location = p.resolve_location(p.location(ctx.params, "backup_location"),
                                      engine.backup_roots, "backup_location")
        archive = self._find_archive(location)
        if isinstance(archive, JobDecision):
            return self._log(ctx, archive)
        # A file picked from a folder may be a symlink out of the roots: check it too.
        archive = p.resolve_location(PurePosixPath(archive), engine.backup_roots,
                                     "backup_location")
        archive_sha = sha256_file(archive)
        existing = engine.table_info(ns, table)
        if existing is not None:
            origin = existing.restored_from or {}
            if origin.get("job_id") == str(ctx.job_id) and \
                    origin.get("archive_sha256") == archive_sha:
                return self._log(ctx, JobDecision.completed(
                    f"{ns}:{table} was already restored from {archive.name} by this job"))
            if not overwrite:
                return self._log(ctx, JobDecision.failed(
                    f"target table {ns}:{table} exists; set overwrite=true to replace it"))
        ctx.log_info(f"restoring {archive} into {ns}:{table}")
        with engine.scratch_dir(f"restore-{ctx.job_id}") as scratch:
            try:
                manifest = self._extract_and_verify(ctx, archive, scratch)
            except _Corrupt as exc:
                return self._log(ctx, JobDecision.failed(
                    f"backup archive {archive.name} is corrupt: {exc}; target {ns}:{table} "
                    f"left untouched"))
            except _Stopped:
                return p.cancelled_decision(ctx, f"restore stopped; {ns}:{table} untouched")
            if ctx.cancelled:
                return p.cancelled_decision(ctx, f"restore stopped; {ns}:{table} untouched")
            like = self._table_of(manifest)
            files = [ImportFile(scratch / f["name"], f["user_id"]) for f in manifest["files"]]
            try:
                result = engine.import_table(
                    ns, table, like=like, files=files, overwrite=overwrite,
                    restored_from={"archive": str(archive), "archive_sha256": archive_sha,
                                   "job_id": str(ctx.job_id), "source": like.table_id})
            except CorruptSegment as exc:
                return self._log(ctx, JobDecision.failed(
                    f"backup archive {archive.name} is corrupt: {exc}; target {ns}:{table} "
                    f"left untouched"))
        replaced = ", replacing the existing table" if result.replaced else ""
        message = (f"restored {like.table_id} from {archive.name} into {ns}:{table}: "
                   f"{manifest['rows']['visible']} rows ({result.rows} stored versions in "
                   f"{result.files} segments){replaced}")
        steps = len(manifest["files"]) + 1
        ctx.report_progress(steps, steps, "restored")
        return self._log(ctx, JobDecision.completed(message))

    @staticmethod
    def _log(ctx: JobContext, decision: JobDecision) -> JobDecision:
        if decision.message:
            (ctx.log_info if decision.outcome.value == "completed" else ctx.log_error)(
                decision.message)
        return decision

    @staticmethod
    def _find_archive(location: Path) -> Path | JobDecision:
        if location.is_dir():
            found = sorted(f for f in location.iterdir() if f.is_file()
                           and not f.name.startswith(".")
                           and (f.name.endswith(".tar.zst") or f.name.endswith(".tar")))
            if not found:
                return JobDecision.failed(f"no backup archive in {location}")
            return found[-1]
        if not location.is_file():
            return JobDecision.failed(f"backup archive {location} does not exist")
        return location

    def _extract_and_verify(self, ctx: JobContext, archive: Path, into: Path
                            ) -> dict[str, Any]:
        members = self._extract(ctx, archive, into)
        if MANIFEST_NAME not in members:
            raise _Corrupt("it has no manifest.json")
        try:
            manifest: dict[str, Any] = orjson.loads((into / MANIFEST_NAME).read_bytes())
        except orjson.JSONDecodeError as exc:
            raise _Corrupt(f"manifest.json is not JSON: {exc}") from None
        self._check_manifest(manifest)
        listed = {f["name"] for f in manifest["files"]}
        if members - {MANIFEST_NAME} != listed:
            extra = sorted((members - {MANIFEST_NAME}) ^ listed)
            raise _Corrupt(f"archive members and manifest disagree on {', '.join(extra)}")
        total = len(manifest["files"])
        for i, entry in enumerate(manifest["files"], start=1):
            if ctx.cancelled:
                raise _Stopped
            self._check_file(into / entry["name"], entry)
            ctx.report_progress(i, total + 1, f"verified {i} of {total} files")
        return manifest

    @staticmethod
    def _extract(ctx: JobContext, archive: Path, into: Path) -> set[str]:
        """Unpack only regular members with expected names (never a path from the archive
        as such), refusing anything else."""
        seen: set[str] = set()
        try:
            with _opened(archive) as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
                for member in tar:
                    if ctx.cancelled:
                        raise _Stopped
                    name = member.name
                    if name != MANIFEST_NAME and MEMBER_RE.fullmatch(name) is None:
                        raise _Corrupt(f"unexpected member {name!r}")
                    if not member.isfile():
                        raise _Corrupt(f"member {name!r} is not a regular file")
                    if name in seen:
                        raise _Corrupt(f"member {name!r} appears twice")
                    if name == MANIFEST_NAME and member.size > _MAX_MANIFEST:
                        raise _Corrupt("manifest.json is implausibly large")
                    seen.add(name)
                    source = tar.extractfile(member)
                    if source is None:
                        raise _Corrupt(f"member {name!r} has no content")
                    target = into / name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with open(target, "wb") as out:
                        shutil.copyfileobj(source, out, _COPY_CHUNK)
        except (tarfile.TarError, zstandard.ZstdError, EOFError, OSError, ValueError) as exc:
            raise _Corrupt(f"cannot read it: {exc}") from None
        return seen

    @staticmethod
    def _check_manifest(manifest: Any) -> None:
        try:
            if manifest["format"] != ARCHIVE_FORMAT or manifest["version"] != 1:
                raise _Corrupt(f"unknown format {manifest['format']!r} "
                               f"version {manifest['version']!r}")
            table = manifest["table"]
            if not (is_name(table["namespace"]) and is_name(table["name"])
                    and is_name(table["primary_key"])):
                raise _Corrupt("manifest names an invalid table")
            kind = TableType.parse(table["table_type"])
            names = set()
            for f in manifest["files"]:
                if not isinstance(f["name"], str) or MEMBER_RE.fullmatch(f["name"]) is None:
                    raise _Corrupt(f"manifest lists a bad file name {f['name']!r}")
                if f["name"] in names:
                    raise _Corrupt(f"manifest lists {f['name']} twice")
                names.add(f["name"])
                user_ok = is_name(f["user_id"]) if kind is TableType.USER else f["user_id"] == ""
                if not user_ok:
                    raise _Corrupt(f"manifest gives {f['name']} a bad owner {f['user_id']!r}")
            int(manifest["rows"]["visible"])
        except (KeyError, TypeError, ValueError) as exc:
            raise _Corrupt(f"manifest.json is malformed ({type(exc).__name__}: {exc})") from None

    @staticmethod
    def _check_file(path: Path, entry: dict[str, Any]) -> None:
        name = entry["name"]
        if path.stat().st_size != entry["bytes"]:
            raise _Corrupt(f"{name} has {path.stat().st_size} bytes, the manifest says "
                           f"{entry['bytes']}")
        if sha256_file(path) != entry["sha256"]:
            raise _Corrupt(f"checksum mismatch for {name}")
        try:
            rows = pq.read_metadata(path).num_rows
        except (OSError, pa.ArrowException) as exc:
            raise _Corrupt(f"{name} is not a Parquet file: {exc}") from None
        if rows != entry["rows"]:
            raise _Corrupt(f"{name} holds {rows} rows, the manifest says {entry['rows']}")

    @staticmethod
    def _table_of(manifest: dict[str, Any]) -> TableInfo:
        t = manifest["table"]
        options = t.get("options")
        return TableInfo(t["namespace"], t["name"], TableType.parse(t["table_type"]),
                         t["primary_key"], t.get("ttl_seconds"),
                         options=options if isinstance(options, dict) else None)


@contextlib.contextmanager
def _opened(archive: Path) -> Iterator[IO[bytes]]:
    with open(archive, "rb") as raw:
        compressed = raw.read(4) == _ZSTD_MAGIC
        raw.seek(0)
        if not compressed:
            yield raw
            return
        with zstandard.ZstdDecompressor().stream_reader(raw) as reader:
            yield reader
