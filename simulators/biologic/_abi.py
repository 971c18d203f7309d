"""The EClib calling convention seen from inside the library: raw memory in and out.

A second, independent reading of the Development Package's headers: records are
described here as ``struct`` formats (little-endian, 32-bit alignment: no padding
before the float64 ``StartTime``), read from and written to the caller's memory by
address, exactly as the DLL does with the pointers it is given. Nothing here knows the
caller's ctypes classes; a size that does not match the documented record is refused
(the DLL would corrupt memory; a test should fail).
"""

from __future__ import annotations

import ctypes
import struct
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CHANNEL_INFOS",
    "CURRENT_VALUES",
    "DATA_INFOS",
    "DEVICE_INFOS",
    "ECC_PARAM",
    "WORDS",
    "AbiError",
    "Param",
    "address_of",
    "int_arg",
    "read_params",
    "read_string",
    "write_bytes",
    "write_cstring",
    "write_record",
    "write_u32",
]


class AbiError(TypeError):
    """The caller broke the calling convention (wrong type or size of an argument)."""


DEVICE_INFOS = struct.Struct("<11i")  # DeviceCode ... NbOfConnectedPC
CHANNEL_INFOS = struct.Struct("<19i")  # Channel ... NbOfTechniques
#: State, MemFilled, TimeBase, Ewe, EweRangeMin/Max, Ece, EceRangeMin/Max, Eoverflow, I,
#: IRange, Ioverflow, ElapsedTime, Freq, Rcomp, Saturation, OptErr, OptPos
CURRENT_VALUES = struct.Struct("<ii7fifii3f3i")
#: IRQskipped, NbRows, NbCols, TechniqueIndex, TechniqueID, ProcessIndex, loop,
#: StartTime (float64 at offset 28), MuxPad
DATA_INFOS = struct.Struct("<7idi")
#: label char[64], type int32, value (32 bits), index int32
ECC_PARAM = struct.Struct("<64siIi")
#: the parameter list {len int32, pointer} passed by value (pointer at offset 4)
ECC_PARAMS = struct.Struct("<iQ")
WORDS = 1000  # the data buffer: uint32[1000]


@dataclass(frozen=True, slots=True)
class Param:
    label: str
    type: int  # 0 int32, 1 boolean, 2 single
    bits: int
    index: int

    @property
    def number(self) -> float | int | bool:
        if self.type == 2:
            return float(struct.unpack("<f", struct.pack("<I", self.bits))[0])
        if self.type == 1:
            return self.bits != 0
        return int(struct.unpack("<i", struct.pack("<I", self.bits))[0])


def address_of(arg: Any, size: int, what: str) -> int:
    """Address of the memory an out-argument points at (``byref(x)``, an array, a
    pointer), after checking it holds ``size`` bytes."""
    obj = getattr(arg, "_obj", None)  # what byref() wraps
    if obj is None:
        obj = arg
    if isinstance(obj, ctypes._Pointer):
        obj = obj.contents
    if not isinstance(obj, ctypes._SimpleCData | ctypes.Structure | ctypes.Array | ctypes.Union):
        raise AbiError(f"{what}: expected a pointer to {size} bytes, got {type(arg).__name__}")
    have = ctypes.sizeof(obj)
    if have != size:
        raise AbiError(f"{what}: the caller's memory holds {have} bytes, the record is {size}")
    return ctypes.addressof(obj)


def write_bytes(arg: Any, data: bytes, what: str, capacity: int | None = None) -> None:
    """Write ``data`` at the start of the caller's memory, which holds ``capacity``
    bytes (default: exactly ``len(data)``)."""
    cap = len(data) if capacity is None else capacity
    if len(data) > cap:
        raise AbiError(f"{what}: {len(data)} bytes do not fit in {cap}")
    ctypes.memmove(address_of(arg, cap, what), data, len(data))


def write_record(arg: Any, fmt: struct.Struct, values: tuple[Any, ...], what: str) -> None:
    write_bytes(arg, fmt.pack(*values), what)


def write_u32(arg: Any, value: int, what: str) -> None:
    write_bytes(arg, struct.pack("<I", value & 0xFFFFFFFF), what)


def int_arg(arg: Any, kind: type, what: str) -> int:
    """The value of an integer argument passed as the ctypes type the header names."""
    if not isinstance(arg, kind):
        raise AbiError(f"{what}: expected {kind.__name__}, got {type(arg).__name__}")
    value: Any = getattr(arg, "value", None)
    return int(value)


def read_string(arg: Any, what: str) -> str:
    if not isinstance(arg, ctypes.c_char_p):
        raise AbiError(f"{what}: expected c_char_p, got {type(arg).__name__}")
    raw = arg.value or b""
    return raw.decode("utf-8", "replace")


def write_cstring(buf: Any, size_arg: Any, text: str, what: str) -> bool:
    """Copy ``text`` into a caller's char buffer whose size is in ``*size_arg``; set the
    size to the length. False if the buffer is too small."""
    size = getattr(size_arg, "_obj", None)
    if not isinstance(buf, ctypes.Array) or not isinstance(size, ctypes.c_uint32):
        raise AbiError(f"{what}: expected a char buffer and byref(c_uint32)")
    cap = int(size.value)
    data = text.encode("latin-1", "replace")
    if len(data) + 1 > min(cap, ctypes.sizeof(buf)):
        return False
    ctypes.memmove(ctypes.addressof(buf), data + b"\0", len(data) + 1)
    size.value = len(data)
    return True


def read_params(rec: Any) -> list[Param]:
    """The parameters of a ``TEccParams`` record passed by value."""
    if not isinstance(rec, ctypes.Structure) or ctypes.sizeof(rec) != ECC_PARAMS.size:
        raise AbiError(f"parameter list: expected a {ECC_PARAMS.size}-byte record by value")
    n, ptr = ECC_PARAMS.unpack(bytes(rec))
    if n < 0 or n > 10_000 or (n > 0 and ptr == 0):
        raise AbiError(f"parameter list: length {n}, pointer {ptr:#x}")
    raw = ctypes.string_at(ptr, n * ECC_PARAM.size) if n else b""
    out = []
    for k in range(n):
        label, kind, bits, index = ECC_PARAM.unpack_from(raw, k * ECC_PARAM.size)
        out.append(Param(label.split(b"\0", 1)[0].decode("ascii", "replace"), kind, bits, index))
    return out
