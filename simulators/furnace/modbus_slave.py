"""Modbus RTU slave framing (sans I/O): bytes in, reply frames out.

Requests are framed by their function code's known length and the CRC; a byte that cannot
start a valid frame is dropped (hunting), and a pause longer than ``gap_s`` between chunks
discards a partial frame, as the RTU 3.5-character silence does on a real line. Frames for
other slave addresses are ignored; broadcasts (address 0) are executed without a reply.
The CRC is computed here from the specification (the drivers use pymodbus'), so the
simulator stays an independent reading of the wire format. ``history`` keeps the last
request and reply frames, for conversation tests.
"""

from __future__ import annotations

import struct
from collections import deque
from typing import Protocol

__all__ = ["ModbusError", "RegisterBank", "RtuSlave", "crc_bytes"]

ILLEGAL_FUNCTION, ILLEGAL_ADDRESS, ILLEGAL_VALUE = 1, 2, 3


def _crc_table() -> tuple[int, ...]:
    # CRC-16/MODBUS: polynomial 0xA001 (reflected 0x8005), initial 0xFFFF
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC_TABLE = _crc_table()


def crc_bytes(frame: bytes) -> bytes:
    """The two CRC bytes to append to ``frame``, low byte first as RTU sends them."""
    crc = 0xFFFF
    for b in frame:
        crc = (crc >> 8) ^ _CRC_TABLE[(crc ^ b) & 0xFF]
    return crc.to_bytes(2, "little")


class ModbusError(Exception):
    """Raised by a register bank to answer with a Modbus exception code."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class RegisterBank(Protocol):
    def read(self, start: int, count: int) -> list[int]: ...

    def write(self, start: int, values: list[int]) -> None: ...


class RtuSlave:
    """One slave address on a line; ``feed`` returns the replies to send."""

    def __init__(self, address: int, bank: RegisterBank, *, gap_s: float = 0.005) -> None:
        self.address = address
        self.bank = bank
        self.gap_s = gap_s
        self._buf = bytearray()
        self._last_rx = float("-inf")
        self.frames_ok = 0
        self.frames_bad = 0
        self.history: deque[tuple[bytes, bytes | None]] = deque(maxlen=64)

    def _frame_length(self) -> int | None:
        """Length of the frame at the buffer start, None if unknown yet, -1 if invalid."""
        buf = self._buf
        if len(buf) < 2:
            return None
        fc = buf[1]
        if fc in (3, 6):
            return 8
        if fc == 16:
            if len(buf) < 7:
                return None
            return 9 + buf[6]
        return -1

    def feed(self, data: bytes, now: float) -> list[bytes]:
        if now - self._last_rx > self.gap_s:
            self._buf.clear()
        self._last_rx = now
        self._buf += data
        replies: list[bytes] = []
        while self._buf:
            n = self._frame_length()
            if n is None:
                break
            if n > 0 and len(self._buf) < n:
                break
            frame = bytes(self._buf[:n]) if n > 0 else b""
            if n < 0 or crc_bytes(frame[:-2]) != frame[-2:]:
                self.frames_bad += 1
                del self._buf[0]
                continue
            del self._buf[:n]
            self.frames_ok += 1
            if frame[0] not in (0, self.address):
                continue
            reply = self._execute(frame)
            self.history.append((frame, reply if frame[0] != 0 else None))
            if frame[0] != 0:
                replies.append(reply)
        return replies

    def _execute(self, frame: bytes) -> bytes:
        fc = frame[1]
        try:
            if fc == 3:
                start, count = struct.unpack(">HH", frame[2:6])
                if not 1 <= count <= 125:
                    raise ModbusError(ILLEGAL_VALUE)
                values = self.bank.read(start, count)
                pdu = struct.pack(f">BB{count}H", fc, 2 * count, *values)
            elif fc == 6:
                reg, value = struct.unpack(">HH", frame[2:6])
                self.bank.write(reg, [value])
                pdu = frame[1:6]
            else:
                start, count, nbytes = struct.unpack(">HHB", frame[2:7])
                if not 1 <= count <= 123 or nbytes != 2 * count:
                    raise ModbusError(ILLEGAL_VALUE)
                values = list(struct.unpack(f">{count}H", frame[7 : 7 + nbytes]))
                self.bank.write(start, values)
                pdu = frame[1:6]
        except ModbusError as exc:
            pdu = bytes([fc | 0x80, exc.code])
        head = bytes([self.address]) + pdu
        return head + crc_bytes(head)
