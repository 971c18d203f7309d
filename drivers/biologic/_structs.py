"""EClib's structures, codes and device families, as ctypes sees them.

Facts from BioLogic's EC-Lab Development Package (the DLL's published Pascal/C headers
and its Python example wrapper; see docs/biologic.md). Every record is aligned on 32
bits: ``_pack_ = 4`` (so ``StartTime``, a float64, sits at offset 28 of the data info,
and the parameter list's pointer at offset 4). Whatever two sources disagree on is a
setting of the driver, not a constant here.
"""

from __future__ import annotations

import ctypes
from enum import IntEnum

__all__ = [
    "BUFFER_WORDS",
    "ERROR_TEXT",
    "ChannelInfos",
    "CurrentValues",
    "DataBuffer",
    "DataInfos",
    "DeviceCode",
    "DeviceInfos",
    "EccParam",
    "EccParams",
    "Family",
    "FirmwareCode",
    "HardwareConf",
    "ParamType",
    "State",
    "TechniqueId",
    "family_of",
]

#: words in the data buffer BL_GetData fills
BUFFER_WORDS = 1000


class DeviceInfos(ctypes.Structure):
    _pack_ = 4
    _fields_ = [
        ("DeviceCode", ctypes.c_int32),
        ("RAMsize", ctypes.c_int32),
        ("CPU", ctypes.c_int32),
        ("NumberOfChannels", ctypes.c_int32),
        ("NumberOfSlots", ctypes.c_int32),
        ("FirmwareVersion", ctypes.c_int32),
        ("FirmwareDate_yyyy", ctypes.c_int32),
        ("FirmwareDate_mm", ctypes.c_int32),
        ("FirmwareDate_dd", ctypes.c_int32),
        ("HTdisplayOn", ctypes.c_int32),
        ("NbOfConnectedPC", ctypes.c_int32),
    ]


class ChannelInfos(ctypes.Structure):
    _pack_ = 4
    _fields_ = [
        ("Channel", ctypes.c_int32),
        ("BoardVersion", ctypes.c_int32),
        ("BoardSerialNumber", ctypes.c_int32),
        ("FirmwareCode", ctypes.c_int32),
        ("FirmwareVersion", ctypes.c_int32),
        ("XilinxVersion", ctypes.c_int32),
        ("AmpCode", ctypes.c_int32),
        ("NbAmp", ctypes.c_int32),
        ("LCboard", ctypes.c_int32),
        ("Zboard", ctypes.c_int32),
        ("MUXboard", ctypes.c_int32),
        ("GPRAboard", ctypes.c_int32),
        ("MemSize", ctypes.c_int32),
        ("MemFilled", ctypes.c_int32),
        ("State", ctypes.c_int32),
        ("MaxIRange", ctypes.c_int32),
        ("MinIRange", ctypes.c_int32),
        ("MaxBandwidth", ctypes.c_int32),
        ("NbOfTechniques", ctypes.c_int32),
    ]


class CurrentValues(ctypes.Structure):
    _pack_ = 4
    _fields_ = [
        ("State", ctypes.c_int32),
        ("MemFilled", ctypes.c_int32),
        ("TimeBase", ctypes.c_float),
        ("Ewe", ctypes.c_float),
        ("EweRangeMin", ctypes.c_float),
        ("EweRangeMax", ctypes.c_float),
        ("Ece", ctypes.c_float),
        ("EceRangeMin", ctypes.c_float),
        ("EceRangeMax", ctypes.c_float),
        ("Eoverflow", ctypes.c_int32),
        ("I", ctypes.c_float),
        ("IRange", ctypes.c_int32),
        ("Ioverflow", ctypes.c_int32),
        ("ElapsedTime", ctypes.c_float),
        ("Freq", ctypes.c_float),
        ("Rcomp", ctypes.c_float),
        ("Saturation", ctypes.c_int32),
        ("OptErr", ctypes.c_int32),
        ("OptPos", ctypes.c_int32),
    ]


class DataInfos(ctypes.Structure):
    _pack_ = 4
    _fields_ = [
        ("IRQskipped", ctypes.c_int32),
        ("NbRows", ctypes.c_int32),
        ("NbCols", ctypes.c_int32),
        ("TechniqueIndex", ctypes.c_int32),
        ("TechniqueID", ctypes.c_int32),
        ("ProcessIndex", ctypes.c_int32),
        ("loop", ctypes.c_int32),
        ("StartTime", ctypes.c_double),
        ("MuxPad", ctypes.c_int32),
    ]


DataBuffer = ctypes.c_uint32 * BUFFER_WORDS


class EccParam(ctypes.Structure):
    """One technique parameter: label, type, the 32 bits of its value, array index."""

    _pack_ = 4
    _fields_ = [
        ("ParamStr", ctypes.c_char * 64),
        ("ParamType", ctypes.c_int32),
        ("ParamVal", ctypes.c_uint32),
        ("ParamIndex", ctypes.c_int32),
    ]


class EccParams(ctypes.Structure):
    """The parameter list BL_LoadTechnique takes by value."""

    _pack_ = 4
    _fields_ = [
        ("len", ctypes.c_int32),
        ("pParams", ctypes.POINTER(EccParam)),
    ]


class HardwareConf(ctypes.Structure):
    _pack_ = 4
    _fields_ = [("Conn", ctypes.c_int32), ("Ground", ctypes.c_int32)]


class ParamType(IntEnum):
    INT32 = 0
    BOOLEAN = 1
    SINGLE = 2


class State(IntEnum):
    """Channel state in current values and channel infos."""

    STOP = 0
    RUN = 1
    PAUSE = 2


class FirmwareCode(IntEnum):
    NONE = 0
    INTERPR = 1  # EC-Lab's own firmware
    UNKNOWN = 4
    KERNEL = 5  # the Development Package's firmware
    INVALID = 8
    ECAL = 10


class TechniqueId(IntEnum):
    OCV = 100
    CA = 101
    CP = 102
    CV = 103
    PEIS = 104
    GEIS = 107
    LOOP = 150
    CPLIMIT = 155
    CALIMIT = 157


class DeviceCode(IntEnum):
    VMP = 0
    VMP2 = 1
    MPG = 2
    BISTAT = 3
    MCS200 = 4
    VMP3 = 5
    VSP = 6
    HCP803 = 7
    EPP400 = 8
    EPP4000 = 9
    BISTAT2 = 10
    FCT150S = 11
    VMP300 = 12
    SP50 = 13
    SP150 = 14
    FCT50S = 15
    SP300 = 16
    CLB500 = 17
    HCP1005 = 18
    CLB2000 = 19
    VSP300 = 20
    SP200 = 21
    MPG2 = 22
    SP100 = 23
    MOSLED = 24
    SP240 = 27
    BP300 = 32
    UNKNOWN = 255


class Family(IntEnum):
    """Firmware and technique-file family: ``x.ecc`` (VMP3) or ``x4.ecc`` (SP-300)."""

    VMP3 = 3
    SP300 = 4


#: which family each device belongs to (check the unit: a model in the wrong family
#: gets "ECC file not compatible" at the first technique)
_FAMILY: dict[DeviceCode, Family] = {
    DeviceCode.VMP3: Family.VMP3,
    DeviceCode.VSP: Family.VMP3,
    DeviceCode.SP50: Family.VMP3,
    DeviceCode.SP150: Family.VMP3,
    DeviceCode.SP200: Family.VMP3,
    DeviceCode.SP100: Family.VMP3,
    DeviceCode.BISTAT: Family.VMP3,
    DeviceCode.VMP300: Family.SP300,
    DeviceCode.SP300: Family.SP300,
    DeviceCode.VSP300: Family.SP300,
    DeviceCode.SP240: Family.SP300,
    DeviceCode.BP300: Family.SP300,
}


def family_of(code: int) -> Family | None:
    """The family of a device code, or None for a device this driver does not know."""
    try:
        return _FAMILY.get(DeviceCode(code))
    except ValueError:
        return None


#: EClib error codes (negative) and their published meaning
ERROR_TEXT: dict[int, str] = {
    0: "no error",
    -1: "no instrument connected",
    -2: "connection in progress",
    -3: "selected channel(s) not plugged",
    -4: "invalid function parameters",
    -5: "selected file does not exist",
    -6: "function failed",
    -7: "no channel selected",
    -8: "invalid instrument configuration",
    -9: "EC-Lab firmware loaded on the instrument",
    -10: "library not correctly loaded in memory",
    -11: "USB library not correctly loaded in memory",
    -12: "function of the library already in progress",
    -13: "selected channel(s) already used",
    -14: "device not allowed",
    -15: "invalid update parameters",
    -101: "internal instrument communication failed",
    -102: "too many data to transfer from the instrument",
    -103: "channel not plugged or firmware not allowed",
    -104: "instrument response error",
    -105: "invalid message size",
    -200: "communication failed with the instrument",
    -201: "cannot establish connection with the instrument",
    -202: "waiting for the instrument response",
    -203: "invalid IP address",
    -204: "cannot allocate memory in the instrument",
    -205: "cannot load firmware into selected channel(s)",
    -206: "communication firmware not compatible with the library",
    -207: "maximum number of allowed connections reached",
    -300: "cannot find firmware file",
    -301: "cannot read firmware file",
    -302: "invalid firmware file",
    -303: "cannot load firmware on the selected channel(s)",
    -304: "cannot find xilinx file",
    -305: "cannot read xilinx file",
    -306: "invalid xilinx file",
    -307: "cannot load xilinx file on the selected channel(s)",
    -308: "no firmware loaded on the selected channel(s)",
    -309: "loaded firmware not compatible with the library",
    -400: "cannot find the selected ECC file",
    -401: "ECC file not compatible with the channel firmware",
    -402: "ECC file corrupted",
    -403: "cannot load the ECC file",
    -404: "data returned by the instrument are corrupted",
    -405: "cannot load techniques: full memory",
}
