"""Station files: which instruments a lab has and what is wired to what.

```yaml
name: lab-1
instruments:
  cycler: {driver: maccor, address: "tcp://10.0.0.20:57570", channels: 8}
  eis:    {driver: palmsens, address: "serial:///dev/ttyUSB0?baudrate=230400"}
  oven:   {driver: espec, address: "tcp://10.0.0.30:57732"}
positions:
  - {name: A1, cycler: cycler/0, impedance: eis/0, chamber: oven}
  - {name: A2, cycler: cycler/1, impedance: eis/0, chamber: oven}
```

A driver name is looked up in a fixed table (never imported from the file), so a station
file cannot run arbitrary code. ``--sim`` swaps every instrument for its simulator.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

__all__ = [
    "DEFAULT_STATION",
    "DRIVERS",
    "INPROCESS_STATION",
    "InstrumentConfig",
    "Position",
    "StationConfig",
    "StationError",
    "load_station",
]

# Driver names a station may use: the instrument family and the capability it offers.
DRIVERS: dict[str, str] = {
    "sim": "cycler",  # in-process simulated cycler (one simulated cell per channel)
    "sim-eis": "impedance",  # in-process simulated impedance channel
    "sim-chamber": "chamber",
    "maccor": "cycler",
    "palmsens": "impedance",
    "keithley2450": "cycler",
    "eurotherm": "furnace",
    "alicat": "gas",
    "espec": "chamber",
}

_NAME = r"^[A-Za-z0-9_.-]{1,64}$"


class StationError(ValueError):
    """A station file is invalid; the message names the file and field."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InstrumentConfig(_Model):
    driver: str
    address: str | None = None
    channels: Annotated[int, Field(ge=1, le=4096)] = 1
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _known(self) -> InstrumentConfig:
        if self.driver not in DRIVERS:
            raise ValueError(f"unknown driver {self.driver!r}; known: {', '.join(sorted(DRIVERS))}")
        if self.address is not None and not re.match(r"^[a-z][a-z0-9+-]*://", self.address):
            raise ValueError(f"address {self.address!r} must be a URL like tcp://host:port")
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


class StationConfig(_Model):
    name: Annotated[str, Field(pattern=_NAME)]
    instruments: dict[str, InstrumentConfig]
    positions: list[Position] = Field(min_length=1)

    @model_validator(mode="after")
    def _refs(self) -> StationConfig:
        for pos in self.positions:
            for role in ("cycler", "impedance", "chamber", "furnace"):
                ref = getattr(pos, role)
                if ref is not None:
                    self.resolve(ref)
            for ref in pos.gas.values():
                self.resolve(ref)
        names = [p.name for p in self.positions]
        if len(set(names)) != len(names):
            raise ValueError("position names must be unique")
        return self

    def resolve(self, ref: str) -> tuple[str, int]:
        """``"cycler/3"`` -> ("cycler", 3); checks the instrument and channel exist."""
        name, _, chan = ref.partition("/")
        inst = self.instruments.get(name)
        if inst is None:
            raise ValueError(f"{ref!r} names no instrument (have {', '.join(self.instruments)})")
        index = int(chan) if chan else 0
        if not 0 <= index < inst.channels:
            raise ValueError(f"{ref!r}: {name} has channels 0..{inst.channels - 1}")
        return name, index

    def subset(self, position: str) -> StationConfig:
        """This station cut down to one position and the instruments it uses (what a run
        directory records: enough to resume it, and small on a station of 1000 cells)."""
        pos = self.position(position)
        refs = [getattr(pos, r) for r in ("cycler", "impedance", "chamber", "furnace")]
        used = {r.partition("/")[0] for r in [*refs, *pos.gas.values()] if r is not None}
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


_THERMAL_POSITION = Position(
    name="tube1",
    kind="furnace",
    furnace="furnace",
    gas={"N2": "mfc/0", "O2": "mfc/1", "Ar": "mfc/2"},
)

#: The built-in simulated station: an 8-channel MACCOR (MacNet), a PalmSens potentiostat
#: (MethodSCRIPT) on the same cells, a climate chamber, and a tube furnace (Eurotherm) with
#: three mass-flow controllers (Alicat). With ``--sim`` each instrument is its wire-level
#: simulator, reached through the same driver code as in the lab.
DEFAULT_STATION = StationConfig(
    name="sim",
    instruments={
        "cycler": InstrumentConfig(driver="maccor", address="tcp://127.0.0.1:57570", channels=8),
        "eis": InstrumentConfig(driver="palmsens", address="serial:///dev/ttyACM0", channels=8),
        "chamber": InstrumentConfig(driver="sim-chamber"),
        "furnace": InstrumentConfig(driver="eurotherm", options={"series": "2400"}),
        "mfc": InstrumentConfig(driver="alicat", channels=3, options={"units": "ABC"}),
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
        "furnace": InstrumentConfig(driver="eurotherm", options={"series": "2400"}),
        "mfc": InstrumentConfig(driver="alicat", channels=3, options={"units": "ABC"}),
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
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise StationError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise StationError(f"{path}{line}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise StationError(f"{path}: a station file is a mapping with name, instruments, positions")
    try:
        return StationConfig.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"])
            lines.append(f"{path}: {loc}: {err['msg']}")
        raise StationError("\n".join(lines)) from None
