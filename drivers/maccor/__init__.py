"""MACCOR Series 4000 battery tester over MacNet JSON-RPC (TCP 57570).

``MaccorCycler.from_url("tcp://host:57570", channels=[0, 1])`` then
``async with cycler: ch = cycler.channel(0)``; each :class:`MaccorChannel` is a
:class:`drivers.capabilities.CyclerChannel`.
"""

from .codec import MacNetError
from .cycler import MaccorChannel, MaccorCycler
from .procedure import CompiledProcedure, ProcedureError, compile_block

__all__ = [
    "CompiledProcedure",
    "MacNetError",
    "MaccorChannel",
    "MaccorCycler",
    "ProcedureError",
    "compile_block",
]
