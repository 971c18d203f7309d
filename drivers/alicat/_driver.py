"""Alicat controllers sharing one serial bus; one :class:`AlicatFlow` per unit id."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable

from labrig.drivers.alicat._codec import (
    AlicatFrame,
    decode_frame,
    decode_register,
    encode_gas,
    encode_poll,
    encode_read_register,
    encode_setpoint,
    encode_write_register,
    gas_number,
)
from labrig.drivers.capabilities import InstrumentError, InstrumentProtocolError, InstrumentTimeout
from labrig.drivers.retry import NO_WAIT, Retry
from labrig.drivers.transport import LineStream

__all__ = ["AlicatBus", "AlicatFlow", "LineStream"]


class AlicatBus:
    """One serial line, any number of unit ids; one exchange at a time (a lock).

    A reply that does not parse is retried ``retries`` times (commands here set absolute
    values, so repeating them is harmless); stale bytes are drained first.
    """

    def __init__(self, stream: LineStream, *, timeout_s: float = 0.5, retries: int = 2) -> None:
        self._stream = stream
        self._lock = asyncio.Lock()
        self.timeout_s = timeout_s
        self.retries = retries

    async def _drain(self) -> None:
        await self._stream.read_available()

    def _policy(
        self, on: type[InstrumentError], when: Callable[[BaseException], bool] | None = None
    ) -> Retry:
        # commands here set absolute values: sending one again at once is harmless
        return Retry(on=on, when=when, attempts=self.retries + 1, backoff=NO_WAIT)

    async def exchange(self, command: bytes) -> bytes:
        """Send one command, return the reply line (with its CR)."""
        async with self._lock:
            return await self._policy(InstrumentTimeout).call(lambda: self._exchange(command))

    async def _exchange(self, command: bytes) -> bytes:
        try:
            await self._drain()
            async with asyncio.timeout(self.timeout_s):
                await self._stream.write(command)
                return await self._stream.read_until(b"\r")
        except (TimeoutError, InstrumentTimeout) as exc:
            raise InstrumentTimeout(
                f"no Alicat reply within {self.timeout_s} s (sent {command!r})"
            ) from exc

    async def query_frame(self, unit: str, command: bytes) -> AlicatFrame:
        reply = b""

        async def once() -> AlicatFrame:
            nonlocal reply
            reply = await self.exchange(command)
            return decode_frame(unit, reply, command)

        # a refusal ("?") is an answer, not noise: only garbled replies are asked again
        policy = self._policy(InstrumentProtocolError, when=lambda _: b"?" not in reply)
        return await policy.call(once)


class AlicatFlow:
    """One mass-flow controller (unit id ``unit``) as a :class:`~drivers.capabilities.GasFlow`.

    ``full_scale_sccm`` bounds setpoints; ``safe_flow_sccm`` is what ``safe_state`` sets
    (None keeps the present flow: a furnace purge stays on through a trip).
    ``setpoint_tolerance`` is how far the echoed setpoint may differ from the request.
    """

    def __init__(
        self,
        bus: AlicatBus,
        unit: str = "A",
        *,
        name: str | None = None,
        full_scale_sccm: float | None = None,
        safe_flow_sccm: float | None = None,
        setpoint_tolerance: float = 0.02,
    ) -> None:
        encode_poll(unit)  # validates the id
        self._bus = bus
        self.unit = unit
        self._name = name if name is not None else f"mfc-{unit}"
        self.full_scale_sccm = full_scale_sccm
        self.safe_flow_sccm = safe_flow_sccm
        self.setpoint_tolerance = setpoint_tolerance

    @property
    def name(self) -> str:
        return self._name

    async def read_frame(self) -> AlicatFrame:
        """A full data frame (pressure, temperature, flows, setpoint, gas, status)."""
        return await self._bus.query_frame(self.unit, encode_poll(self.unit))

    async def read_flow(self) -> float:
        """Mass flow, sccm."""
        return (await self.read_frame()).mass_flow

    async def set_flow(self, sccm: float) -> None:
        """Set the mass-flow setpoint and check the controller echoes it."""
        if not math.isfinite(sccm) or sccm < 0:
            raise InstrumentError(f"{self._name}: flow must be >= 0 sccm, got {sccm}")
        if self.full_scale_sccm is not None and sccm > self.full_scale_sccm:
            raise InstrumentError(
                f"{self._name}: {sccm} sccm exceeds full scale {self.full_scale_sccm} sccm"
            )
        command = encode_setpoint(self.unit, sccm)
        frame = await self._bus.query_frame(self.unit, command)
        if abs(frame.setpoint - sccm) > self.setpoint_tolerance + 1e-3 * sccm:
            raise InstrumentProtocolError(
                f"{self._name}: setpoint reads {frame.setpoint} after setting {sccm}",
                command=command,
            )

    async def select_gas(self, gas: str) -> None:
        """Select a gas by name (``N2``, ``O2``, ``Air``, ``Ar`` ...) and check it took."""
        try:
            number = gas_number(gas)
        except ValueError as exc:
            raise InstrumentError(f"{self._name}: {exc}") from None
        command = encode_gas(self.unit, number)
        frame = await self._bus.query_frame(self.unit, command)
        if frame.gas.lower() != gas.strip().lower():
            raise InstrumentProtocolError(
                f"{self._name}: gas reads {frame.gas} after selecting {gas}", command=command
            )

    async def read_register(self, register: int) -> int:
        command = encode_read_register(self.unit, register)
        return decode_register(self.unit, register, await self._bus.exchange(command), command)

    async def write_register(self, register: int, value: int) -> int:
        """Write a register; returns the value the controller reports back."""
        command = encode_write_register(self.unit, register, value)
        return decode_register(self.unit, register, await self._bus.exchange(command), command)

    async def safe_state(self) -> None:
        """Set ``safe_flow_sccm`` if configured; otherwise keep the flow (purge stays on)."""
        if self.safe_flow_sccm is not None:
            await self.set_flow(self.safe_flow_sccm)
        else:
            await self.read_frame()  # prove the controller is still there
