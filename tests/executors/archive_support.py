"""Hostile backup archives for the restore tests, built by hand from tar headers, zstd frames
and Parquet files, and a meter of what a restore writes."""

from __future__ import annotations

import contextlib
import hashlib
import io
import tarfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import zstandard

from kalam_actors.storage import Engine
from kalam_actors.storage.segments import SEGMENT_SCHEMA

BLOCK = 512
END = b"\0" * (2 * BLOCK)  # a tar stream ends with two zero blocks


def sha(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def read_backup(archive: Path) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The manifest and data members of a genuine, uncompressed backup archive."""
    with tarfile.open(archive) as tar:
        bodies = {m.name: tar.extractfile(m).read()  # type: ignore[union-attr]
                  for m in tar.getmembers()}
    return orjson.loads(bodies.pop("manifest.json")), bodies


def _padded(body: bytes) -> bytes:
    return body + b"\0" * (-len(body) % BLOCK)


def header(name: str, size: int, kind: bytes = tarfile.REGTYPE, **extra: Any) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.type, info.mode = size, kind, 0o644
    for key, value in extra.items():
        setattr(info, key, value)
    return info.tobuf(tarfile.PAX_FORMAT)


def member(name: str, body: bytes, kind: bytes = tarfile.REGTYPE, **extra: Any) -> bytes:
    """One tar member: its header(s) and its padded body."""
    return header(name, len(body), kind, **extra) + _padded(body)


def manifest_member(manifest: dict[str, Any]) -> bytes:
    return member("manifest.json", orjson.dumps(manifest))


def gnu_sparse_member(name: str, stored: bytes, realsize: int) -> bytes:
    """An old-GNU sparse member ('S'): ``stored`` lands at the end of a ``realsize`` file of
    zeros, so a reader that honours the map expands it to ``realsize`` bytes."""
    buf = bytearray(header(name, len(stored))[-BLOCK:])
    buf[156:157] = tarfile.GNUTYPE_SPARSE
    buf[257:265] = b"ustar  \0"
    buf[345:BLOCK] = bytes(BLOCK - 345)
    buf[386:398] = b"%011o\0" % (realsize - len(stored))  # first map entry: offset
    buf[398:410] = b"%011o\0" % len(stored)  # ... and size
    buf[483:495] = b"%011o\0" % realsize
    buf[148:156] = b" " * 8
    buf[148:156] = b"%06o\0 " % sum(buf)
    return bytes(buf) + _padded(stored)


def pax_sparse_member(name: str, stored: bytes, realsize: int, version: str) -> bytes:
    """A PAX sparse member, GNU format 0.1 (map in a PAX record) or 1.0 (map in the data)."""
    hole = realsize - len(stored)
    if version == "0.1":
        pax = {"GNU.sparse.map": f"{hole},{len(stored)}", "GNU.sparse.size": str(realsize)}
        return member(name, stored, pax_headers=pax)
    sparse_map = _padded(f"1\n{hole}\n{len(stored)}\n".encode())
    pax = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.name": name,
           "GNU.sparse.realsize": str(realsize)}
    return member("GNUSparseFile.0/" + name.rsplit("/", 1)[-1], sparse_map + stored,
                  pax_headers=pax)


def zeros(size: int) -> Iterator[bytes]:
    """``size`` zero bytes, a MiB at a time (a bomb is never held in memory whole)."""
    chunk = bytes(1 << 20)
    left = size
    while left:
        yield chunk[:min(left, len(chunk))]
        left -= min(left, len(chunk))


def write_archive(path: Path, parts: Iterable[bytes], *, compress: bool) -> Path:
    """Write tar ``parts`` (then the end-of-archive blocks), zstd-compressed if asked."""
    with open(path, "wb") as raw:
        if not compress:
            for part in parts:
                raw.write(part)
            raw.write(END)
            return path
        with zstandard.ZstdCompressor(level=3).stream_writer(raw, closefd=False) as out:
            for part in parts:
                out.write(part)
            out.write(END)
    return path


def identical_rows_parquet(rows: int, group_rows: int = 1_000_000) -> bytes:
    """A segment-format Parquet file of ``rows`` identical rows: tiny on disk, huge decoded."""
    n = min(rows, group_rows)
    group = pa.Table.from_arrays(
        [pa.repeat(pa.scalar(v, t.type), n) for v, t in zip(
            ["", '"x"', 1, False, 1, '{"id": "x"}'], SEGMENT_SCHEMA, strict=True)],
        schema=SEGMENT_SCHEMA)
    out = io.BytesIO()
    with pq.ParquetWriter(out, SEGMENT_SCHEMA, compression="zstd") as writer:
        for start in range(0, rows, n):
            writer.write_table(group.slice(0, min(n, rows - start)))
    return out.getvalue()


class ScratchMeter:
    """Wraps an engine's ``scratch_dir`` to record the most bytes any scratch folder held
    when it was closed (a restore never deletes a file in it before then)."""

    def __init__(self, engine: Engine) -> None:
        self.peak = 0
        self._real = engine.scratch_dir

    @contextlib.contextmanager
    def __call__(self, label: str) -> Iterator[Path]:
        with self._real(label) as folder:
            try:
                yield folder
            finally:
                size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
                self.peak = max(self.peak, size)


def bytes_written_by_process() -> int:
    """Bytes this process has passed to write() so far (Linux), a check that catches what a
    scratch folder would not: anything written anywhere."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    raise AssertionError("no wchar in /proc/self/io")
