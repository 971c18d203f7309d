"""Analysis of labrig run directories: pure functions usable from Python.

```python
from labrig.protocols.analysis import analyze, load_run, write_report
a = analyze("runs/20250101-120000-rate_test-ab12")
a.cycles            # per-cycle table (pandas), recomputed from the time series
a.key_numbers()     # initial CE, capacities, retention, loss per cycle, ...
write_report(a, Path("report.html"))
```

Imports nothing else of labrig: a run directory is read as files (Parquet, JSON).
"""

from .bdf import BDF_COLUMNS, export_bdf
from .cycling import (
    FadeFit,
    cycle_table,
    default_reference_cycle,
    fade_rate,
    rate_table,
    retention,
)
from .dqdv import DqdvCurve, dqdv
from .eis import DEFAULT_CIRCUIT, EisFit, fit_spectrum, guess_parameters, resistance_track
from .gitt import GittGeometry, gitt_analysis, weppner_huggins_D
from .loader import RunData, RunDirError, Spectrum, TimeSeries, load_run, load_spectrum
from .report import compare_figure, group_key, report_figure, write_compare, write_report
from .segments import Segments, dc_resistance, rest_relaxation, segment_series
from .summary import AnalysisOptions, RunAnalysis, analyze, choose_cycles

__all__ = [
    "BDF_COLUMNS",
    "DEFAULT_CIRCUIT",
    "AnalysisOptions",
    "DqdvCurve",
    "EisFit",
    "FadeFit",
    "GittGeometry",
    "RunAnalysis",
    "RunData",
    "RunDirError",
    "Segments",
    "Spectrum",
    "TimeSeries",
    "analyze",
    "choose_cycles",
    "compare_figure",
    "cycle_table",
    "dc_resistance",
    "default_reference_cycle",
    "dqdv",
    "export_bdf",
    "fade_rate",
    "fit_spectrum",
    "gitt_analysis",
    "group_key",
    "guess_parameters",
    "load_run",
    "load_spectrum",
    "rate_table",
    "report_figure",
    "resistance_track",
    "rest_relaxation",
    "retention",
    "segment_series",
    "weppner_huggins_D",
    "write_compare",
    "write_report",
]
