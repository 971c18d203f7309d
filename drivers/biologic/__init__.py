"""BioLogic VMP-300 / SP-300 / VMP3 potentiostats through the EC-Lab Development Package.

``async with open_biologic(model="VMP-300", address="USB0", channel=0,
library_dir=r"C:\\EC-Lab Development Package\\lib") as ch:`` gives a
:class:`BioLogicChannel`, both a :class:`~drivers.capabilities.CyclerChannel` and an
:class:`~drivers.capabilities.ImpedanceChannel`. Tests pass the simulator's library
object as ``library=`` instead of loading the DLL. :mod:`._params` builds technique
parameters, :mod:`._decode` decodes data buffers, :mod:`._eclib` is the binding.
"""

from ._channel import BioLogicChannel, sweep_of
from ._decode import decode, layout
from ._device import MODELS, BioLogicDevice, Model
from ._eclib import EClib
from ._errors import (
    BioLogicError,
    ChannelInUse,
    FirmwareMismatch,
    LibraryNotFound,
    LinkLost,
    TechniqueRejected,
)
from ._open import load_library, open_biologic
from ._structs import Family

__all__ = [
    "MODELS",
    "BioLogicChannel",
    "BioLogicDevice",
    "BioLogicError",
    "ChannelInUse",
    "EClib",
    "Family",
    "FirmwareMismatch",
    "LibraryNotFound",
    "LinkLost",
    "Model",
    "TechniqueRejected",
    "decode",
    "layout",
    "load_library",
    "open_biologic",
    "sweep_of",
]
