"""Eurotherm 2400 / 3200 controller as a :class:`~drivers.capabilities.Furnace`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from types import TracebackType

from labrig.drivers.capabilities import (
    FurnaceSegment,
    InstrumentError,
    InstrumentProtocolError,
    SafetyTrip,
)
from labrig.drivers.eurotherm._codec import (
    RAMP_UNIT_SECONDS,
    REG,
    EurothermSettings,
    decode_scaled,
    decode_segment,
    decode_status,
    encode_scaled,
    encode_segments,
    float_address,
    segment_address,
    settings_2400,
)
from labrig.drivers.modbus import ModbusRtuBus

__all__ = ["EurothermFurnace", "SensorBreak"]


class SensorBreak(SafetyTrip):
    """The controller reports its thermocouple open (sensor break)."""


class EurothermFurnace:
    """One controller (slave ``address``) on a :class:`~drivers.modbus.ModbusRtuBus`.

    Programmes are written into the controller, which then runs the ramps and dwells
    itself; the host only starts, watches and resets them. ``safe_state`` switches the loop
    to manual with output 0 and resets the programme, and verifies the output read back.

    Several controllers may share one bus; :meth:`from_url` gives one with a bus of its
    own, opened and closed with the furnace (``async with``).
    """

    def __init__(
        self,
        bus: ModbusRtuBus,
        address: int = 1,
        settings: EurothermSettings | None = None,
        *,
        name: str = "furnace",
    ) -> None:
        self._bus = bus
        self._address = address
        self.settings = settings if settings is not None else settings_2400()
        self._name = name
        self._owns_bus = False

    @classmethod
    def from_url(
        cls,
        url: str,
        address: int = 1,
        settings: EurothermSettings | None = None,
        *,
        name: str = "furnace",
        timeout_s: float = 1.0,
        retries: int = 2,
    ) -> EurothermFurnace:
        """``async with EurothermFurnace.from_url("serial:///dev/ttyUSB0?baudrate=9600")``."""
        furnace = cls(ModbusRtuBus(url, timeout_s=timeout_s, retries=retries), address,
                      settings, name=name)  # fmt: skip
        furnace._owns_bus = True
        return furnace

    @property
    def bus(self) -> ModbusRtuBus:
        return self._bus

    async def __aenter__(self) -> EurothermFurnace:
        if self._owns_bus:
            await self._bus.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._owns_bus:
            await self._bus.close()

    @property
    def name(self) -> str:
        return self._name

    # ------------------------------------------------------------------ register access

    async def _read(self, register: int) -> int:
        return (await self._bus.read_registers(self._address, register, 1))[0]

    async def _write(self, register: int, raw: int) -> None:
        await self._bus.write_register(self._address, register, raw)

    async def _read_float(self, register: int) -> float:
        return await self._bus.read_float(self._address, float_address(register))

    async def _read_value(self, register: int, decimals: int) -> float:
        if self.settings.use_float_registers:
            value = await self._read_float(register)
            if not math.isfinite(value):
                raise InstrumentProtocolError(f"register {register} read {value}")
            return value
        return decode_scaled(await self._read(register), decimals)

    # ------------------------------------------------------------------ readings

    async def read_temperature(self) -> float:
        """Process value in °C. Raises :class:`SensorBreak` when the thermocouple is open."""
        if self.settings.use_float_registers:
            value = await self._read_float(REG["pv"])
            if math.isnan(value):
                raise SensorBreak(f"{self._name}: thermocouple open (PV is NaN)")
            if not math.isfinite(value):
                raise InstrumentProtocolError(f"{self._name}: PV read {value}")
            return value
        raw = await self._read(REG["pv"])
        if raw == self.settings.sensor_break_raw:
            raise SensorBreak(f"{self._name}: thermocouple open (PV reads sensor break)")
        return decode_scaled(raw, self.settings.decimals)

    async def read_setpoint(self) -> float:
        """The working setpoint (where a ramp or programme is now), °C."""
        return await self._read_value(REG["working_sp"], self.settings.decimals)

    async def read_target_setpoint(self) -> float:
        """The target setpoint the loop ramps towards, °C."""
        return await self._read_value(REG["target_sp"], self.settings.decimals)

    async def read_output(self) -> float:
        """Heater output, %."""
        return await self._read_value(REG["output"], self.settings.output_decimals)

    async def is_manual(self) -> bool:
        return await self._read(REG["auto_manual"]) == self.settings.manual_value

    # ------------------------------------------------------------------ control

    async def _rate_unit_s(self) -> float:
        if self.settings.rate_unit_s is not None:
            return self.settings.rate_unit_s
        raw = await self._read(REG["ramp_units"])
        try:
            return RAMP_UNIT_SECONDS[raw]
        except KeyError:
            raise InstrumentProtocolError(
                f"{self._name}: unknown ramp units {raw} in register {REG['ramp_units']}"
            ) from None

    async def set_setpoint(self, celsius: float, rate_K_per_s: float | None = None) -> None:
        """Ramp to ``celsius`` at ``rate_K_per_s`` (None: no rate limit), in automatic.

        The rate limit is written before the setpoint, so the loop never jumps.
        """
        d = self.settings.decimals
        sp_raw = encode_scaled(celsius, d, "setpoint")
        if rate_K_per_s is None:
            rate_raw = 0
        else:
            if not math.isfinite(rate_K_per_s) or rate_K_per_s <= 0:
                raise InstrumentError(f"rate must be a positive number, got {rate_K_per_s}")
            rate_raw = encode_scaled(rate_K_per_s * await self._rate_unit_s(), d, "rate")
            if rate_raw == 0:
                raise InstrumentError(
                    f"rate {rate_K_per_s} K/s is below the controller's resolution"
                )
        await self._write(REG["sp_rate_limit"], rate_raw)
        await self._write(REG["auto_manual"], self.settings.auto_value)
        await self._write(REG["target_sp"], sp_raw)

    async def load_program(self, segments: Sequence[FurnaceSegment]) -> None:
        """Write the programme into the controller and read it back.

        Refused while a programme runs (the controller would reject edits anyway).
        """
        layout = self.settings.program
        if layout is None:
            raise InstrumentError(
                f"{self._name}: no programmer layout configured for a {self.settings.series}"
            )
        encoded = encode_segments(segments, layout, self.settings.decimals)
        status = await self.program_status()
        if status in ("running", "hold", "holdback"):
            raise InstrumentError(f"{self._name}: cannot load a programme while {status}")
        for i, regs in enumerate(encoded, start=1):
            await self._bus.write_registers(self._address, segment_address(layout, i), regs)
        for i, regs in enumerate(encoded, start=1):
            back = await self._bus.read_registers(
                self._address, segment_address(layout, i), len(regs)
            )
            if back != regs:
                raise InstrumentError(f"{self._name}: segment {i} read back {back}, wrote {regs}")

    async def run_program(self) -> None:
        """Start the loaded programme (in automatic)."""
        layout = self.settings.program
        if layout is not None and layout.program_select_register is not None:
            await self._write(layout.program_select_register, layout.program_number)
        await self._write(REG["auto_manual"], self.settings.auto_value)
        await self._write(REG["program_status"], self.settings.status_commands["run"])

    async def hold_program(self) -> None:
        await self._write(REG["program_status"], self.settings.status_commands["hold"])

    async def read_program(self) -> list[FurnaceSegment]:
        """The configured programme's segments, read back up to its ``end``."""
        layout = self.settings.program
        if layout is None:
            raise InstrumentError(
                f"{self._name}: no programmer layout configured for a {self.settings.series}"
            )
        segments: list[FurnaceSegment] = []
        for i in range(1, layout.max_segments + 1):
            regs = await self._bus.read_registers(
                self._address, segment_address(layout, i), layout.segment_stride
            )
            seg = decode_segment(regs, layout, self.settings.decimals)
            segments.append(seg)
            if seg.kind == "end":
                return segments
        raise InstrumentError(f"{self._name}: the programme has no end segment")

    async def program_status(self) -> str:
        """``reset``, ``running``, ``hold``, ``holdback`` or ``complete``."""
        return decode_status(await self._read(REG["program_status"]), self.settings)

    async def safe_state(self) -> None:
        """Manual mode with output 0, then programme reset; output read back.

        Every step is attempted even if an earlier one fails; the first failure is raised
        at the end. Heater off comes first because it matters most.
        """
        errors: list[Exception] = []
        steps = (
            (REG["auto_manual"], self.settings.manual_value),
            (REG["output"], 0),
            (REG["program_status"], self.settings.status_commands["reset"]),
        )
        for register, raw in steps:
            try:
                await self._write(register, raw)
            except InstrumentError as exc:
                errors.append(exc)
        try:
            out = await self.read_output()
            if out != 0.0:
                errors.append(InstrumentError(f"{self._name}: output reads {out} % after 0"))
        except InstrumentError as exc:
            errors.append(exc)
        if errors:
            raise errors[0]
