"""Station files: which instruments a lab has and what is wired to what.

```yaml
name: lab-1
instruments:
  cycler: {driver: maccor, address: "tcp://10.0.0.20:57570", channels: 8}
  vmp:    {driver: biologic, address: "biologic://10.0.0.41", channels: 16,
           options: {model: VMP-300, library_dir: 'C:\\EC-Lab Development Package\\lib'}}
  oven:   {driver: espec, address: "tcp://10.0.0.30:57732"}
positions:
  - {name: A1, cycler: cycler/0, impedance: vmp/0, chamber: oven}
  - {name: A2, cycler: cycler/1, impedance: vmp/1, chamber: oven}
```

A driver name is looked up in the instrument registry
(:mod:`orchestrator.instruments.table`, never imported from the file), so a station file
cannot run arbitrary code. Each driver's ``options`` are typed and checked when the file
loads, and each reference is checked against what its instrument offers (a position's
``cycler`` must name a driver that offers cycler channels). ``--sim`` swaps every
instrument for its simulator.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializeAsAny,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from labrig.protocols.yamlsafe import YamlProblem, read_yaml

from .instruments import REGISTRY, Capability, InstrumentOptions, NoOptions, entry

__all__ = [
    "DEFAULT_STATION",
    "INPROCESS_STATION",
    "InstrumentConfig",
    "Position",
    "StationConfig",
    "StationError",
    "load_station",
]

_NAME = r"^[A-Za-z0-9_.-]{1,64}$"


class StationError(ValueError):
    """A station file is invalid; the message names the file and field."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InstrumentConfig(_Model):
    """One instrument: its driver (a registry entry), address, channels and options.

    ``options`` are validated against the driver's own options model, so an unknown or
    mistyped key is an error that names it.
    """

    driver: str
    address: str | None = None
    channels: Annotated[int, Field(ge=1, le=4096)] = 1
    options: SerializeAsAny[InstrumentOptions] = Field(
        default_factory=NoOptions, validate_default=True
    )

    @field_validator("driver")
    @classmethod
    def _known(cls, driver: str) -> str:
        entry(driver)  # ValueError naming the known drivers
        return driver

    @field_validator("options", mode="before")
    @classmethod
    def _typed(cls, raw: object, info: ValidationInfo) -> object:
        found = REGISTRY.get(info.data.get("driver", ""))
        if found is None:
            return NoOptions()  # the unknown driver is the error reported
        return found.parse_options(raw)

    @model_validator(mode="after")
    def _address(self) -> InstrumentConfig:
        if self.address is not None and not re.match(r"^[a-z][a-z0-9+-]*://", self.address):
            raise ValueError(f"address {self.address!r} must be a URL like tcp://host:port")
        self.options.check_channels(self.channels)
        return self


class Position(_Model):
    """Where one cell (or sample) sits: ``instrument/channel`` references."""

    name: Annotated[str, Field(pattern=_NAME)]
    cycler: str | None = None
    impedance: str | None = None
    chamber: str | None = None
    kind: Literal["cell", "furnace"] = "cell"
    furnace: str | None = None
    gas: dict[str, str] = Field(default_factory=dict)

    def refs(self) -> list[tuple[Capability, str, str]]:
        """Every instrument reference as (capability asked, label, ``instrument/channel``);
        the label is the capability's name, or a gas line's name."""
        roles = (
            (Capability.cycler, self.cycler),
            (Capability.impedance, self.impedance),
            (Capability.chamber, self.chamber),
            (Capability.furnace, self.furnace),
        )
        out = [(cap, cap.value, ref) for cap, ref in roles if ref is not None]
        out.extend((Capability.gas, line, ref) for line, ref in self.gas.items())
        return out


class StationConfig(_Model):
    name: Annotated[str, Field(pattern=_NAME)]
    instruments: dict[str, InstrumentConfig]
    positions: list[Position] = Field(min_length=1)

    @field_validator("positions")
    @classmethod
    def _refs(cls, positions: list[Position], info: ValidationInfo) -> list[Position]:
        """Every reference names a channel of an instrument that offers what is asked."""
        instruments = info.data.get("instruments")
        if instruments is None:
            return positions  # the instruments' own errors are reported
        errors: list[InitErrorDetails] = []
        for i, pos in enumerate(positions):
            for cap, label, ref in pos.refs():
                loc: tuple[str | int, ...] = (
                    (i, "gas", label) if cap is Capability.gas else (i, cap.value)
                )
                problem = _reference_problem(instruments, cap, ref)
                if problem is not None:
                    errors.append(
                        InitErrorDetails(
                            type=PydanticCustomError(
                                "reference", "{problem}", {"problem": problem}
                            ),
                            loc=loc,
                            input=ref,
                        )
                    )
        if errors:
            raise ValidationError.from_exception_data("StationConfig", errors)
        return positions

    @model_validator(mode="after")
    def _unique(self) -> StationConfig:
        names = [p.name for p in self.positions]
        if len(set(names)) != len(names):
            raise ValueError("position names must be unique")
        return self

    def resolve(self, ref: str) -> tuple[str, int]:
        """``"cycler/3"`` -> ("cycler", 3); checks the instrument and channel exist."""
        return _resolve(self.instruments, ref)

    def subset(self, position: str) -> StationConfig:
        """This station cut down to one position and the instruments it uses (what a run
        directory records: enough to resume it, and small on a station of 1000 cells)."""
        pos = self.position(position)
        used = {ref.partition("/")[0] for _, _, ref in pos.refs()}
        return StationConfig(
            name=self.name,
            instruments={k: v for k, v in self.instruments.items() if k in used},
            positions=[pos],
        )

    def position(self, name: str | None, kind: str = "cell") -> Position:
        """The named position, or the first of the wanted kind."""
        if name is None:
            for p in self.positions:
                if p.kind == kind:
                    return p
            raise StationError(f"station {self.name!r} has no {kind} position")
        for p in self.positions:
            if p.name == name:
                return p
        raise StationError(
            f"station {self.name!r} has no position {name!r} "
            f"(have {', '.join(p.name for p in self.positions)})"
        )


def _resolve(instruments: Mapping[str, InstrumentConfig], ref: str) -> tuple[str, int]:
    name, _, chan = ref.partition("/")
    inst = instruments.get(name)
    if inst is None:
        raise ValueError(f"{ref!r} names no instrument (have {', '.join(instruments)})")
    if chan and not chan.isdigit():
        raise ValueError(f"{ref!r}: the channel after '/' must be a number")
    index = int(chan) if chan else 0
    if not 0 <= index < inst.channels:
        raise ValueError(f"{ref!r}: {name} has channels 0..{inst.channels - 1}")
    return name, index


def _reference_problem(
    instruments: Mapping[str, InstrumentConfig], cap: Capability, ref: str
) -> str | None:
    try:
        name, _ = _resolve(instruments, ref)
    except ValueError as exc:
        return str(exc)
    driver = instruments[name].driver
    offers = REGISTRY[driver].capabilities
    if cap in offers:
        return None
    return (
        f"{ref!r} is a {driver} instrument, which offers {', '.join(sorted(offers))}, "
        f"not {cap.value}"
    )


_THERMAL_POSITION = Position(
    name="tube1",
    kind="furnace",
    furnace="furnace",
    gas={"N2": "mfc/0", "O2": "mfc/1", "Ar": "mfc/2"},
)

#: The built-in simulated station, as the lab has it: an 8-channel MACCOR (MacNet), a
#: BioLogic VMP-300 whose channel 0..7 takes the EIS of the cell on MACCOR channel 0..7
#: (EC-Lab Development Package), a climate chamber, and a tube furnace (Eurotherm) with
#: three mass-flow controllers (Alicat). With ``--sim`` each instrument is its simulator
#: (on the wire, or where the vendor's library stands), reached through the same driver
#: code as in the lab. examples/palmsens_station.yaml takes the EIS on a PalmSens instead.
DEFAULT_STATION = StationConfig(
    name="sim",
    instruments={
        "cycler": InstrumentConfig(driver="maccor", address="tcp://127.0.0.1:57570", channels=8),
        "eis": InstrumentConfig.model_validate(
            {
                "driver": "biologic",
                "address": "biologic://USB0",
                "channels": 8,
                "options": {"model": "VMP-300"},
            }
        ),
        "chamber": InstrumentConfig(driver="sim-chamber"),
        "furnace": InstrumentConfig.model_validate(
            {"driver": "eurotherm", "options": {"series": "2400"}}
        ),
        "mfc": InstrumentConfig.model_validate(
            {"driver": "alicat", "channels": 3, "options": {"units": "ABC"}}
        ),
    },
    positions=[
        *(
            Position(name=f"ch{i}", cycler=f"cycler/{i}", impedance=f"eis/{i}", chamber="chamber")
            for i in range(8)
        ),
        _THERMAL_POSITION,
    ],
)

#: The quickest dry run: cycler and impedance channels simulated in process, no wire.
INPROCESS_STATION = StationConfig(
    name="sim-inprocess",
    instruments={
        "cycler": InstrumentConfig(driver="sim", channels=8),
        "eis": InstrumentConfig(driver="sim-eis", channels=8),
        "chamber": InstrumentConfig(driver="sim-chamber"),
        "furnace": InstrumentConfig.model_validate(
            {"driver": "eurotherm", "options": {"series": "2400"}}
        ),
        "mfc": InstrumentConfig.model_validate(
            {"driver": "alicat", "channels": 3, "options": {"units": "ABC"}}
        ),
    },
    positions=[
        *(
            Position(name=f"ch{i}", cycler=f"cycler/{i}", impedance=f"eis/{i}", chamber="chamber")
            for i in range(8)
        ),
        _THERMAL_POSITION,
    ],
)


def load_station(path: Path) -> StationConfig:
    """Read and check a station file; StationError lists every problem as
    ``file:line: field.path: what is wrong``."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise StationError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise StationError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    try:
        doc = read_yaml(text)
    except YamlProblem as exc:
        at = f":{exc.line}" if exc.line is not None else ""
        raise StationError(f"{path}{at}: not valid YAML: {exc.message}") from None
    if not isinstance(doc.data, dict):
        raise StationError(f"{path}: a station file is a mapping with name, instruments, positions")
    try:
        return StationConfig.model_validate(doc.data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors(include_url=False):
            loc = tuple(err["loc"])
            line = doc.line_of(loc)
            where = f"{path}:{line}" if line is not None else str(path)
            field = ".".join(str(p) for p in loc)
            msg = str(err["msg"]).removeprefix("Value error, ")
            lines.append(f"{where}: {field}: {msg}" if field else f"{where}: {msg}")
        raise StationError("\n".join(lines)) from None
