"""Simulated ESPEC-style temperature chamber, served on loopback TCP or a pty.

::

    sim = await start_espec_sim()
    sim.address; sim.model.fail_refrigeration(); sim.faults.silent = True
    await sim.aclose()
"""

from labrig.simulators.chamber.model import ChamberModel, ChamberParams
from labrig.simulators.chamber.protocol import EspecDevice
from labrig.simulators.chamber.simulator import EspecSimulator, start_espec_sim

__all__ = ["ChamberModel", "ChamberParams", "EspecDevice", "EspecSimulator", "start_espec_sim"]
