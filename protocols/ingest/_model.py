"""What a vendor reader hands over: the records as the vendor counted them, already in SI
units and with labrig's sign of current, plus spectra and whatever metadata the file held.

Cycle numbering, step types and the per-cycle capacity counters are *not* the reader's
business: :func:`protocols.ingest.normalize.normalize` derives them the same way for every
vendor, from the step boundaries and the charge the vendor counted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["IngestError", "VendorData", "VendorSpectrum"]

FloatArr = npt.NDArray[np.float64]
IntArr = npt.NDArray[np.int64]


class IngestError(ValueError):
    """A file that cannot be imported; the message names the file and what was expected."""

    def __init__(self, path: Path | str, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


@dataclass
class VendorSpectrum:
    """One impedance sweep (``z_imag_ohm`` as measured: negative for capacitive arcs)."""

    frequency_Hz: FloatArr
    z_real_ohm: FloatArr
    z_imag_ohm: FloatArr
    source_cycle: int | None = None
    time_s: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class VendorData:
    """A vendor file's content in labrig's units, before cycles are assigned.

    Arrays have one entry per record, in record order:

    - ``time_s`` seconds since the test started;
    - ``current_A`` positive while charging the cell (the reader fixes the vendor's sign);
    - ``voltage_V``; ``temperature_C`` (NaN where the file has none);
    - ``dq_Ah``: charge that flowed into the cell since the previous record (negative while
      discharging), taken from the vendor's own capacity counters where it has them;
    - ``source_cycle`` / ``source_step``: the vendor's cycle and step numbers, unchanged;
    - ``segment``: changes wherever the vendor started a new step (an executed-step
      counter where the vendor has one, else the step number);
    - ``kind_hint``: a step type code of ``protocols.analysis.loader.KIND_NAMES`` where the
      vendor says what the step was (0 where it does not; the sign of the charge decides).
    """

    path: Path
    vendor: str
    reader: str
    reader_version: str
    time_s: FloatArr
    current_A: FloatArr
    voltage_V: FloatArr
    dq_Ah: FloatArr
    source_cycle: IntArr
    source_step: IntArr
    segment: IntArr
    kind_hint: npt.NDArray[np.int8]
    temperature_C: FloatArr | None = None
    spectra: list[VendorSpectrum] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    """What the file says about itself: start time, procedure, channel, cell metadata."""
    cycle_column: str = "cycle"
    """The vendor's name for its cycle counter (written to run.json)."""

    def __len__(self) -> int:
        return int(self.time_s.shape[0])

    @classmethod
    def spectra_only(
        cls, path: Path, vendor: str, reader: str, version: str, spectra: list[VendorSpectrum]
    ) -> VendorData:
        """A file that holds impedance sweeps and no time series."""
        f = np.empty(0, np.float64)
        i = np.empty(0, np.int64)
        return cls(path, vendor, reader, version, f, f, f, f, i, i, i,
                   np.empty(0, np.int8), None, spectra)  # fmt: skip
