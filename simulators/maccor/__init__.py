"""Simulated MACCOR Series 4000 tester speaking MacNet JSON-RPC (see :mod:`.server`)."""

from .channel import SimChannel
from .procedure import FlatProcedure, ProcedureError, parse_procedure
from .serve import make_tester, serve_maccor
from .server import MacNetServer, MacNetTester

__all__ = [
    "FlatProcedure",
    "MacNetServer",
    "MacNetTester",
    "ProcedureError",
    "SimChannel",
    "make_tester",
    "parse_procedure",
    "serve_maccor",
]
