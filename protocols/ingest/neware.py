"""Neware ``.nda`` and ``.ndax`` files, read with fastnda (the kept, fast reader of both).

Semantics of fastnda's columns: ``current_mA`` is positive while charging (labrig's sign);
``capacity_mAh`` restarts at every executed step (``step_count``) and carries the sign of
the current; ``step_type`` names the step (``CC_Chg``, ``CV_DChg``, ``Rest``, ...);
``cycle_count`` is Neware's cycle. ``step_index`` (the program's step number) becomes
labrig's ``step``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..analysis.loader import KIND_CODES
from ._model import IngestError, VendorData
from .normalize import step_counter_increments

__all__ = ["read_neware"]


def _hint(step_type: str) -> int:
    s = step_type.lower()
    if "rest" in s:
        return KIND_CODES["rest"]
    if s.startswith("cv_") or s == "cv":
        return KIND_CODES["hold"]
    if "dchg" in s:
        return KIND_CODES["discharge"]
    if "chg" in s:
        return KIND_CODES["charge"]
    return 0


def _import_fastnda() -> Any:
    """fastnda, imported without letting it replace the standard library's zlib.

    Its ``ndax`` module assigns ``isal`` functions to ``zlib.decompress`` and
    ``zlib.decompressobj`` for the whole process; those raise ``IsalError``, not
    ``zlib.error``, so every other user of zlib in labrig (the web cache, gzip) would see
    exceptions it does not expect. fastnda then reads with the standard zlib.
    """
    import zlib

    kept = zlib.decompress, zlib.decompressobj
    try:
        import fastnda
        import fastnda.ndax  # the module that does the assigning, imported on first read
    finally:
        zlib.decompress, zlib.decompressobj = kept
    return fastnda


def read_neware(path: Path) -> VendorData:
    """Read a Neware ``.nda`` or ``.ndax`` file."""
    from importlib import metadata

    fastnda = _import_fastnda()
    try:
        df: Any = fastnda.read(str(path))
    except Exception as exc:  # fastnda raises bare Exceptions, zip and struct errors alike
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise IngestError(path, f"damaged or unsupported Neware file (fastnda: {why})") from None
    need = ("total_time_s", "voltage_V", "current_mA", "capacity_mAh", "cycle_count",
            "step_count", "step_index", "step_type")  # fmt: skip
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise IngestError(path, f"Neware file without the column(s) {', '.join(missing)}")
    if df.height == 0:
        raise IngestError(path, "Neware file with no records")

    def col(name: str, dtype: Any = np.float64) -> Any:
        return df.get_column(name).to_numpy().astype(dtype, copy=False)

    names = df.get_column("step_type").cast(str)
    uniq = names.unique().to_list()
    lut = {u: _hint(str(u)) for u in uniq}
    codes = names.replace_strict(lut, return_dtype=int).to_numpy().astype(np.int8)
    current = col("current_mA") * 1e-3
    segment = col("step_count", np.int64)
    sign = np.where(codes == KIND_CODES["charge"], 1.0,
                    np.where(codes == KIND_CODES["discharge"], -1.0, np.sign(current)))  # fmt: skip
    dq = step_counter_increments(col("capacity_mAh") * 1e-3, segment) * sign
    meta: dict[str, Any] = {}
    if "unix_time_s" in df.columns:
        from datetime import UTC, datetime

        t0 = float(df.get_column("unix_time_s")[0])
        if np.isfinite(t0) and t0 > 0:
            meta["test_date"] = datetime.fromtimestamp(t0, UTC).isoformat()
    return VendorData(
        path=path, vendor="Neware", reader="fastnda", reader_version=metadata.version("fastnda"),
        time_s=col("total_time_s"), current_A=current, voltage_V=col("voltage_V"), dq_Ah=dq,
        source_cycle=col("cycle_count", np.int64), source_step=col("step_index", np.int64),
        segment=segment, kind_hint=codes, meta=meta, cycle_column="cycle_count",
    )  # fmt: skip
