"""Vendor files -> labrig's records: MACCOR, BioLogic, Neware, Arbin and BDF.

```python
from pathlib import Path
from labrig.protocols.ingest import read_vendor_file, normalize
vd = read_vendor_file(Path("cell7.mpr"))     # the vendor's records, labrig's units and sign
run = normalize(vd)                          # labrig's cycles, step types, capacity counters
```

Pure data transformations: reading a file and turning it into columns. Writing the run
directory is the orchestrator's job (``labrig import``). Every failure is an
:class:`IngestError` whose message names the file and what was expected.

| format | reader |
|---|---|
| MACCOR text export, EIS export | labrig's own (:mod:`.maccor`, Arrow CSV) |
| BioLogic ``.mpr`` | galvani |
| BioLogic ``.mpt`` | labrig's own (:mod:`.biologic`, pandas C parser) |
| Neware ``.nda`` / ``.ndax`` | fastnda |
| Arbin ``.res`` | mdbtools (``mdb-export``) |
| BDF CSV | labrig's own (:mod:`.bdf`, Arrow CSV) |
"""

from __future__ import annotations

import re
from pathlib import Path

from ._model import IngestError, VendorData, VendorSpectrum
from .maccor_eis import attach_eis, eis_siblings, is_maccor_eis, same_test
from .normalize import NormalizedRun, normalize, spectrum_cycle

__all__ = [
    "FORMATS",
    "IngestError",
    "NormalizedRun",
    "VendorData",
    "VendorSpectrum",
    "attach_eis",
    "detect_format",
    "eis_siblings",
    "is_maccor_eis",
    "normalize",
    "read_vendor_file",
    "same_test",
    "spectrum_cycle",
]

#: format name -> what it is, for messages and ``labrig import --help``
FORMATS: dict[str, str] = {
    "maccor": "MACCOR text export (.txt, .csv, .NNN) or EIS export",
    "biologic-mpr": "BioLogic EC-Lab .mpr",
    "biologic-mpt": "BioLogic EC-Lab .mpt",
    "neware": "Neware .nda / .ndax",
    "arbin": "Arbin .res",
    "bdf": "Battery Data Format CSV (.bdf.csv, .csv)",
}

_MACCOR_EXT = re.compile(r"^\.\d{3}$")


def detect_format(path: Path) -> str:
    """The format of ``path`` from its extension, checked against its first bytes."""
    from .arbin import ACCESS_MAGIC
    from .bdf import looks_like_bdf
    from .biologic import MPR_MAGIC
    from .maccor import looks_like_maccor

    if not path.is_file():
        raise IngestError(path, "no such file")
    ext = path.suffix.lower()
    with open(path, "rb") as fh:
        head = fh.read(64)
    if ext == ".mpr" or head.startswith(MPR_MAGIC):
        return "biologic-mpr"
    if ext == ".mpt":
        return "biologic-mpt"
    if ext in (".nda", ".ndax"):
        return "neware"
    if ext == ".res" or any(m in head[:32] for m in ACCESS_MAGIC):
        return "arbin"
    if ext in (".csv", ".txt", ".tsv") or _MACCOR_EXT.match(ext) or ".eda" in path.name.lower():
        if looks_like_bdf(path):
            return "bdf"
        if looks_like_maccor(path):
            return "maccor"
        if head.startswith((b"EC-Lab ASCII FILE", b"BT-Lab ASCII FILE")):
            return "biologic-mpt"
        raise IngestError(
            path, "not a known export: expected a MACCOR text export (header with Cyc#, "
            "Step, Amp-hr, Amps, Volts, State) or a BDF CSV (Test Time / s, Voltage / V, "
            "Current / A)")  # fmt: skip
    known = ".mpr, .mpt, .nda, .ndax, .res, .csv, .txt or a MACCOR .NNN export"
    raise IngestError(path, f"unknown file type {ext or '(no extension)'!r}; expected {known}")


def read_vendor_file(path: Path, fmt: str | None = None) -> VendorData:
    """Read one vendor file (format detected unless given)."""
    path = Path(path)
    fmt = fmt or detect_format(path)
    if fmt == "maccor":
        from .maccor import read_maccor

        return read_maccor(path)
    if fmt == "biologic-mpr":
        from .biologic import read_mpr

        return read_mpr(path)
    if fmt == "biologic-mpt":
        from .biologic import read_mpt

        return read_mpt(path)
    if fmt == "neware":
        from .neware import read_neware

        return read_neware(path)
    if fmt == "arbin":
        from .arbin import read_res

        return read_res(path)
    if fmt == "bdf":
        from .bdf import read_bdf

        return read_bdf(path)
    raise IngestError(path, f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")
