"""Modbus RTU, host side: a pure codec and a thin async client for one serial bus.

The codec builds request frames (function 3 read holding registers, 6 write single
register, 16 write multiple registers) and checks replies byte for byte against the request
they answer: slave address, function code, byte count, echoed address and count, CRC.
Anything else - an exception reply, a bad CRC, another slave's address, a truncated or
garbled frame - raises :class:`ModbusProtocolError` (an ``InstrumentProtocolError``) that
carries both the request and the reply.

The CRC is computed here from the specification (polynomial 0xA001, reflected, initial
0xFFFF, sent low byte first) rather than borrowed, so that the simulators, which use
pymodbus' helper, are an independent check of it.

:class:`ModbusRtuClient` owns one byte stream (an RS-485 bus, or RTU framing tunnelled over
TCP) and one lock, so several controllers with different slave addresses can share it.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from labrig.drivers.capabilities import InstrumentError, InstrumentProtocolError, InstrumentTimeout

__all__ = [
    "EXCEPTION_NAMES",
    "ByteStream",
    "ModbusException",
    "ModbusProtocolError",
    "ModbusRtuClient",
    "crc16",
    "decode_read_reply",
    "decode_write_reply",
    "encode_read_holding",
    "encode_write_multiple",
    "encode_write_single",
    "expected_reply_length",
    "float_to_registers",
    "registers_to_float",
    "with_crc",
]

READ_HOLDING = 3
WRITE_SINGLE = 6
WRITE_MULTIPLE = 16
MAX_READ = 125
MAX_WRITE = 123

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


def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC_TABLE = _crc_table()


def crc16(data: bytes) -> int:
    """Modbus CRC-16 of ``data`` as an integer (append it low byte first)."""
    crc = 0xFFFF
    for b in data:
        crc = (crc >> 8) ^ _CRC_TABLE[(crc ^ b) & 0xFF]
    return crc


def with_crc(pdu_with_address: bytes) -> bytes:
    """Append the CRC, low byte first, as RTU frames carry it."""
    return pdu_with_address + crc16(pdu_with_address).to_bytes(2, "little")


def _check_address(address: int) -> None:
    if not 1 <= address <= 247:
        raise ValueError(f"Modbus slave address must be 1..247, got {address}")


def _check_register(register: int) -> None:
    if not 0 <= register <= 0xFFFF:
        raise ValueError(f"register must be 0..65535, got {register}")


def _u16(value: int) -> int:
    """A register value: accept signed (-32768..-1) or unsigned 16-bit integers."""
    if not -0x8000 <= value <= 0xFFFF:
        raise ValueError(f"register value {value} does not fit in 16 bits")
    return value & 0xFFFF


def encode_read_holding(address: int, start: int, count: int) -> bytes:
    """Function 3: read ``count`` holding registers from ``start``."""
    _check_address(address)
    _check_register(start)
    if not 1 <= count <= MAX_READ:
        raise ValueError(f"can read 1..{MAX_READ} registers at once, asked for {count}")
    return with_crc(struct.pack(">BBHH", address, READ_HOLDING, start, count))


def encode_write_single(address: int, register: int, value: int) -> bytes:
    """Function 6: write one register."""
    _check_address(address)
    _check_register(register)
    return with_crc(struct.pack(">BBHH", address, WRITE_SINGLE, register, _u16(value)))


def encode_write_multiple(address: int, start: int, values: Sequence[int]) -> bytes:
    """Function 16: write consecutive registers from ``start``."""
    _check_address(address)
    _check_register(start)
    if not 1 <= len(values) <= MAX_WRITE:
        raise ValueError(f"can write 1..{MAX_WRITE} registers at once, got {len(values)}")
    words = [_u16(v) for v in values]
    head = struct.pack(">BBHHB", address, WRITE_MULTIPLE, start, len(words), 2 * len(words))
    return with_crc(head + struct.pack(f">{len(words)}H", *words))


def expected_reply_length(request: bytes, head: bytes) -> int:
    """Total length of the reply to ``request`` given its first three bytes ``head``.

    Used by the stream shell to know how much more to read. Does not validate; the decoder
    does. A header that cannot start a valid reply returns 3 (read nothing more).
    """
    if len(head) < 3:
        raise ValueError("need the first three bytes of the reply")
    fc = head[1]
    if fc & 0x80:
        return 5
    if fc == READ_HOLDING == request[1]:
        return 3 + head[2] + 2
    if fc in (WRITE_SINGLE, WRITE_MULTIPLE) and fc == request[1]:
        return 8
    return 3


def _check_frame(request: bytes, reply: bytes) -> None:
    """Common checks: length, CRC, slave address, function code / exception."""
    if len(reply) < 5:
        raise ModbusProtocolError("truncated Modbus reply", command=request, reply=reply)
    if crc16(reply[:-2]) != int.from_bytes(reply[-2:], "little"):
        raise ModbusProtocolError("bad CRC in Modbus reply", command=request, reply=reply)
    if reply[0] != request[0]:
        raise ModbusProtocolError(
            f"reply from slave {reply[0]}, expected slave {request[0]}",
            command=request,
            reply=reply,
        )
    if reply[1] == request[1] | 0x80:
        if len(reply) != 5:
            raise ModbusProtocolError(
                "malformed Modbus exception reply", command=request, reply=reply
            )
        raise ModbusException(reply[2], command=request, reply=reply)
    if reply[1] != request[1]:
        raise ModbusProtocolError(
            f"reply function {reply[1]}, expected {request[1]}", command=request, reply=reply
        )


def decode_read_reply(request: bytes, reply: bytes) -> list[int]:
    """Registers (unsigned 16-bit) from a function-3 ``reply`` to ``request``."""
    _check_frame(request, reply)
    count = int.from_bytes(request[4:6], "big")
    if reply[2] != 2 * count or len(reply) != 5 + 2 * count:
        raise ModbusProtocolError(
            f"reply carries {reply[2]} data bytes in a {len(reply)}-byte frame,"
            f" expected {2 * count}",
            command=request,
            reply=reply,
        )
    return list(struct.unpack(f">{count}H", reply[3 : 3 + 2 * count]))


def decode_write_reply(request: bytes, reply: bytes) -> None:
    """Check a function 6 or 16 acknowledgement: it echoes register and value/count."""
    _check_frame(request, reply)
    if len(reply) != 8 or reply[2:6] != request[2:6]:
        raise ModbusProtocolError(
            "write acknowledgement does not echo the request", command=request, reply=reply
        )


def float_to_registers(value: float) -> tuple[int, int]:
    """IEEE-754 single, high word first (the full-resolution area's layout)."""
    hi, lo = struct.unpack(">HH", struct.pack(">f", value))
    return hi, lo


def registers_to_float(hi: int, lo: int) -> float:
    value: float = struct.unpack(">f", struct.pack(">HH", hi, lo))[0]
    return value


class ByteStream(Protocol):
    """What the client needs from a transport: bytes out, an exact number of bytes in.

    :class:`drivers.transport.Transport` fits. Deadlines are applied by the client around
    these calls (``asyncio.timeout``); a stream's own deadline raising
    ``InstrumentTimeout`` is treated the same way.
    """

    async def write(self, data: bytes) -> None: ...

    async def read_exactly(self, n: int) -> bytes: ...


@dataclass
class _Exchange:
    request: bytes
    reply: bytes = b""


class ModbusRtuClient:
    """One RTU bus: serialises requests from any number of drivers with a lock.

    ``timeout_s`` bounds each exchange; ``retries`` repeats it after a timeout or a
    corrupted reply (reads and writes here are idempotent: they set absolute values).
    After a bad reply the client waits ``flush_s`` for stray bytes and discards them, as
    RTU framing resynchronises on a silent line.
    """

    def __init__(
        self,
        stream: ByteStream,
        *,
        timeout_s: float = 1.0,
        retries: int = 2,
        flush_s: float = 0.05,
    ) -> None:
        self._stream = stream
        self._lock = asyncio.Lock()
        self.timeout_s = timeout_s
        self.retries = retries
        self.flush_s = flush_s
        self.stale_bytes = 0

    async def _read_reply(self, ex: _Exchange) -> None:
        ex.reply = await self._stream.read_exactly(3)
        n = expected_reply_length(ex.request, ex.reply)
        if n > 3:
            ex.reply += await self._stream.read_exactly(n - 3)

    async def _flush(self) -> None:
        while True:
            try:
                async with asyncio.timeout(self.flush_s):
                    await self._stream.read_exactly(1)
            except (TimeoutError, InstrumentError):
                return

    async def _discard_stale(self) -> None:
        # A reply that arrived after its request timed out must not be taken for the
        # answer to the next request (two reads of one register look alike).
        drain = getattr(self._stream, "read_available", None)
        if drain is not None:
            stale = await drain()
            if stale:
                self.stale_bytes += len(stale)

    async def _transact(self, request: bytes) -> bytes:
        last: Exception | None = None
        async with self._lock:
            for _ in range(self.retries + 1):
                ex = _Exchange(request)
                try:
                    await self._discard_stale()
                    async with asyncio.timeout(self.timeout_s):
                        await self._stream.write(request)
                        await self._read_reply(ex)
                    # A syntactically complete frame: let the caller decode (and raise on
                    # exceptions, which are answers and not worth retrying).
                    if len(ex.reply) >= 5 and crc16(ex.reply[:-2]) == int.from_bytes(
                        ex.reply[-2:], "little"
                    ):
                        return ex.reply
                    last = ModbusProtocolError(
                        "bad CRC or malformed Modbus reply", command=request, reply=ex.reply
                    )
                except (TimeoutError, InstrumentTimeout):
                    last = InstrumentTimeout(
                        f"no complete Modbus reply within {self.timeout_s} s"
                        f" (sent {request.hex(' ')}; got {ex.reply.hex(' ') or 'nothing'})"
                    )
                await self._flush()
        assert last is not None
        raise last

    async def read_registers(self, address: int, start: int, count: int) -> list[int]:
        """Function 3; unsigned register values."""
        request = encode_read_holding(address, start, count)
        return decode_read_reply(request, await self._transact(request))

    async def write_register(self, address: int, register: int, value: int) -> None:
        """Function 6."""
        request = encode_write_single(address, register, value)
        decode_write_reply(request, await self._transact(request))

    async def write_registers(self, address: int, start: int, values: Sequence[int]) -> None:
        """Function 16."""
        request = encode_write_multiple(address, start, values)
        decode_write_reply(request, await self._transact(request))
