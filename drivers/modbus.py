"""Modbus RTU for instrument drivers, spoken through pymodbus.

:class:`ModbusRtuBus` is one RTU line, opened from a URL:

- ``serial:///dev/ttyUSB0?baudrate=9600&parity=E`` (an RS-485 adapter, a pseudo-terminal);
- ``tcp://host:port``: RTU frames tunnelled over TCP (serial servers, the simulators);
- another pyserial URL (``rfc2217://...``) goes to pyserial as the port.

pymodbus builds and checks the frames (CRC, slave address, function), waits ``timeout_s``
for each reply and tries ``retries`` more times, all on the running loop's clock, so a
dry run on the virtual clock sees simulated timeouts. Its background reconnection is
off: a dropped link is opened again, once, before the next request.

RTU replies carry no request id, so a reply that comes after its request timed out
could be taken for the answer to the next one (two reads of one register look alike).
pymodbus drops replies that arrive while nothing is asked; after an exchange that timed
out at least once, the bus stays quiet for ``quiet_s`` so a late reply lands then.

What goes wrong comes back as this project's typed errors, never as pymodbus' own:

- no reply at all, or an incomplete one: :class:`InstrumentTimeout`;
- bytes that are not a reply to the request (noise, bad CRC, another slave's address,
  another function, a write that does not echo): :class:`ModbusProtocolError`, carrying
  the frame sent and the bytes received;
- an exception reply (function | 0x80): :class:`ModbusException` with its code;
- the link went down or cannot be opened: :class:`TransportClosed`.

Several drivers (slave addresses) may share one bus; requests take turns.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient, ModbusBaseClient
from pymodbus.exceptions import ConnectionException
from pymodbus.exceptions import ModbusException as PymodbusError
from pymodbus.framer import FramerType
from pymodbus.pdu import ModbusPDU

from labrig.drivers.capabilities import InstrumentError, InstrumentProtocolError, InstrumentTimeout
from labrig.drivers.transport import TransportClosed, serial_settings

__all__ = [
    "EXCEPTION_NAMES",
    "ModbusException",
    "ModbusProtocolError",
    "ModbusRtuBus",
    "reply_problem",
]

# pymodbus logs every exhausted request at ERROR; what matters reaches the caller as an
# exception, so keep the library quiet unless the application configures logging.
logging.getLogger("pymodbus").addHandler(logging.NullHandler())

Request = Callable[[ModbusBaseClient], Awaitable[ModbusPDU]]

READ_HOLDING, WRITE_SINGLE, WRITE_MULTIPLE = 3, 6, 16
MAX_READ, MAX_WRITE = 125, 123

EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "slave device failure",
    5: "acknowledge",
    6: "slave device busy",
}


class ModbusProtocolError(InstrumentProtocolError):
    """A reply that is not a valid answer to the request that was sent."""


class ModbusException(ModbusProtocolError):
    """The slave answered with a Modbus exception (function code | 0x80)."""

    def __init__(self, code: int, *, command: bytes, reply: bytes) -> None:
        name = EXCEPTION_NAMES.get(code, "unknown exception")
        super().__init__(f"Modbus exception {code} ({name})", command=command, reply=reply)
        self.code = code


def reply_problem(request: bytes, received: bytes) -> str | None:
    """Why ``received`` cannot be (the start of) the RTU reply to ``request``.

    None when it can still become one (nothing yet, or a valid beginning): then the reply
    is late or truncated, not garbled. ``request`` is a whole RTU frame.
    """
    if not received:
        return None
    slave, fc = request[0], request[1]
    if received[0] != slave:
        return f"reply from slave {received[0]}, expected slave {slave}"
    if len(received) < 2:
        return None
    if received[1] == fc | 0x80:
        return "malformed Modbus exception reply (bad CRC)" if len(received) >= 5 else None
    if received[1] != fc:
        return f"reply function {received[1]}, expected {fc}"
    expected = 8
    if fc == READ_HOLDING:
        if len(received) < 3:
            return None
        count = int.from_bytes(request[4:6], "big")
        if received[2] != 2 * count:
            return f"reply carries {received[2]} data bytes, expected {2 * count}"
        expected = 5 + 2 * count
    if len(received) >= expected:
        return "bad CRC or malformed Modbus reply"
    return None


def _check(name: str, value: int, lo: int, hi: int) -> None:
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be {lo}..{hi}, got {value}")


def _u16(value: int) -> int:
    """A register value: signed (-32768..-1) or unsigned 16-bit integers."""
    _check("register value", value, -0x8000, 0xFFFF)
    return value & 0xFFFF


class ModbusRtuBus:
    """One Modbus RTU line reached by URL (see the module docstring); ``async with``."""

    def __init__(
        self, url: str, *, timeout_s: float = 1.0, retries: int = 2, quiet_s: float = 0.05
    ) -> None:
        if not math.isfinite(timeout_s) or timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries}")
        if not math.isfinite(quiet_s) or quiet_s < 0:
            raise ValueError(f"quiet_s must be >= 0, got {quiet_s}")
        self.url = url
        self.timeout_s = timeout_s
        self.retries = retries
        self.quiet_s = quiet_s
        #: exchanges that needed more than one try (each followed by a quiet time)
        self.retried = 0
        self._kind, self._target, self._settings = _parse(url)
        self._client: ModbusBaseClient | None = None
        self._lock = asyncio.Lock()
        self._sent = b""
        self._received = b""
        self._buffer = b""
        self._dropped = False
        self.connects = 0

    # ------------------------------------------------------------------ life cycle
    def _make_client(self) -> ModbusBaseClient:
        common: dict[str, Any] = {
            "name": self.url,
            "reconnect_delay": 0,  # no background reconnection: we reopen before a request
            "timeout": self.timeout_s,
            "retries": self.retries,
            "trace_packet": self._trace_packet,
            "trace_connect": self._trace_connect,
        }
        if self._kind == "tcp":
            host, port = self._target
            return AsyncModbusTcpClient(host, port=port, framer=FramerType.RTU, **common)
        return AsyncModbusSerialClient(self._target, framer=FramerType.RTU, **self._settings,
                                       **common)  # fmt: skip

    async def open(self) -> None:
        if self._client is not None and self._client.connected:
            return
        if self._client is None:
            self._client = self._make_client()
        self._dropped = False
        if not await self._client.connect():
            raise TransportClosed(f"cannot open Modbus link {self.url}")
        self.connects += 1

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

    async def __aenter__(self) -> ModbusRtuBus:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def _trace_connect(self, connected: bool) -> None:
        if not connected:
            self._dropped = True

    def _trace_packet(self, sending: bool, data: bytes) -> bytes:
        """Keep the frame sent and the bytes received since, for error reports."""
        if sending:
            self._sent, self._received, self._buffer = data, b"", b""
        else:
            # pymodbus hands over its whole receive buffer each time: keep the new part
            fresh = data[len(self._buffer) :] if data.startswith(self._buffer) else data
            self._received += fresh
            self._buffer = data
        return data

    # ------------------------------------------------------------------ requests
    async def read_registers(self, slave: int, start: int, count: int) -> list[int]:
        """Function 3: ``count`` holding registers from ``start`` (unsigned values)."""
        _check("register", start, 0, 0xFFFF)
        _check("register count", count, 1, MAX_READ)
        reply = await self._execute(
            slave, READ_HOLDING, lambda c: c.read_holding_registers(start, count=count,
                                                                     device_id=slave)
        )  # fmt: skip
        registers = list(reply.registers)
        if len(registers) != count:
            raise ModbusProtocolError(
                f"reply carries {len(registers)} registers, expected {count}",
                command=self._sent, reply=self._received,
            )  # fmt: skip
        return registers

    async def read_float(self, slave: int, start: int) -> float:
        """An IEEE-754 single in two registers from ``start``, high word first."""
        hi, lo = await self.read_registers(slave, start, 2)
        value = ModbusBaseClient.convert_from_registers([hi, lo], ModbusBaseClient.DATATYPE.FLOAT32)
        if not isinstance(value, float):  # pymodbus gives a float for FLOAT32
            raise ModbusProtocolError(f"registers {hi}, {lo} are not a float")
        return value

    async def write_register(self, slave: int, register: int, value: int) -> None:
        """Function 6: one register; the acknowledgement must echo it."""
        _check("register", register, 0, 0xFFFF)
        raw = _u16(value)
        reply = await self._execute(
            slave, WRITE_SINGLE, lambda c: c.write_register(register, raw, device_id=slave)
        )
        if reply.address != register or list(reply.registers) != [raw]:
            raise ModbusProtocolError(
                "write acknowledgement does not echo the request",
                command=self._sent, reply=self._received,
            )  # fmt: skip

    async def write_registers(self, slave: int, start: int, values: Sequence[int]) -> None:
        """Function 16: consecutive registers from ``start``; the ack must echo them."""
        _check("register", start, 0, 0xFFFF)
        _check("number of registers", len(values), 1, MAX_WRITE)
        words = [_u16(v) for v in values]
        reply = await self._execute(
            slave, WRITE_MULTIPLE, lambda c: c.write_registers(start, words, device_id=slave)
        )
        if reply.address != start or reply.count != len(words):
            raise ModbusProtocolError(
                "write acknowledgement does not echo the request",
                command=self._sent, reply=self._received,
            )  # fmt: skip

    async def _execute(self, slave: int, function: int, request: Request) -> ModbusPDU:
        """One request through pymodbus, its outcome in our terms (module docstring)."""
        _check("Modbus slave address", slave, 1, 247)
        async with self._lock:
            if self._client is None or not self._client.connected:
                await self.open()
            assert self._client is not None
            self._sent = self._received = self._buffer = b""
            self._dropped = False
            try:
                reply = await request(self._client)
            except ConnectionException as exc:
                raise TransportClosed(f"{self.url}: Modbus link down ({exc})") from exc
            except PymodbusError as exc:
                failure = self._failure(slave)
                await self._quiet()
                raise failure from exc
            if reply.retries:
                await self._quiet()
            if reply.isError():
                raise ModbusException(
                    reply.exception_code, command=self._sent, reply=self._received
                )
            if reply.function_code != function:
                raise ModbusProtocolError(
                    f"reply function {reply.function_code}, expected {function}",
                    command=self._sent, reply=self._received,
                )  # fmt: skip
            return reply

    async def _quiet(self) -> None:
        """Let a late reply to a timed-out try arrive (and be dropped) before the next."""
        self.retried += 1
        await asyncio.sleep(self.quiet_s)

    def _failure(self, slave: int) -> InstrumentError:
        tries = self.retries + 1
        if self._dropped:
            return TransportClosed(f"{self.url}: Modbus link lost (slave {slave})")
        problem = reply_problem(self._sent, self._received) if self._sent else None
        if problem is not None:
            return ModbusProtocolError(problem, command=self._sent, reply=self._received)
        got = "an incomplete reply" if self._received else "no reply"
        return InstrumentTimeout(
            f"{self.url}: {got} from slave {slave} within {self.timeout_s} s"
            f" ({tries} tries; sent {self._sent.hex(' ')}"
            f"{'; got ' + self._received.hex(' ') if self._received else ''})"
        )


def _parse(url: str) -> tuple[str, Any, dict[str, Any]]:
    """(kind, target, serial settings) of a bus URL; ValueError naming what is wrong."""
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme == "tcp":
        parts = urlsplit(url)
        if not parts.hostname or parts.port is None:
            raise ValueError(f"Modbus URL {url!r}: expected tcp://host:port")
        return "tcp", (parts.hostname, parts.port), {}
    if scheme == "serial":
        path, settings = serial_settings(url)
        stopbits = settings.get("stopbits")
        if stopbits is not None:
            if stopbits not in (1.0, 2.0):
                raise ValueError(f"Modbus URL {url!r}: RTU uses 1 or 2 stop bits")
            settings["stopbits"] = int(stopbits)
        return "serial", path, settings
    if scheme in ("rfc2217", "socket", "loop", "spy", "alt", "hwgrep"):
        return "serial", url, {}
    raise ValueError(f"Modbus URL {url!r}: expected serial:///dev/ttyX or tcp://host:port")
