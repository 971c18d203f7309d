"""Shared pieces for driver-vs-simulator tests of the electrochemistry instruments."""

from __future__ import annotations

from labrig.drivers.capabilities import ChannelStep, EndCondition, RecordRule

#: default preset cell: 8.4 mg CAM, 1C = 200 mA/g -> 1.68 mA
ONE_C_A = 200e-3 * 8.4e-3
V_MAX, V_MIN = 3.68, 2.28


def cycle_block(first_id: int, c_rate: float, every_s: float = 10.0) -> list[ChannelStep]:
    """CC charge to 3.68 V, CC discharge to 2.28 V."""
    rec = RecordRule(every_s=every_s)
    i = ONE_C_A * c_rate
    return [
        ChannelStep(
            first_id, "cc", "charge", current_A=i,
            ends=(EndCondition("voltage", ">=", V_MAX),), record=rec,
        ),
        ChannelStep(
            first_id + 1, "cc", "discharge", current_A=-i,
            ends=(EndCondition("voltage", "<=", V_MIN),), record=rec,
        ),
    ]  # fmt: skip
