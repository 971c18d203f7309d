"""Simulated Alicat mass-flow controllers on one ASCII bus (pty or loopback TCP).

::

    sim = await start_alicat_sim(units={"A": "N2", "B": "O2"})
    sim.address                       # tcp://127.0.0.1:PORT or serial:///dev/pts/N?baudrate=19200
    sim.units["A"].lose_supply()      # fault switch: gas stops flowing
    sim.faults.garbage = True         # byte manipulator on the replies
    await sim.aclose()
"""

from labrig.simulators.gas.bus import AlicatBusDevice, format_frame
from labrig.simulators.gas.mfc import GAS_TABLE, MfcModel, MfcParams
from labrig.simulators.gas.simulator import AlicatSimulator, start_alicat_sim

__all__ = [
    "GAS_TABLE",
    "AlicatBusDevice",
    "AlicatSimulator",
    "MfcModel",
    "MfcParams",
    "format_frame",
    "start_alicat_sim",
]
