"""A MACCOR tester behind MacNet JSON-RPC on loopback TCP.

Follows MACCOR's MacNet (Series 4000 remote interface) manual: requests are bare JSON-RPC
2.0 objects (no terminator), replies end ``\\r\\n`` and echo FClass, FNum, Chan and id,
channels are 0-based, errors are JSON-RPC error objects with the manual's strings. The
error *codes* are not in our sources: we use JSON-RPC's -32700 (Parse error) and -32602
(Invalid params) and -32001… for the MacNet-specific ones (check on the unit).

System-level requests (FClass 0 and 1) may omit ``Chan``, as the public client pymacnet
sends them; their reply then carries no ``Chan`` either. (4,1) takes ``Chan`` -1 (what
pymacnet sends for "all channels") as the first channel. Requests may be pretty-printed
over several lines (the framer splits on the closing brace, not on line ends).

The native binary port (57560) is opened as a real tester opens it (clients such as
pymacnet connect to both ports at start and give up if either is refused); its messages
are read and counted but not answered: the binary protocol is not simulated.

Serving, faults (manipulators of :mod:`simulators.faults`: ``tx`` on replies, ``rx`` on
requests) and connections are the shared shell's (:mod:`simulators._serving`); this
module is the tester and its JSON framing per connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any

from labrig.simulators._serving import Link, SimServer
from labrig.simulators.command_log import CommandLog
from labrig.simulators.maccor.channel import SimChannel
from labrig.simulators.maccor.framing import Garbage, JsonFramer

__all__ = ["ERROR_CODES", "MacNetServer", "MacNetTester"]

ERROR_CODES = {
    "Parse error": -32700,
    "Invalid params": -32602,
    "Invalid FClass": -32001,
    "Invalid FNum": -32002,
    "Illegal value": -32003,
    "MacNet error": -32000,
}


_SAFETY_KEYS = ("VSafeMax", "VSafeMin", "ISafeChg", "ISafeDis", "PBatSafeChg", "PBatSafeDis")


class _Refusal(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _reply(result: dict[str, Any], request_id: Any) -> bytes:
    body = {"jsonrpc": "2.0", "result": result, "id": request_id}
    return json.dumps(body, separators=(",", ":")).encode() + b"\r\n"


def _error(message: str, request_id: Any) -> bytes:
    body = {
        "jsonrpc": "2.0",
        "error": {"code": ERROR_CODES[message], "message": message},
        "id": request_id,
    }
    return json.dumps(body, separators=(",", ":")).encode() + b"\r\n"


def _num(params: dict[str, Any], key: str) -> float:
    v = params.get(key)
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise _Refusal("Invalid params")
    return float(v)


def _int(params: dict[str, Any], key: str, default: int | None = None) -> int:
    v = params.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int):
        raise _Refusal("Invalid params")
    return v


def _str(params: dict[str, Any], key: str, default: str | None = None) -> str:
    v = params.get(key, default)
    if not isinstance(v, str):
        raise _Refusal("Invalid params")
    return v


class MacNetTester:
    """The tester: its channels and its procedure folder; answers one request at a time."""

    def __init__(
        self,
        channels: Sequence[SimChannel],
        *,
        now: Callable[[], float] | None = None,
        serial_number: str = "SIM-4000",
    ) -> None:
        self.channels = list(channels)
        self._now = now
        self.serial_number = serial_number
        self.procedures: dict[str, str] = {}
        self.requests = 0

    def now(self) -> float:
        return self._now() if self._now is not None else asyncio.get_running_loop().time()

    def handle(self, frame: bytes | Garbage) -> bytes:
        """The reply bytes (ending ``\\r\\n``) for one request frame."""
        self.requests += 1
        if isinstance(frame, Garbage):
            return _error("Parse error", None)
        try:
            msg = json.loads(frame.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            return _error("Parse error", None)
        if not isinstance(msg, dict):
            return _error("Parse error", None)
        request_id = msg.get("id")
        params = msg.get("params")
        if (
            msg.get("jsonrpc") != "2.0"
            or msg.get("method") != "MacNet"
            or not isinstance(params, dict)
        ):
            return _error("Invalid params", request_id)
        try:
            fclass = _int(params, "FClass")
            fnum = _int(params, "FNum")
            system_level = fclass in (0, 1) and "Chan" not in params
            chan = 0 if system_level else _int(params, "Chan")
            result = self._dispatch(fclass, fnum, chan, params)
        except _Refusal as r:
            return _error(r.message, request_id)
        head: dict[str, Any] = {"FClass": fclass, "FNum": fnum}
        if not system_level:
            head["Chan"] = chan
        return _reply({**head, **result}, request_id)

    def _channel(self, chan: int) -> SimChannel:
        if not 0 <= chan < len(self.channels):
            raise _Refusal("Illegal value")
        return self.channels[chan]

    def _system(self, fnum: int, chan: int, p: dict[str, Any], now: float) -> dict[str, Any]:
        """FClass 1: system information and file transfer."""
        if fnum == 1:
            return {
                "MacNetVersion": "1.3 (labrig simulator)",
                "BuildVersion": "sim",
                "APIVersion": 1,
            }
        if fnum == 2:
            return {
                "TestChannels": len(self.channels),
                "SystemID": self.serial_number,
                "SystemType": 0,
                "ControllerBoards": max(1, (len(self.channels) + 7) // 8),
                "AuxBoards": 0,
                "AuxChannels": 0,
            }
        if fnum == 6:
            name = _str(p, "FileName")
            data = _str(p, "Data")
            if not name or "/" in name or "\\" in name or ".." in name:
                raise _Refusal("Illegal value")
            self.procedures[name.lower()] = data
            return {"FileName": name, "Len": len(data), "Result": "OK"}
        if fnum == 7:
            name = _str(p, "FileName")
            offset = _int(p, "Offset", 0)
            count = _int(p, "Len", 1000)
            if offset < 0 or count < 1:
                raise _Refusal("Illegal value")
            ch = self._channel(chan)
            found, n = ch.data_file(name, offset, count, now)
            if found is None:
                proc = self.procedures.get(name.lower())
                if proc is None:
                    raise _Refusal("Illegal value")
                return {"FileName": name, "Offset": 0, "Len": len(proc), "Data": proc}
            return {"FileName": name, "Offset": offset, "Len": n, "Data": found}
        raise _Refusal("Invalid FNum")

    def _dispatch(self, fclass: int, fnum: int, chan: int, p: dict[str, Any]) -> dict[str, Any]:
        now = self.now()
        if fclass == 0:
            if fnum != 0:
                raise _Refusal("Invalid FNum")
            return {k: v for k, v in p.items() if k not in ("FClass", "FNum", "Chan")}
        if fclass == 1:
            return self._system(fnum, chan, p, now)
        if fclass == 4:
            if fnum == 1:
                count = _int(p, "Len", 1)
                # pymacnet sends Chan -1 here (it subtracts 1 from its template's 0) and
                # reads the answer as every channel from the first (check on a tester)
                first = max(chan, 0) if chan >= -1 else chan
                if count < 1 or first < 0 or first + count > len(self.channels):
                    raise _Refusal("Illegal value")
                rows = [self.channels[c].short_status(now) for c in range(first, first + count)]
                return {"Len": count, "Status": rows}
            if fnum == 6:
                return self._channel(chan).names()
            if fnum == 7:
                return self._channel(chan).reading(now)
            raise _Refusal("Invalid FNum")
        if fclass == 6:
            ch = self._channel(chan)
            if fnum == 2:
                proc_name = _str(p, "ProcName").strip()
                test_name = _str(p, "TestName").strip()
                if test_name == "Random":  # the manual: "Random" makes a pseudo-random name
                    test_name = f"RND{chan:03d}{self.requests:07d}"
                for key in ("Comment",):
                    _str(p, key, "")
                text = self.procedures.get(f"{proc_name}.000".lower())
                return {"Result": ch.start(test_name, proc_name, text, now)}
            if fnum == 3:
                return {"Result": ch.suspend(now)}
            if fnum == 4:
                return {"Result": ch.resume(now)}
            if fnum == 5:
                return {"Result": ch.reset(now)}
            if fnum == 7:
                return {"Result": ch.start_direct(p, now)}
            if fnum == 8:
                return {"Result": ch.set_direct(p, now)}
            if fnum == 10:
                keys = (
                    "VSafeMax",
                    "VSafeMin",
                    "ISafeChg",
                    "ISafeDis",
                    "PBatSafeChg",
                    "PBatSafeDis",
                )
                values = {k: _num(p, k) for k in keys}
                if not ch.set_safety(values):
                    raise _Refusal("Illegal value")
                return dict(ch.safety)
            if fnum == 11:
                name = _str(p, "TestName", "").strip()
                return {"Result": ch.check_start(now, name or None)}
            if fnum == 12:
                return {"Result": ch.start_error or "OK"}
            raise _Refusal("Invalid FNum")
        raise _Refusal("Invalid FClass")


class _MacNetSession:
    """One TCP connection: its own framing, the tester's answers in order."""

    def __init__(self, tester: MacNetTester, link: Link) -> None:
        self._tester = tester
        self._link = link
        self._framer = JsonFramer()

    def received(self, data: bytes) -> None:
        for frame in self._framer.feed(data):
            if self._link.server.command_log is not None:
                self._log(frame)
            self._link.send(self._tester.handle(frame))

    def _log(self, frame: bytes | Garbage) -> None:
        """``FClass.FNum`` and the channel of a request, as the command log keeps it."""
        cmd, chan = "garbage", None
        if not isinstance(frame, Garbage):
            with contextlib.suppress(UnicodeDecodeError, ValueError, KeyError, TypeError):
                p = json.loads(frame.decode("utf-8"))["params"]
                cmd, chan = f"{int(p['FClass'])}.{int(p['FNum'])}", p.get("Chan")
        self._link.log(cmd, chan=chan if isinstance(chan, int) else None)

    def closed(self) -> None:
        pass


class _MacNetDevice:
    def __init__(self, tester: MacNetTester) -> None:
        self.tester = tester

    def open_session(self, link: Link) -> _MacNetSession:
        return _MacNetSession(self.tester, link)


class _BinaryPort:
    """The native binary port: connections are held open, read and counted, never
    answered (the binary protocol is not simulated)."""

    def __init__(self) -> None:
        self.received_bytes = 0

    def open_session(self, link: Link) -> _BinaryPort:
        return self

    def received(self, data: bytes) -> None:
        self.received_bytes += len(data)

    def closed(self) -> None:
        pass


class MacNetServer:
    """Serves a :class:`MacNetTester` on loopback TCP; an async context manager.

    ``manipulators`` act on every connection (shared objects, so counters span
    reconnects). ``binary_port`` (None: off) accepts connections and holds them open,
    reading and counting what arrives (``binary_bytes``) without answering.
    """

    def __init__(
        self,
        tester: MacNetTester,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        binary_port: int | None = None,
        manipulators: Sequence[Any] = (),
        command_log: CommandLog | None = None,
    ) -> None:
        self.tester = tester
        self.host = host
        self.port = port
        self.binary_port = binary_port
        self.server = SimServer(
            _MacNetDevice(tester), manipulators=manipulators, command_log=command_log
        )
        self._binary_server: SimServer | None = None  # the binary port's server
        self._binary = _BinaryPort()

    @property
    def url(self) -> str:
        return f"tcp://{self.host}:{self.port}"

    @property
    def manipulators(self) -> list[Any]:
        return self.server.manipulators

    @property
    def connections(self) -> int:
        return self.server.connections

    @property
    def binary_bytes(self) -> int:
        """Bytes received on the binary port (read, never answered)."""
        return self._binary.received_bytes

    async def __aenter__(self) -> MacNetServer:
        await self.server.__aenter__()
        try:
            await self.server.listen_tcp(self.host, self.port)
            assert self.server.port is not None
            self.port = self.server.port
            if self.binary_port is not None:
                self._binary = _BinaryPort()
                self._binary_server = SimServer(self._binary)
                await self._binary_server.__aenter__()
                await self._binary_server.listen_tcp(self.host, self.binary_port)
                self.binary_port = self._binary_server.port
        except BaseException:
            await self.aclose()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._binary_server is not None:
            await self._binary_server.aclose()
        await self.server.aclose()

    def drop_connections(self) -> None:
        """Close every client connection now (a link failure seen from the tester)."""
        self.server.drop_connections()
