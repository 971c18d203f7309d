"""Settings of a furnace run (defaults documented in docs/thermal.md)."""

from __future__ import annotations

from dataclasses import dataclass

from ..executor import RunOptions

__all__ = ["ThermalOptions"]


@dataclass
class ThermalOptions(RunOptions):
    """How a furnace run polls, supervises and ends.

    ``poll_s`` (from :class:`RunOptions`) is the record period: PV, setpoint, output and
    flows are written every ``poll_s``. The temperature alone is read every
    ``safety_period_s`` for the over-temperature and thermocouple checks.
    """

    poll_s: float = 10.0
    safety_period_s: float = 5.0
    #: PV this far above the programme's peak (or above a rising setpoint) is a trip.
    overtemp_margin_K: float = 20.0
    #: A run that ends hot waits under gas until PV is below this (or the last cool target).
    end_cool_C: float = 50.0
    #: A flow is reached when within this fraction of its setpoint (or ``gas_abs_sccm``).
    gas_tolerance: float = 0.02
    gas_abs_sccm: float = 0.5
    gas_settle_timeout_s: float = 60.0
    #: A required flow below this fraction of its setpoint for ``gas_loss_polls`` records
    #: is a gas loss.
    gas_loss_fraction: float = 0.5
    gas_loss_polls: int = 2
    #: A programme held after a gas loss aborts if nobody resumes it within this time.
    gas_hold_timeout_s: float = 3600.0
    cool_timeout_s: float = 48 * 3600.0
    #: Heating lost: output >= this % while PV falls below the setpoint for
    #: ``heat_loss_polls`` records (the independent limit tripped, or the element failed).
    heat_loss_output_pct: float = 99.0
    heat_loss_polls: int = 3
    #: With every line closed at a trip while the furnace is hot, open this line.
    purge_line: str | None = None
    purge_sccm: float = 100.0

    def __post_init__(self) -> None:
        for name in ("poll_s", "safety_period_s", "gas_settle_timeout_s", "cool_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"ThermalOptions.{name} must be positive")
