"""Simulated PalmSens EmStat speaking MethodSCRIPT on a pseudo-terminal (see :mod:`.device`)."""

from .device import MethodScriptDevice
from .script import Program, ScriptSyntax, encode_value, parse_number, parse_script
from .serve import MethodScriptServer, serve_palmsens

__all__ = [
    "MethodScriptDevice",
    "MethodScriptServer",
    "Program",
    "ScriptSyntax",
    "encode_value",
    "parse_number",
    "parse_script",
    "serve_palmsens",
]
