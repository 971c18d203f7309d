"""Names in a run directory that both the writer (the orchestrator) and the readers
(analysis, exports) rely on. Units are part of every column name."""

from __future__ import annotations

__all__ = ["CYCLE_COLUMNS", "DATA_COLUMNS"]

#: time series columns, in order (data/part-*.parquet)
DATA_COLUMNS: tuple[str, ...] = (
    "time_s",
    "cycle",
    "step",
    "step_type",
    "current_A",
    "voltage_V",
    "charge_capacity_Ah",
    "discharge_capacity_Ah",
    "temperature_C",
    "record_seq",
)

#: per-cycle table columns, in order (cycles.parquet, cycles.csv)
CYCLE_COLUMNS: tuple[str, ...] = (
    "cycle",
    "charge_c_rate",
    "discharge_c_rate",
    "charge_capacity_mAh",
    "discharge_capacity_mAh",
    "charge_capacity_mAh_g",
    "discharge_capacity_mAh_g",
    "coulombic_efficiency_pct",
    "mean_discharge_voltage_V",
    "discharge_energy_mWh",
    "charge_energy_mWh",
    "charge_time_s",
    "discharge_time_s",
    "end_time_s",
    "block",
)
