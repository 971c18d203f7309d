"""The simulated EClib: the same functions as BioLogic's DLL, on simulated instruments.

:class:`SimEClib` stands exactly where ``ctypes.WinDLL("EClib64.dll")`` stands: its
``BL_*`` attributes take the same ctypes arguments (values, ``byref`` out-parameters,
arrays, the parameter record by value), fill the caller's memory as the DLL does, and
return the DLL's int32 codes. Calls may come from any thread (a driver calls from a
worker thread); one lock serialises them, as the real DLL needs its callers to.

Faults, set from a test at any time: :meth:`drop_link` (USB/Ethernet gone: calls fail
with -200, a reconnect is needed afterwards), :meth:`hold_channel` (EC-Lab runs the
channel), :meth:`fail_technique` (a technique file that does not load),
:meth:`slow_get_data` (BL_GetData blocks for real seconds, as a stuck DLL does).
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from labrig.simulators.command_log import CommandLog
from labrig.simulators.engine import ChannelEngine, EngineError

from ._abi import (
    CHANNEL_INFOS,
    CURRENT_VALUES,
    DATA_INFOS,
    DEVICE_INFOS,
    WORDS,
    AbiError,
    address_of,
    int_arg,
    read_params,
    read_string,
    write_bytes,
    write_cstring,
    write_record,
)
from ._channel import SimChannel
from ._techniques import TechniqueError, parse_technique, technique_stem

__all__ = ["MODELS", "AbiError", "SimEClib", "SimInstrument"]

OK, NOT_CONNECTED, INVALID, FAILED, ECLAB, RUNNING = 0, -1, -4, -6, -9, -13
NOT_PLUGGED, COMM_FAILED, CONNECT_FAILED = -3, -200, -201
FW_LOAD_FAILED, TECH_LOAD_FAILED = -303, -403

#: model name -> (device code, SP-300 family, time base s); from the package's headers
MODELS: dict[str, tuple[int, bool, float]] = {
    "VMP-300": (12, True, 24e-6), "SP-300": (16, True, 24e-6), "VSP-300": (20, True, 24e-6),
    "SP-240": (27, True, 24e-6), "VMP3": (5, False, 21.333e-6), "VSP": (6, False, 21.333e-6),
    "SP-150": (14, False, 21.333e-6), "SP-50": (13, False, 21.333e-6),
    "SP-200": (21, False, 21.333e-6),
}  # fmt: skip

_MESSAGES = {
    0: "no error", -1: "no instrument connected", -2: "connection in progress",
    -3: "selected channel(s) not plugged", -4: "invalid function parameters",
    -5: "selected file does not exists", -6: "function failed", -7: "no channel selected",
    -8: "invalid instrument configuration", -9: "EC-Lab firmware loaded on the instrument",
    -10: "library not correctly loaded in memory",
    -11: "USB library not correctly loaded in memory",
    -12: "function of the library already in progress",
    -13: "selected channel(s) already used", -14: "device not allowed",
    -15: "invalid function update parameters",
    -200: "communication failed with the instrument",
    -201: "cannot establish connection with the instrument",
    -202: "waiting for the instrument response",
    -303: "cannot load firmware on the selected channel(s)",
    -308: "no firmware loaded on the selected channel(s)",
    -309: "loaded firmware not compatible with the library",
    -400: "cannot find the selected ECC file",
    -401: "ECC file not compatible with the channel firmware",
    -402: "ECC file corrupted", -403: "cannot load the ECC file",
    -404: "data returned by the instrument are corrupted",
    -405: "cannot load techniques : full memory",
}  # fmt: skip


@dataclass
class SimInstrument:
    """One simulated instrument at ``address``: model and channels."""

    address: str
    model: str
    channels: list[SimChannel]
    ids: set[int] = field(default_factory=set)


class SimEClib:
    """A stand-in for EClib64.dll serving simulated instruments on clock ``now``."""

    def __init__(self, now: Callable[[], float], command_log: CommandLog | None = None) -> None:
        self.now = now
        self.instruments: dict[str, SimInstrument] = {}
        self.calls: list[str] = []
        self.command_log = command_log  # every call, its channel and answer code
        self._call_chan: int | None = None
        self._lock = threading.RLock()
        self._next_id = 1
        self._by_id: dict[int, SimInstrument] = {}
        self._down_until: float | None = None
        self._failing: set[str] = set()
        self._slow_s = 0.0
        self._release = threading.Event()

    def add_instrument(
        self,
        address: str,
        model: str,
        engines: Sequence[ChannelEngine],
        *,
        phase_unit: str = "rad",
        firmware: int = 5,
    ) -> SimInstrument:
        if model not in MODELS:
            raise ValueError(f"unknown model {model!r}; known: {', '.join(MODELS)}")
        _code, sp300, tb = MODELS[model]
        chans = [
            SimChannel(k, e, sp300=sp300, timebase_s=tb, phase_unit=phase_unit, firmware=firmware)
            for k, e in enumerate(engines)
        ]
        inst = SimInstrument(address, model, chans)
        self.instruments[address] = inst
        return inst

    # ------------------------------------------------------------------ faults
    def drop_link(self, duration_s: float | None = None) -> None:
        """The link goes down now for ``duration_s`` (None: until :meth:`restore_link`);
        connections made before are gone."""
        with self._lock:
            self._down_until = float("inf") if duration_s is None else self.now() + duration_s
            for inst in self.instruments.values():
                for i in inst.ids:
                    self._by_id.pop(i, None)
                inst.ids.clear()

    def restore_link(self) -> None:
        with self._lock:
            self._down_until = None

    def link_up(self) -> bool:
        with self._lock:
            return self._up()

    def hold_channel(self, address: str, channel: int, held: bool = True) -> None:
        """EC-Lab runs (``held``) or releases the channel."""
        with self._lock:
            ch = self.instruments[address].channels[channel]
            ch.eclab_running = held
            if held:
                ch.firmware = 1

    def fail_technique(self, stem: str, failing: bool = True) -> None:
        with self._lock:
            (self._failing.add if failing else self._failing.discard)(stem)

    def slow_get_data(self, seconds: float) -> None:
        """BL_GetData blocks ``seconds`` of real time (0: not) or until :meth:`release`."""
        self._slow_s = seconds
        self._release.clear()

    def release(self) -> None:
        self._slow_s = 0.0
        self._release.set()

    # ------------------------------------------------------------------ helpers
    def _up(self) -> bool:
        if self._down_until is None:
            return True
        if self.now() >= self._down_until:
            self._down_until = None
            return True
        return False

    def _inst(self, dev: Any) -> SimInstrument | int:
        dev_id = int_arg(dev, ctypes.c_int32, "device id")
        if not self._up():
            return COMM_FAILED
        inst = self._by_id.get(dev_id)
        return NOT_CONNECTED if inst is None else inst

    def _chan(self, dev: Any, ch: Any) -> SimChannel | int:
        inst = self._inst(dev)
        if isinstance(inst, int):
            return inst
        k = int_arg(ch, ctypes.c_uint8, "channel")
        self._call_chan = k
        if k >= len(inst.channels):
            return NOT_PLUGGED
        return inst.channels[k]

    def _call(self, name: str, fn: Callable[[], int]) -> int:
        with self._lock:
            self.calls.append(name)
            self._call_chan = None
            try:
                rc = fn()
            except EngineError:
                rc = FAILED
            if self.command_log is not None:
                # in-process: the sender is the process that loaded the library
                self.command_log.write(name, chan=self._call_chan, pid=os.getpid(), rc=rc)
            return rc

    # ------------------------------------------------------------------ general
    def BL_GetLibVersion(self, buf: Any, size: Any) -> int:
        return self._call("BL_GetLibVersion",
                          lambda: OK if write_cstring(buf, size, "6.04 (labrig simulator)",
                                                      "version") else INVALID)  # fmt: skip

    def BL_GetErrorMsg(self, code: Any, buf: Any, size: Any) -> int:
        c = int_arg(code, ctypes.c_int32, "error code")
        text = _MESSAGES.get(c, "unknown error")
        return OK if write_cstring(buf, size, text, "message") else INVALID

    def BL_Connect(self, address: Any, timeout: Any, dev_id: Any, infos: Any) -> int:
        def run() -> int:
            addr = read_string(address, "address")
            int_arg(timeout, ctypes.c_uint8, "timeout")
            if not self._up():
                return CONNECT_FAILED
            inst = self.instruments.get(addr)
            if inst is None:
                return CONNECT_FAILED
            code, _sp300, _tb = MODELS[inst.model]
            n = len(inst.channels)
            rec = (code, 64, 68060, n, n, 1_140, 2024, 5, 14, 0, 1)
            write_record(infos, DEVICE_INFOS, rec, "device infos")
            new = self._next_id
            self._next_id += 1
            inst.ids.add(new)
            self._by_id[new] = inst
            write_bytes(dev_id, new.to_bytes(4, "little", signed=True), "device id")
            return OK

        return self._call("BL_Connect", run)

    def BL_Disconnect(self, dev: Any) -> int:
        def run() -> int:
            inst = self._inst(dev)
            if isinstance(inst, int):
                return inst
            dev_id = int(dev.value)
            inst.ids.discard(dev_id)
            self._by_id.pop(dev_id, None)
            return OK

        return self._call("BL_Disconnect", run)

    def BL_TestConnection(self, dev: Any) -> int:
        return self._call("BL_TestConnection", lambda: _code(self._inst(dev)))

    # ------------------------------------------------------------------ channels
    def BL_GetChannelsPlugged(self, dev: Any, plugged: Any, size: Any) -> int:
        def run() -> int:
            inst = self._inst(dev)
            if isinstance(inst, int):
                return inst
            n = int_arg(size, ctypes.c_uint8, "size")
            flags = bytes(1 if k < len(inst.channels) else 0 for k in range(n))
            write_bytes(plugged, flags, "plugged channels")
            return OK

        return self._call("BL_GetChannelsPlugged", run)

    def BL_GetChannelInfos(self, dev: Any, ch: Any, infos: Any) -> int:
        def run() -> int:
            c = self._chan(dev, ch)
            if isinstance(c, int):
                return c
            now = self.now()
            c.poll(now)
            state = 1 if (c.running or c.eclab_running) else 0
            rec = (c.index, 3, 1000 + c.index, c.firmware, 1140, 0x200, 2, 1, 0, 1, 0, 0,
                   4 << 20, c.memory_bytes(), state, 10, 0, 9, len(c.chain))  # fmt: skip
            write_record(infos, CHANNEL_INFOS, rec, "channel infos")
            return OK

        return self._call("BL_GetChannelInfos", run)

    def BL_GetMessage(self, dev: Any, ch: Any, buf: Any, size: Any) -> int:
        def run() -> int:
            c = self._chan(dev, ch)
            if isinstance(c, int):
                return c
            text = c.messages.popleft() if c.messages else ""
            return OK if write_cstring(buf, size, text, "message") else INVALID

        return self._call("BL_GetMessage", run)

    def BL_LoadFirmware(self, dev: Any, chans: Any, results: Any, length: Any,
                        gauge: Any, force: Any, bin_file: Any, xlx_file: Any) -> int:  # fmt: skip
        def run() -> int:
            inst = self._inst(dev)
            if isinstance(inst, int):
                return inst
            n = int_arg(length, ctypes.c_uint8, "length")
            address_of(chans, n, "channels")
            address_of(results, 4 * n, "results")
            for arg, kind in ((gauge, ctypes.c_bool), (force, ctypes.c_bool)):
                int_arg(arg, kind, "flag")
            read_string(bin_file, "firmware file")
            read_string(xlx_file, "xilinx file")
            out = []
            for k in range(n):
                c = inst.channels[int(chans[k])] if int(chans[k]) < len(inst.channels) else None
                if c is None:
                    out.append(NOT_PLUGGED)
                elif c.running or c.eclab_running:
                    out.append(RUNNING)
                elif "firmware" in self._failing:
                    out.append(FW_LOAD_FAILED)
                else:
                    c.firmware = 5
                    out.append(OK)
            write_bytes(results, b"".join(r.to_bytes(4, "little", signed=True) for r in out),
                        "results")  # fmt: skip
            return OK

        return self._call("BL_LoadFirmware", run)

    # ------------------------------------------------------------------ techniques
    def BL_LoadTechnique(self, dev: Any, ch: Any, path: Any, params: Any,
                         first: Any, last: Any, display: Any) -> int:  # fmt: skip
        def run() -> int:
            c = self._chan(dev, ch)
            if isinstance(c, int):
                return c
            flags = [int_arg(a, ctypes.c_bool, "flag") for a in (first, last, display)]
            plist = read_params(params)
            if c.eclab_running:
                return ECLAB
            if c.firmware != 5:
                return -308
            c.poll(self.now())
            if c.running:
                return RUNNING
            try:
                stem = technique_stem(read_string(path, "ecc file"), c.sp300)
                if stem in self._failing:
                    return TECH_LOAD_FAILED
                tech = parse_technique(stem, plist)
                c.load(tech, bool(flags[0]), bool(flags[1]))
            except TechniqueError as exc:
                c.messages.append(str(exc))
                return exc.code
            return OK

        return self._call("BL_LoadTechnique", run)

    def BL_UpdateParameters(self, dev: Any, ch: Any, index: Any, params: Any, path: Any) -> int:
        def run() -> int:
            c = self._chan(dev, ch)
            if isinstance(c, int):
                return c
            k = int_arg(index, ctypes.c_int32, "technique index")
            if not 0 <= k < len(c.chain):
                return INVALID
            try:
                stem = technique_stem(read_string(path, "ecc file"), c.sp300)
                if stem != c.chain[k].stem:
                    return -15
                c.chain[k] = parse_technique(stem, read_params(params))
            except TechniqueError as exc:
                return exc.code
            return OK

        return self._call("BL_UpdateParameters", run)

    def BL_StartChannel(self, dev: Any, ch: Any) -> int:
        def run() -> int:
            c = self._chan(dev, ch)
            if isinstance(c, int):
                return c
            if c.eclab_running:
                return ECLAB
            now = self.now()
            c.poll(now)
            if c.running:
                return RUNNING
            if not c.complete:
                return INVALID
            c.start(now)
            return OK

        return self._call("BL_StartChannel", run)

    def BL_StopChannel(self, dev: Any, ch: Any) -> int:
        def run() -> int:
            c = self._chan(dev, ch)
            if isinstance(c, int):
                return c
            if not c.eclab_running:
                c.stop(self.now())
            return OK

        return self._call("BL_StopChannel", run)

    # ------------------------------------------------------------------ data
    def _values(self, c: SimChannel, now: float) -> tuple[Any, ...]:
        state, ewe, i, freq = c.values(now)
        if c.eclab_running:
            state = 1
        return (state, c.memory_bytes(), c.timebase_s, ewe, -10.0, 10.0, 0.0, -10.0, 10.0, 0, i,
                12, 0, now - c.started_at, freq, 0.0, 0, 0, 0)  # fmt: skip

    def BL_GetCurrentValues(self, dev: Any, ch: Any, values: Any) -> int:
        def run() -> int:
            c = self._chan(dev, ch)
            if isinstance(c, int):
                return c
            now = self.now()
            c.poll(now)
            write_record(values, CURRENT_VALUES, self._values(c, now), "current values")
            return OK

        return self._call("BL_GetCurrentValues", run)

    def BL_GetData(self, dev: Any, ch: Any, buf: Any, infos: Any, values: Any) -> int:
        if self._slow_s > 0:
            self._release.wait(self._slow_s)  # outside the lock: the DLL is stuck, not us

        def run() -> int:
            c = self._chan(dev, ch)
            if isinstance(c, int):
                return c
            address_of(buf, 4 * WORDS, "data buffer")
            now = self.now()
            c.poll(now)
            frame = c.take()
            rows = frame.rows if frame is not None else []
            words = [w for r in rows for w in r]
            if words:
                data = b"".join(w.to_bytes(4, "little") for w in words)
                write_bytes(buf, data, "data buffer", capacity=4 * WORDS)
            info: tuple[Any, ...] = (0, 0, 0, 0, 0, 0, 0, 0.0, 0)
            if frame is not None:
                info = (0, len(rows), frame.ncols, frame.technique_index, frame.technique_id,
                        frame.process, frame.loop, frame.start_time, 0)  # fmt: skip
            write_record(infos, DATA_INFOS, info, "data infos")
            write_record(values, CURRENT_VALUES, self._values(c, now), "current values")
            return OK

        return self._call("BL_GetData", run)


def _code(x: object) -> int:
    return x if isinstance(x, int) else OK
