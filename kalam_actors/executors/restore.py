"""Restore: unpack a backup archive under hard limits, checking it as it streams, then install
it as a table atomically.

An archive is read as hostile. Its first member must be the manifest, checked in full before
anything else is read: the table through the same checks as ``create_table``; every file's
name, size, checksum, row count and owner; the totals against the engine's
:class:`~kalam_actors.storage.interface.RestoreLimits` and its free disk space. Each later
member is refused at its header unless it is a regular file (no link, device, fifo or sparse
file) that the manifest lists, with exactly the declared size. Its bytes go through a copy that
stops before writing more than declared; its checksum, then its row count from the Parquet
metadata (nothing decoded), must match. The tar stream itself is capped, so neither a
decompression bomb nor an oversized tar header makes the restore read more than the manifest
accounts for. A bad archive is a permanent failure: the job ends Failed, naming what is wrong.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import re
import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING, Any, ClassVar, Final, TypeVar, cast

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import zstandard

from ..ids import JobType
from ..model import JobDecision
from ..storage.errors import CorruptSegment, InvalidName, LimitExceeded
from ..storage.interface import (
    ImportFile,
    ImportResult,
    RestoreLimits,
    StorageEngine,
    TableInfo,
    TableType,
)
from ..storage.names import is_name
from ..storage.segments import parquet_rows
from ..storage.tables import check_table_spec
from . import _params as p
from ._base import EngineExecutor
from .backup import ARCHIVE_FORMAT, ARCHIVE_VERSION, MANIFEST_NAME, MEMBER_RE, sha256_file

if TYPE_CHECKING:
    from ..context import JobContext

__all__ = ["RestoreExecutor"]

T = TypeVar("T")

_ZSTD_MAGIC: Final = b"\x28\xb5\x2f\xfd"
_MAX_MANIFEST: Final = 16 << 20
_COPY_CHUNK: Final = 1 << 20
# Tar stream bytes allowed per member besides its data: its 512-byte header, PAX records, the
# padding to a block, and tarfile's read-ahead of one 10 KiB record.
_HEADER_ROOM: Final = 64 << 10
# Backup compresses at level 3 (a 2 MiB window); a frame asking for a bigger window than this
# would make the decompressor allocate that much, so it is refused.
_MAX_WINDOW: Final = 32 << 20
_SHA256_RE: Final = re.compile(r"[0-9a-f]{64}")
_PLAIN: Final = (tarfile.REGTYPE, tarfile.AREGTYPE)
_NOT_PLAIN: Final = {
    tarfile.SYMTYPE: "a symbolic link", tarfile.LNKTYPE: "a hard link",
    tarfile.CHRTYPE: "a character device", tarfile.BLKTYPE: "a block device",
    tarfile.FIFOTYPE: "a fifo", tarfile.CONTTYPE: "a contiguous file",
    tarfile.DIRTYPE: "a directory", tarfile.GNUTYPE_SPARSE: "a sparse file",
}
# The shared table checks name ``table_name`` what the manifest calls ``name``.
_TABLE_KEYS: Final = {"table_name": "name"}
_KIND_NAMES: Final = {dict: "an object", list: "a list", str: "a string", int: "a whole number"}


class _Corrupt(Exception):
    """The archive fails a check; nothing has been installed."""

    verdict: ClassVar[str] = "is corrupt"


class _TooLarge(_Corrupt):
    """The archive is more than the engine's restore limits (or its free disk) allow."""

    verdict: ClassVar[str] = "exceeds this engine's restore limits"


class _Stopped(Exception):
    """Cancelled while reading the archive."""


@dataclasses.dataclass(frozen=True, slots=True)
class _Entry:
    """One data file as the manifest declares it."""

    name: str
    bytes: int
    sha256: str
    rows: int
    user_id: str


@dataclasses.dataclass(frozen=True, slots=True)
class _Manifest:
    """A checked manifest: what the restore relies on, and nothing else."""

    table: TableInfo
    files: tuple[_Entry, ...]
    visible_rows: int

    @property
    def data_bytes(self) -> int:
        return sum(f.bytes for f in self.files)

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.files)


@dataclasses.dataclass(frozen=True, slots=True)
class _Plan:
    """Which archive goes where."""

    archive: Path
    sha256: str
    ns: str
    table: str
    overwrite: bool

    @property
    def target(self) -> str:
        return f"{self.ns}:{self.table}"


class RestoreExecutor(EngineExecutor):
    """Parameters: ``backup_location`` (an archive written by Backup, or the folder holding
    them, in which case the newest is used; under the engine's backup roots),
    ``target_namespace``, ``target_table_name``, ``overwrite`` (default false).

    The archive is checked as it is unpacked (see the module documentation; limits come from
    the engine's ``restore_limits``, else the defaults of ``RestoreLimits``); an existing
    target is refused unless ``overwrite``, and then replaced in one transaction. Cancellable
    until that transaction; no partial table is ever visible. A re-run after a crash is safe:
    a table this job already restored is recognised and left alone.
    """

    job_type: ClassVar[JobType] = JobType.RESTORE
    name: ClassVar[str] = "restore"
    cancellable: ClassVar[bool] = True
    rerun_on_recovery: ClassVar[bool] = True

    def _check_params(self, params: dict[str, Any]) -> None:
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
        plan = self._plan(ctx.params, engine)
        if isinstance(plan, JobDecision):
            return self._log(ctx, plan)
        done = self._existing(ctx, engine, plan)
        if done is not None:
            return self._log(ctx, done)
        ctx.log_info(f"restoring {plan.archive} into {plan.target}")
        with engine.scratch_dir(f"restore-{ctx.job_id}") as scratch:
            try:
                manifest = _Unpacker(ctx, scratch, _limits(engine)).unpack(plan.archive)
                if ctx.cancelled:
                    raise _Stopped
                result = self._install(ctx, engine, plan, manifest, scratch)
            except _Corrupt as exc:
                return self._log(ctx, JobDecision.failed(
                    f"backup archive {plan.archive.name} {exc.verdict}: {exc}; target "
                    f"{plan.target} left untouched"))
            except _Stopped:
                return p.cancelled_decision(ctx, f"restore stopped; {plan.target} untouched")
        replaced = ", replacing the existing table" if result.replaced else ""
        message = (f"restored {manifest.table.table_id} from {plan.archive.name} into "
                   f"{plan.target}: {manifest.visible_rows} rows ({result.rows} stored versions "
                   f"in {result.files} segments){replaced}")
        steps = len(manifest.files) + 1
        ctx.report_progress(steps, steps, "restored")
        return self._log(ctx, JobDecision.completed(message))

    def _plan(self, params: dict[str, Any], engine: StorageEngine) -> _Plan | JobDecision:
        self._check_params(params)
        location = p.resolve_location(p.location(params, "backup_location"),
                                      engine.backup_roots, "backup_location")
        archive = self._find_archive(location)
        if isinstance(archive, JobDecision):
            return archive
        # A file picked from a folder may be a symlink out of the roots: check it too.
        archive = p.resolve_location(PurePosixPath(archive), engine.backup_roots,
                                     "backup_location")
        return _Plan(archive, sha256_file(archive), p.name(params, "target_namespace"),
                     p.name(params, "target_table_name"), p.flag(params, "overwrite"))

    @staticmethod
    def _existing(ctx: JobContext, engine: StorageEngine, plan: _Plan) -> JobDecision | None:
        """The decision when the target exists: done already (by this job, from this
        archive: a re-run after a crash), or refused without ``overwrite``."""
        existing = engine.table_info(plan.ns, plan.table)
        if existing is None:
            return None
        origin = existing.restored_from or {}
        if origin.get("job_id") == str(ctx.job_id) and origin.get("archive_sha256") == plan.sha256:
            return JobDecision.completed(
                f"{plan.target} was already restored from {plan.archive.name} by this job")
        if not plan.overwrite:
            return JobDecision.failed(
                f"target table {plan.target} exists; set overwrite=true to replace it")
        return None

    @staticmethod
    def _install(ctx: JobContext, engine: StorageEngine, plan: _Plan, manifest: _Manifest,
                 scratch: Path) -> ImportResult:
        files = [ImportFile(scratch / f.name, f.user_id) for f in manifest.files]
        try:
            return engine.import_table(
                plan.ns, plan.table, like=manifest.table, files=files, overwrite=plan.overwrite,
                restored_from={"archive": str(plan.archive), "archive_sha256": plan.sha256,
                               "job_id": str(ctx.job_id), "source": manifest.table.table_id})
        except LimitExceeded as exc:
            raise _TooLarge(str(exc)) from None
        except (CorruptSegment, InvalidName) as exc:
            raise _Corrupt(str(exc)) from None

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


def _limits(engine: object) -> RestoreLimits:
    """The engine's restore limits; an engine that declares none gets the defaults."""
    limits = getattr(engine, "restore_limits", None)
    return limits if isinstance(limits, RestoreLimits) else RestoreLimits()


# -- the manifest ---------------------------------------------------------------------------

def _parse_manifest(body: bytes, limits: RestoreLimits) -> _Manifest:
    """Every field the restore relies on, checked; a missing or bad one is named."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise _Corrupt(f"manifest.json is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise _Corrupt("manifest.json is not a JSON object")
    if doc.get("format") != ARCHIVE_FORMAT or doc.get("version") != ARCHIVE_VERSION:
        raise _Corrupt(f"unknown format {_short(doc.get('format'))} "
                       f"version {_short(doc.get('version'))}")
    table = _table(_field(doc, "table", dict, "table"))
    files = tuple(_entry(raw, f"files[{i}]", table.table_type)
                  for i, raw in enumerate(_field(doc, "files", list, "files")))
    names = [f.name for f in files]
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise _Corrupt(f"manifest.json: files lists {', '.join(twice)} twice")
    manifest = _Manifest(table, files, _count(_field(doc, "rows", dict, "rows"), "visible",
                                              "rows.visible"))
    _check_limits(manifest, limits)
    return manifest


def _table(raw: dict[str, Any]) -> TableInfo:
    """The manifest's table, through the very checks ``create_table`` makes."""
    try:
        return check_table_spec(raw.get("namespace"), raw.get("name"), raw.get("table_type"),
                                primary_key=raw.get("primary_key"),
                                ttl_seconds=raw.get("ttl_seconds"), options=raw.get("options"))
    except InvalidName as exc:
        key = _TABLE_KEYS.get(exc.field or "", exc.field)
        raise _Corrupt(f"manifest.json: table.{key}: {exc}") from None


def _entry(raw: object, where: str, kind: TableType) -> _Entry:
    if not isinstance(raw, dict):
        raise _Corrupt(f"manifest.json: {where} must be an object, not {_short(raw)}")
    name = _field(raw, "name", str, f"{where}.name")
    if MEMBER_RE.fullmatch(name) is None:
        raise _Corrupt(f"manifest.json: {where}.name is a bad file name {_short(name)}")
    sha = _field(raw, "sha256", str, f"{where}.sha256")
    if _SHA256_RE.fullmatch(sha) is None:
        raise _Corrupt(f"manifest.json: {where}.sha256 is not a hex SHA-256: {_short(sha)}")
    user = _field(raw, "user_id", str, f"{where}.user_id")
    if not (is_name(user) if kind is TableType.USER else user == ""):
        raise _Corrupt(f"manifest.json: {where}.user_id {_short(user)} is not an owner a "
                       f"{kind.value} table can have")
    return _Entry(name, _count(raw, "bytes", f"{where}.bytes"), sha,
                  _count(raw, "rows", f"{where}.rows"), user)


def _field(obj: dict[str, Any], key: str, kind: type[T], where: str) -> T:
    if key not in obj:
        raise _Corrupt(f"manifest.json: {where} is missing")
    value = obj[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise _Corrupt(f"manifest.json: {where} must be {_KIND_NAMES[kind]}, not "
                       f"{_short(value)}")
    return value


def _count(obj: dict[str, Any], key: str, where: str) -> int:
    value = _field(obj, key, int, where)
    if value < 0:
        raise _Corrupt(f"manifest.json: {where} must be >= 0, not {value}")
    return value


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:77]}..."


def _check_limits(manifest: _Manifest, limits: RestoreLimits) -> None:
    for f in manifest.files:
        if f.rows > limits.max_file_rows:
            raise _TooLarge(f"{f.name} declares {f.rows} rows, more than the limit of "
                            f"{limits.max_file_rows} rows per file (max_file_rows)")
    if manifest.rows > limits.max_total_rows:
        raise _TooLarge(f"it declares {manifest.rows} rows, more than the limit of "
                        f"{limits.max_total_rows} (max_total_rows)")
    if manifest.data_bytes > limits.max_total_bytes:
        raise _TooLarge(f"it declares {manifest.data_bytes} bytes of data files, more than "
                        f"the limit of {limits.max_total_bytes} (max_total_bytes)")


# -- the archive ----------------------------------------------------------------------------

class _Budget:
    """The archive's tar stream, refusing to yield more than ``limit`` bytes in all, so that
    neither a decompression bomb nor an oversized tar header (which tarfile reads whole into
    memory) makes the restore read more than the manifest accounts for."""

    def __init__(self, raw: IO[bytes], limit: int) -> None:
        self._raw = raw
        self._limit = limit
        self._used = 0

    def allow(self, more: int) -> None:
        self._limit += more

    def read(self, size: int = -1) -> bytes:
        # One byte past the limit is enough to know that the archive holds more.
        want = min(_COPY_CHUNK if size < 0 else size, self._limit - self._used + 1)
        try:
            data = self._raw.read(want)
        except (OSError, zstandard.ZstdError) as exc:
            raise _Corrupt(f"cannot read it: {exc}") from None
        self._used += len(data)
        if self._used > self._limit:
            raise _Corrupt(f"it holds more than its manifest accounts for (stopped reading "
                           f"after {self._limit} bytes)")
        return data


class _Unpacker:
    """Streams one archive into a scratch folder, checking it as it goes."""

    def __init__(self, ctx: JobContext, into: Path, limits: RestoreLimits) -> None:
        self._ctx = ctx
        self._into = into
        self._limits = limits
        self._seen: set[str] = set()

    def unpack(self, archive: Path) -> _Manifest:
        """Raises _Corrupt (or _TooLarge) naming the first problem, _Stopped on a cancel."""
        try:
            with _opened(archive) as raw:
                stream = _Budget(raw, _MAX_MANIFEST + _HEADER_ROOM)
                # "r|": a plain tar stream, read forward once; never a compression tarfile
                # would pick by itself.
                with tarfile.open(fileobj=cast("IO[bytes]", stream), mode="r|") as tar:
                    return self._unpack(tar, stream)
        except (tarfile.TarError, EOFError) as exc:
            raise _Corrupt(f"cannot read it: {exc}") from None

    def _unpack(self, tar: tarfile.TarFile, stream: _Budget) -> _Manifest:
        members = iter(tar)
        manifest = self._manifest(tar, next(members, None))
        stream.allow(sum(_blocks(f.bytes) + _HEADER_ROOM for f in manifest.files)
                     + _HEADER_ROOM)
        self._check_room(manifest)
        pending = {f.name: f for f in manifest.files}
        total = len(manifest.files)
        for member in members:
            entry = self._expected(member, pending)
            if entry is not None:
                self._write(tar, member, entry)
                done = total - len(pending)
                self._ctx.report_progress(done, total + 1, f"verified {done} of {total} files")
        if pending:
            raise _Corrupt(f"archive members and manifest disagree on "
                           f"{', '.join(sorted(pending))}")
        return manifest

    def _manifest(self, tar: tarfile.TarFile, member: tarfile.TarInfo | None) -> _Manifest:
        # Backup writes the manifest first, so every later member can be checked against it
        # before a byte of it is written.
        if member is None or member.name != MANIFEST_NAME:
            raise _Corrupt("its first member is not manifest.json")
        _check_plain(member)
        if member.size > _MAX_MANIFEST:
            raise _Corrupt("manifest.json is implausibly large")
        self._seen.add(MANIFEST_NAME)
        return _parse_manifest(_content(tar, member).read(_MAX_MANIFEST + 1), self._limits)

    def _check_room(self, manifest: _Manifest) -> None:
        free = shutil.disk_usage(self._into).free
        if manifest.data_bytes > free:
            raise _TooLarge(f"its {p.human_bytes(manifest.data_bytes)} of data files do not "
                            f"fit in the {p.human_bytes(free)} free on the engine's disk")

    def _expected(self, member: tarfile.TarInfo, pending: dict[str, _Entry]) -> _Entry | None:
        """The manifest entry ``member`` must match (None for the ``data`` folder itself);
        any other member is refused at its header, before a byte of it is read."""
        if self._ctx.cancelled:
            raise _Stopped
        name = member.name
        if member.isdir() and name == "data":
            return None
        if name != MANIFEST_NAME and MEMBER_RE.fullmatch(name) is None:
            raise _Corrupt(f"unexpected member {name!r}")
        _check_plain(member)
        if name in self._seen:
            raise _Corrupt(f"member {name!r} appears twice")
        self._seen.add(name)
        entry = pending.pop(name, None)
        if entry is None:
            raise _Corrupt(f"archive members and manifest disagree on {name}")
        if member.size != entry.bytes:
            raise _Corrupt(f"member {name} is {member.size} bytes, the manifest declares "
                           f"{entry.bytes}")
        return entry

    def _write(self, tar: tarfile.TarFile, member: tarfile.TarInfo, entry: _Entry) -> None:
        target = self._into / entry.name
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "xb") as out:
            digest = self._copy(_content(tar, member), out, entry)
        if digest != entry.sha256:
            raise _Corrupt(f"checksum mismatch for {entry.name}")
        _check_rows(target, entry)

    def _copy(self, source: IO[bytes], out: IO[bytes], entry: _Entry) -> str:
        """Copy exactly the declared bytes, hashing them; stop before writing one more."""
        digest = hashlib.sha256()
        left = entry.bytes
        while chunk := source.read(min(_COPY_CHUNK, left + 1)):
            if len(chunk) > left:
                raise _Corrupt(f"{entry.name} holds more than the {entry.bytes} bytes the "
                               f"manifest declares")
            if self._ctx.cancelled:
                raise _Stopped
            out.write(chunk)
            digest.update(chunk)
            left -= len(chunk)
        if left:
            raise _Corrupt(f"{entry.name} ends after {entry.bytes - left} of the "
                           f"{entry.bytes} bytes the manifest declares")
        return digest.hexdigest()


def _check_plain(member: tarfile.TarInfo) -> None:
    """Refuse anything but a plain regular file: a link, device or fifo would make the
    restore create something else than a data file, and a sparse file (GNU or PAX) expands
    to far more bytes than the archive stores."""
    if (member.issparse() or member.type == tarfile.GNUTYPE_SPARSE
            or any(key.startswith("GNU.sparse.") for key in member.pax_headers)):
        raise _Corrupt(f"member {member.name!r} is a sparse file")
    if member.type not in _PLAIN:
        kind = _NOT_PLAIN.get(member.type, f"of type {member.type!r}")
        raise _Corrupt(f"member {member.name!r} is {kind}, not a regular file")


def _content(tar: tarfile.TarFile, member: tarfile.TarInfo) -> IO[bytes]:
    source = tar.extractfile(member)
    if source is None:
        raise _Corrupt(f"member {member.name!r} has no content")
    return source


def _check_rows(path: Path, entry: _Entry) -> None:
    """The file's row count, read from its Parquet metadata alone, must be the one declared
    (which the limits allowed): nothing is decoded before that holds."""
    try:
        rows = parquet_rows(pq.read_metadata(path), entry.name)
    except CorruptSegment as exc:
        raise _Corrupt(str(exc)) from None
    except (OSError, pa.ArrowException) as exc:
        raise _Corrupt(f"{entry.name} is not a Parquet file: {exc}") from None
    if rows != entry.rows:
        raise _Corrupt(f"{entry.name} holds {rows} rows, the manifest says {entry.rows}")


def _blocks(size: int) -> int:
    """``size`` rounded up to whole 512-byte tar blocks."""
    return -(-size // 512) * 512


@contextlib.contextmanager
def _opened(archive: Path) -> Iterator[IO[bytes]]:
    with open(archive, "rb") as raw:
        compressed = raw.read(4) == _ZSTD_MAGIC
        raw.seek(0)
        if not compressed:
            yield raw
            return
        decompressor = zstandard.ZstdDecompressor(max_window_size=_MAX_WINDOW)
        with decompressor.stream_reader(raw) as reader:
            yield reader
