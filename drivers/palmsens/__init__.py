"""PalmSens EmStat / Nexus potentiostats over MethodSCRIPT (serial, 230400 baud).

``PalmSensChannel.from_url("serial:///dev/ttyACM0?baudrate=230400")`` then
``async with ch: await ch.measure_eis(EisRequest(...))``; the channel is a
:class:`drivers.capabilities.ImpedanceChannel` and also runs OCP and
chronopotentiometry (:meth:`PalmSensChannel.measure_cp`). :mod:`.codec` holds the pure
script writer and output decoder.
"""

from .channel import BAUDRATE, CpResult, PalmSensChannel, ScriptOutput
from .codec import MethodScriptError, Package, ScriptDecoder, Variable

__all__ = [
    "BAUDRATE",
    "CpResult",
    "MethodScriptError",
    "Package",
    "PalmSensChannel",
    "ScriptDecoder",
    "ScriptOutput",
    "Variable",
]
