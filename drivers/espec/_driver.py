"""ESPEC-style chamber as a :class:`~drivers.capabilities.ChamberController`."""

from __future__ import annotations

import asyncio
import math

from labrig.drivers.capabilities import InstrumentError, InstrumentTimeout
from labrig.drivers.espec._codec import (
    MODES,
    ChamberMonitor,
    ChamberTemperature,
    decode_monitor,
    decode_ok,
    decode_temperature,
    encode,
    encode_mode,
    encode_power,
    encode_setpoint,
)
from labrig.drivers.transport import LineStream

__all__ = ["EspecChamber"]


class EspecChamber:
    """One chamber on its own line. ``safe_mode`` is what ``safe_state`` selects
    (``STANDBY``: conditioning stops, the chamber stays powered and answering)."""

    def __init__(
        self,
        stream: LineStream,
        *,
        name: str = "chamber",
        timeout_s: float = 1.0,
        safe_mode: str = "STANDBY",
    ) -> None:
        if safe_mode not in MODES:
            raise ValueError(f"safe_mode must be one of {MODES}")
        self._stream = stream
        self._name = name
        self._lock = asyncio.Lock()
        self.timeout_s = timeout_s
        self.safe_mode = safe_mode

    @property
    def name(self) -> str:
        return self._name

    async def exchange(self, command: bytes) -> bytes:
        """One command, one CR LF reply line, under the lock and a deadline."""
        async with self._lock:
            await self._stream.read_available()  # stale bytes of an earlier reply
            try:
                async with asyncio.timeout(self.timeout_s):
                    await self._stream.write(command)
                    return await self._stream.read_until(b"\r\n")
            except (TimeoutError, InstrumentTimeout):
                raise InstrumentTimeout(
                    f"{self._name}: no reply within {self.timeout_s} s (sent {command!r})"
                ) from None

    async def _setting(self, command: bytes) -> None:
        decode_ok(command, await self.exchange(command))

    async def read_status(self) -> ChamberTemperature:
        command = encode("TEMP?")
        return decode_temperature(await self.exchange(command), command)

    async def monitor(self) -> ChamberMonitor:
        command = encode("MON?")
        return decode_monitor(await self.exchange(command), command)

    async def read_temperature(self) -> float:
        return (await self.read_status()).measured_C

    async def set_temperature(self, celsius: float) -> None:
        """Power on, set the setpoint (inside the chamber's alarm band), run CONSTANT."""
        if not math.isfinite(celsius):
            raise InstrumentError(f"{self._name}: setpoint must be finite, got {celsius}")
        status = await self.read_status()
        if not status.lower_C < celsius < status.upper_C:
            raise InstrumentError(
                f"{self._name}: {celsius} °C is outside the chamber's alarm band"
                f" {status.lower_C}..{status.upper_C} °C"
            )
        await self._setting(encode_power(True))
        await self._setting(encode_setpoint(celsius))
        await self._setting(encode_mode("CONSTANT"))

    async def set_mode(self, mode: str) -> None:
        await self._setting(encode_mode(mode))

    async def safe_state(self) -> None:
        await self._setting(encode_mode(self.safe_mode))
