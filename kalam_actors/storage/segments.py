"""The Parquet segment format: one file per flush (per user in USER tables), never modified.

Columns: ``user_id`` (``""`` outside USER tables), ``pk`` (the primary key as JSON text),
``seq`` (engine-wide version number), ``deleted`` (soft-delete marker), ``ts`` (write time, µs)
and ``data`` (the row as JSON text). Rows stay JSON so that tables need no fixed schema.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Final

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .errors import CorruptSegment

__all__ = [
    "SEGMENT_SCHEMA",
    "build_segment",
    "fsync_dir",
    "iter_segment",
    "latest_per_key",
    "parquet_rows",
    "read_segment",
    "schema_pairs",
    "write_segment",
]

SEGMENT_SCHEMA: Final = pa.schema(
    [
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("pk", pa.string(), nullable=False),
        pa.field("seq", pa.int64(), nullable=False),
        pa.field("deleted", pa.bool_(), nullable=False),
        pa.field("ts", pa.int64(), nullable=False),
        pa.field("data", pa.string(), nullable=False),
    ]
)


def schema_pairs() -> tuple[tuple[str, str], ...]:
    """The segment schema as ``(name, type)`` pairs, for manifests."""
    return tuple((f.name, str(f.type)) for f in SEGMENT_SCHEMA)


def build_segment(
    user_ids: Sequence[str],
    pks: Sequence[str],
    seqs: Sequence[int],
    deleted: Sequence[bool],
    ts: Sequence[int],
    data: Sequence[str],
) -> pa.Table:
    """An Arrow table in the segment schema, built column by column."""
    return pa.Table.from_arrays(
        [
            pa.array(user_ids, pa.string()),
            pa.array(pks, pa.string()),
            pa.array(seqs, pa.int64()),
            pa.array(deleted, pa.bool_()),
            pa.array(ts, pa.int64()),
            pa.array(data, pa.string()),
        ],
        schema=SEGMENT_SCHEMA,
    )


def fsync_dir(path: Path) -> None:
    """Make a rename or unlink in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_segment(path: Path, table: pa.Table, *, durable: bool = True) -> int:
    """Write ``table`` to ``path`` atomically: a temporary file in the same folder, fsync,
    rename, fsync of the folder (the fsyncs only when ``durable``). Returns the file size."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{path.name}")
    try:
        with open(tmp, "wb") as f:
            pq.write_table(table, f, compression="zstd")
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except Exception:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    if durable:
        fsync_dir(path.parent)
    return path.stat().st_size


def read_segment(path: Path, columns: Sequence[str] | None = None) -> pa.Table:
    """Read a segment (or some of its columns).

    Raises:
        FileNotFoundError: when the file is gone (a concurrent swap removed it; re-read the
            manifest and try again).
        CorruptSegment: when it is not a segment.
    """
    try:
        table = pq.read_table(path, columns=list(columns) if columns is not None else None)
    except FileNotFoundError:
        raise
    except (OSError, pa.ArrowException) as exc:
        raise CorruptSegment(f"cannot read segment {path.name}: {exc}") from exc
    if columns is None and not table.schema.equals(SEGMENT_SCHEMA):
        raise CorruptSegment(f"segment {path.name} has schema {table.schema}, not the segment "
                             f"schema")
    return table


def iter_segment(path: Path, columns: Sequence[str], batch_rows: int) -> Iterator[pa.RecordBatch]:
    """Read some columns of a segment ``batch_rows`` rows at a time, so that checking a file
    holds one batch in memory, not the whole file.

    Raises:
        CorruptSegment: when it cannot be read.
    """
    try:
        with pq.ParquetFile(path) as parquet:
            yield from parquet.iter_batches(batch_size=batch_rows, columns=list(columns))
    except (OSError, pa.ArrowException) as exc:
        raise CorruptSegment(f"cannot read segment {path.name}: {exc}") from exc


def parquet_rows(meta: Any, name: str) -> int:
    """The rows a Parquet file's metadata declares, from metadata alone (nothing decoded).

    Raises:
        CorruptSegment: when the file total and its row groups disagree (a reader trusting
            the total could be made to decode far more rows than it checked).
    """
    rows = int(meta.num_rows)
    groups = sum(int(meta.row_group(i).num_rows) for i in range(meta.num_row_groups))
    if rows != groups:
        raise CorruptSegment(f"{name} declares {rows} rows but its row groups hold {groups}")
    return rows


def check_segment_file(path: Path) -> Any:
    """Check that ``path`` is a Parquet file in the segment schema whose row count is
    consistent (see :func:`parquet_rows`); return its metadata.

    Raises:
        CorruptSegment: naming the file and the problem.
    """
    try:
        meta = pq.read_metadata(path)
        schema = meta.schema.to_arrow_schema()
    except (OSError, pa.ArrowException) as exc:
        raise CorruptSegment(f"{path.name} is not a readable Parquet file: {exc}") from exc
    if not schema.remove_metadata().equals(SEGMENT_SCHEMA):
        raise CorruptSegment(f"{path.name} is not in the segment schema: {schema}")
    parquet_rows(meta, path.name)
    return meta


def latest_per_key(table: pa.Table) -> pa.Table:
    """Keep only the highest ``seq`` of each ``(user_id, pk)`` (``seq`` is unique)."""
    if table.num_rows == 0:
        return table
    maxes = table.group_by(["user_id", "pk"]).aggregate([("seq", "max")])["seq_max"]
    return table.filter(pc.is_in(table["seq"], value_set=maxes.combine_chunks()))
