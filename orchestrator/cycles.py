"""Cycle bookkeeping: which cycle each record belongs to, and the per-cycle table.

A cycle is one charge followed by one discharge, counted from 1: a charge step that
comes after a discharge starts a new cycle. Steps in checkpoints that do not count as
cycles (an EIS, a check that must not shift the numbering) leave the counter alone and
are not added to the cycle's figures.

A cycle's ``end_time_s`` is the time of its last record (run time, the clock of the
data's ``time_s``): a cycle that ends with a discharge is known to be over only when the
next charge starts, and then it ended at the record before.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["CycleCounter", "CycleFigures"]


@dataclass
class CycleFigures:
    cycle: int
    charge_Ah: float = 0.0
    discharge_Ah: float = 0.0
    charge_Wh: float = 0.0
    discharge_Wh: float = 0.0
    charge_time_s: float = 0.0
    discharge_time_s: float = 0.0
    charge_c_rate: float | None = None
    discharge_c_rate: float | None = None
    end_time_s: float = 0.0  # the time of the cycle's last record (run time)
    block: str | None = None

    def row(self, cam_mass_g: float | None) -> dict[str, Any]:
        ch_mAh = self.charge_Ah * 1e3
        dis_mAh = self.discharge_Ah * 1e3
        ce = 100.0 * dis_mAh / ch_mAh if ch_mAh > 0 and dis_mAh > 0 else None
        mean_v = self.discharge_Wh / self.discharge_Ah if self.discharge_Ah > 0 else None
        return {
            "cycle": self.cycle,
            "charge_c_rate": self.charge_c_rate,
            "discharge_c_rate": self.discharge_c_rate,
            "charge_capacity_mAh": ch_mAh,
            "discharge_capacity_mAh": dis_mAh,
            "charge_capacity_mAh_g": ch_mAh / cam_mass_g if cam_mass_g else None,
            "discharge_capacity_mAh_g": dis_mAh / cam_mass_g if cam_mass_g else None,
            "coulombic_efficiency_pct": ce,
            "mean_discharge_voltage_V": mean_v,
            "discharge_energy_mWh": self.discharge_Wh * 1e3,
            "charge_energy_mWh": self.charge_Wh * 1e3,
            "charge_time_s": self.charge_time_s,
            "discharge_time_s": self.discharge_time_s,
            "end_time_s": self.end_time_s,
            "block": self.block,
        }


_CHARGE_KINDS = {"charge", "pulse_charge"}
_DISCHARGE_KINDS = {"discharge", "pulse_discharge"}


class CycleCounter:
    """Tracks the current cycle and accumulates its figures step by step."""

    def __init__(self, cycle: int = 1) -> None:
        self.current = CycleFigures(cycle)
        self._last_active: str | None = None
        self._started = False  # has the current cycle seen any active step

    @property
    def cycle(self) -> int:
        return self.current.cycle

    @property
    def last_active(self) -> str | None:
        return self._last_active

    @property
    def started(self) -> bool:
        return self._started

    def restore(self, current: CycleFigures, last_active: str | None, started: bool) -> None:
        """Put the counter back where a journal snapshot says it was."""
        self.current = current
        self._last_active = last_active
        self._started = started

    def start_step(self, kind: str, counts: bool, block: str | None) -> CycleFigures | None:
        """Called when a step starts; returns the cycle that just ended, if one did."""
        if not counts:
            return None
        ended = None
        if kind in _CHARGE_KINDS and self._last_active == "discharge":
            ended = self.current
            self.current = CycleFigures(ended.cycle + 1)
            self._started = False
        if kind in _CHARGE_KINDS:
            self._last_active = "charge"
        elif kind in _DISCHARGE_KINDS:
            self._last_active = "discharge"
        if (kind in _CHARGE_KINDS or kind in _DISCHARGE_KINDS) and not self._started:
            self._started = True
            self.current.block = block
        return ended

    def saw_records(self, last_time_s: float) -> None:
        """Records up to ``last_time_s`` belong to the current cycle."""
        if last_time_s > self.current.end_time_s:
            self.current.end_time_s = last_time_s

    def pending_end(self) -> float | None:
        """When the current cycle ended, if it may already be over: its last active step
        was a discharge, so the next charge would start a new cycle. None otherwise."""
        if self._started and self._last_active == "discharge":
            return self.current.end_time_s
        return None

    def add_charge(self, counts: bool, charge_Ah: float) -> None:
        """Add a step's charge (signed, + into the cell) to the cycle's capacities.

        Called when the step ends, before the next step's records are counted, so the
        within-cycle capacity columns are right for every record.
        """
        if not counts:
            return
        if charge_Ah > 0:
            self.current.charge_Ah += charge_Ah
        else:
            self.current.discharge_Ah += -charge_Ah

    def add_step_totals(
        self,
        kind: str,
        counts: bool,
        charge_Ah: float,
        energy_Wh: float,
        duration_s: float,
        c_rate: float | None,
        end_time_s: float | None = None,
        target: CycleFigures | None = None,
    ) -> None:
        """Add a finished step's energy, time and C-rate (its charge went in add_charge)
        to ``target``, the cycle the step ran in (default: the current one).
        ``end_time_s``, when given, is when the step ended (a step that left no record)."""
        if not counts:
            return
        cur = self.current if target is None else target
        if charge_Ah > 0 or kind in _CHARGE_KINDS:
            cur.charge_Wh += max(energy_Wh, 0.0)
            cur.charge_time_s += duration_s
            if cur.charge_c_rate is None and c_rate is not None and kind in _CHARGE_KINDS:
                cur.charge_c_rate = c_rate
        elif charge_Ah < 0 or kind in _DISCHARGE_KINDS:
            cur.discharge_Wh += max(-energy_Wh, 0.0)
            cur.discharge_time_s += duration_s
            if cur.discharge_c_rate is None and c_rate is not None and kind in _DISCHARGE_KINDS:
                cur.discharge_c_rate = c_rate
        if end_time_s is not None and end_time_s > cur.end_time_s:
            cur.end_time_s = end_time_s

    def cumulative(
        self, kind: str, counts: bool, step_charge_Ah: npt.NDArray[np.float64]
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """Charge and discharge capacity within the cycle for a step's records."""
        cur = self.current
        n = step_charge_Ah.shape[0]
        ch = np.full(n, cur.charge_Ah)
        dis = np.full(n, cur.discharge_Ah)
        if counts:
            pos = np.maximum(step_charge_Ah, 0.0)
            neg = np.maximum(-step_charge_Ah, 0.0)
            ch = ch + pos
            dis = dis + neg
        return ch, dis
