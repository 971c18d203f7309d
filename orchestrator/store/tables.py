"""Arrow tables of a run's records: the schema, conversions and small file helpers."""

from __future__ import annotations

import enum
import functools
import os
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from labrig.protocols.rundir import DATA_COLUMNS

SCHEMA = pa.schema(
    [
        ("time_s", pa.float64()),
        ("cycle", pa.int32()),
        ("step", pa.int32()),
        ("step_type", pa.dictionary(pa.int8(), pa.string())),
        ("current_A", pa.float64()),
        ("voltage_V", pa.float64()),
        ("charge_capacity_Ah", pa.float64()),
        ("discharge_capacity_Ah", pa.float64()),
        ("temperature_C", pa.float64()),
        ("record_seq", pa.int64()),
    ]
)


def atomic_write_bytes(path: Path, data: bytes, durable: bool) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        if durable:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# (name, Arrow type) of each column in DATA_COLUMNS order, looked up once
_COLUMN_TYPES = tuple((name, SCHEMA.field(name).type) for name in DATA_COLUMNS)


def to_table(cols: Mapping[str, npt.NDArray[Any]]) -> pa.Table:
    arrays = [
        kinds(np.asarray(cols[name]))
        if name == "step_type"
        else pa.array(np.asarray(cols[name]), type=type_)
        for name, type_ in _COLUMN_TYPES
    ]
    return pa.Table.from_arrays(arrays, schema=SCHEMA)


def concat_cols(parts: Sequence[Mapping[str, npt.NDArray[Any]]]) -> pa.Table:
    return to_table(joined_cols(parts))


def joined_cols(parts: Sequence[Mapping[str, npt.NDArray[Any]]]) -> Mapping[str, npt.NDArray[Any]]:
    """Parts of rows (``append_records``' arrays) as one set of arrays."""
    if len(parts) == 1:
        return parts[0]
    return {c: np.concatenate([p[c] for p in parts]) for c in DATA_COLUMNS}


def checked_batch(cols: Mapping[str, npt.NDArray[Any]]) -> tuple[pa.RecordBatch, int]:
    """The rows as one record batch and its :func:`values_crc`, in one pass over the
    arrays: a column whose array already has the schema's type is checksummed as it is
    (the bytes Arrow holds), the others as Arrow converted them."""
    arrays: list[pa.Array] = []
    crc = 0
    for name, type_ in _COLUMN_TYPES:
        data = np.asarray(cols[name])
        if name == "step_type":
            arr = kinds(data)
            crc = zlib.crc32(_kinds_text(arr), crc)
        else:
            arr = pa.array(data, type=type_)
            same = data.dtype == _NUMPY_TYPES.get(type_) and data.flags.c_contiguous
            crc = zlib.crc32(data.data if same else _values(arr, in_place=type_ in _IN_PLACE), crc)
        arrays.append(arr)
    return pa.RecordBatch.from_arrays(arrays, schema=SCHEMA), crc


def unique_after(table: pa.Table, after_seq: int) -> pa.Table:
    """Rows with ``record_seq > after_seq``, each seq once, in seq order."""
    seq = table.column("record_seq").to_numpy()
    if seq.size and bool(np.all(seq[1:] > seq[:-1])) and int(seq[0]) > after_seq:
        return table
    values, first = np.unique(seq, return_index=True)
    return table.take(pa.array(first[values > after_seq]))


def kind_values(col: pa.ChunkedArray) -> npt.NDArray[Any]:
    """The step-type column back as Python strings (object array), decoding each
    chunk's small dictionary once instead of every row."""
    if not col.chunks:
        return np.empty(0, dtype=object)
    if pa.types.is_dictionary(col.type) and col.null_count == 0:
        # one dictionary for all chunks (staged batches each carry their own), then one
        # lookup of every row's index
        col = col.unify_dictionaries()
        values = np.array(col.chunks[0].dictionary.to_pylist(), dtype=object)
        idx = pa.concat_arrays([c.indices for c in col.chunks]).to_numpy(zero_copy_only=False)
        looked_up: npt.NDArray[Any] = values[idx]
        return looked_up
    strings: npt.NDArray[Any] = col.cast(pa.string()).to_numpy(zero_copy_only=False)
    return strings.astype(object)


def kinds(data: npt.NDArray[Any]) -> pa.Array:
    """The step-type column as the schema's int8 dictionary, built straight from the few
    distinct values (a string array, an encode and a cast cost ten times more)."""
    if data.size and _one_kind(data):  # a collection within one step: the common case
        return pa.DictionaryArray.from_arrays(
            pa.array(np.zeros(data.size, dtype=np.int8)), _kind_dictionary(data[0])
        )
    if data.size > 256:  # a chunk: pandas' hash table, not a Python loop
        import pandas as pd

        codes, uniques = pd.factorize(data, use_na_sentinel=False)
        values = list(uniques)
    else:
        seen: dict[Any, int] = {}
        codes = np.array([seen.setdefault(v, len(seen)) for v in data.tolist()], dtype=np.int64)
        values = list(seen)
    if len(values) <= 127 and all(isinstance(v, str) for v in values):
        return pa.DictionaryArray.from_arrays(
            pa.array(codes.astype(np.int8)), pa.array(values, type=pa.string())
        )
    # many kinds, or a missing one: Arrow's own encoding (nulls stay null)
    return pa.array(data, type=pa.string()).dictionary_encode().cast(SCHEMA.field("step_type").type)


def _one_kind(data: npt.NDArray[Any]) -> bool:
    values = data.tolist()  # Python's count: a tenth of NumPy's compare of objects
    first = values[0]
    return isinstance(first, str) and values.count(first) == len(values)


@functools.lru_cache(maxsize=256)
def _kind_dictionary(kind: str) -> pa.Array:
    return pa.array([kind], type=pa.string())


def table_cols(table: pa.Table) -> dict[str, npt.NDArray[Any]]:
    """A table's columns as the arrays ``append_records`` takes."""
    out: dict[str, npt.NDArray[Any]] = {}
    for c in DATA_COLUMNS:
        col = table.column(c)
        out[c] = kind_values(col) if c == "step_type" else col.to_numpy()
    return out


def values_crc(batch: pa.RecordBatch | pa.Table, crc: int = 0) -> int:
    """A CRC-32 over a batch's values (not its encoding): equal for equal rows however
    Arrow laid them out. Per column in DATA_COLUMNS order: the values' bytes, and the
    step types as one text joined by the unit separator, 0x1F (a missing one as "")."""
    if isinstance(batch, pa.RecordBatch):
        return _batch_crc(batch, crc)
    for name in DATA_COLUMNS:
        col = batch.column(name)
        if name == "step_type":
            text = _SEP.join("" if v is None else str(v) for v in kind_values(col).tolist())
            crc = zlib.crc32(text.encode(), crc)
        else:
            crc = zlib.crc32(np.ascontiguousarray(col.to_numpy()).tobytes(), crc)
    return crc


_SEP = "\x1f"


# column types whose values are read in place (their buffer as it is)
_IN_PLACE = frozenset(
    (
        *(pa.int8(), pa.int16(), pa.int32(), pa.int64()),
        *(pa.uint8(), pa.uint16(), pa.uint32(), pa.uint64()),
        *(pa.float16(), pa.float32(), pa.float64()),
    )
)


def _batch_crc(batch: pa.RecordBatch, crc: int) -> int:
    """:func:`values_crc` of one batch, its arrays read in place: a restart checks every
    staged batch, so this runs once per batch (and once per write)."""
    schema = batch.schema
    plan = _SCHEMA_PLAN if schema.equals(SCHEMA) else _plan(schema)
    for i, how in plan:
        arr = batch.column(i)
        if how is _Read.KINDS:
            crc = zlib.crc32(_kinds_text(arr), crc)
        else:
            crc = zlib.crc32(_values(arr, in_place=how is _Read.IN_PLACE), crc)
    return crc


def _values(arr: pa.Array, *, in_place: bool) -> Any:
    """The values of ``arr`` whose bytes its checksum covers: its buffer as it is, when
    its type allows and nothing is missing, else as the table's column gives them."""
    if in_place and arr.null_count == 0:
        return arr.to_numpy(zero_copy_only=True)
    values = pa.chunked_array([arr]).to_numpy()
    return np.ascontiguousarray(values).tobytes()


class _Read(enum.Enum):
    KINDS = "kinds"  # the step types' text
    IN_PLACE = "in place"  # the values' buffer as it is (when nothing is missing)
    CONVERTED = "converted"  # the values as NumPy gives them


def _plan(schema: pa.Schema) -> tuple[tuple[int, _Read], ...]:
    """Where each of DATA_COLUMNS is in ``schema`` and how its values are read."""
    plan = []
    for name in DATA_COLUMNS:
        i = schema.get_field_index(name)
        if i < 0:
            raise KeyError(f"no column {name!r}")
        type_ = schema.field(i).type
        how = (
            _Read.KINDS
            if name == "step_type"
            else _Read.IN_PLACE
            if type_ in _IN_PLACE
            else _Read.CONVERTED
        )
        plan.append((i, how))
    return tuple(plan)


_SCHEMA_PLAN = _plan(SCHEMA)  # every staged batch's: worked out once

# the NumPy type whose bytes are an Arrow column's values, for the schema's value columns
_NUMPY_TYPES = {t: np.dtype(t.to_pandas_dtype()) for _, t in _COLUMN_TYPES if t in _IN_PLACE}


def _kinds_text(arr: pa.Array) -> bytes:
    """The step types of ``arr`` joined by 0x1F, built from runs of equal kinds: a staged
    batch holds a few steps, each many rows long."""
    if not (pa.types.is_dictionary(arr.type) and arr.null_count == 0 and len(arr)):
        values = kind_values(pa.chunked_array([arr], type=arr.type)).tolist()
        return _SEP.join("" if v is None else str(v) for v in values).encode()
    sep = _SEP.encode()
    words = [("" if w is None else str(w)).encode() + sep for w in arr.dictionary.to_pylist()]
    if len(words) == 1:  # one step type, as most staged batches hold
        return (words[0] * len(arr))[:-1]
    idx = arr.indices.to_numpy(zero_copy_only=True)
    bounds = [0, *(np.flatnonzero(idx[1:] != idx[:-1]) + 1).tolist(), len(idx)]
    codes = idx[bounds[:-1]].tolist()
    runs = [words[c] * (b - a) for c, a, b in zip(codes, bounds, bounds[1:], strict=False)]
    return b"".join(runs)[:-1]


def ipc_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, SCHEMA) as w:
        w.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def from_ipc_bytes(body: bytes) -> pa.Table:
    return pa.ipc.open_stream(pa.py_buffer(body)).read_all()


def csv_cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        if not np.isfinite(v):
            return ""
        return repr(round(v, 10))
    return str(v)
