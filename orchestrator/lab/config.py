"""An agent's station file: the PC's instruments and positions, plus a ``lab:`` section.

```yaml
name: pc-a                        # the agent's name in the lab (unique)
instruments:
  cycler: {driver: maccor, address: "tcp://10.0.0.20:57570", channels: 64}
positions:
  - {name: a0, cycler: cycler/0, impedance: "eis-pc:eis/0"}   # EIS on another PC
lab:
  api: {port: 8743, url: "https://pc-a.lab:8743"}
  shared: []                      # instruments of this PC that other agents may book
  certs: /etc/labrig/certs        # ca.crt, pc-a.crt, pc-a.key (0600)
```

A reference ``agent:instrument/channel`` names an instrument another agent owns; the
run reaches it through that agent's API (:mod:`.remote`). References to this PC's own
``shared`` instruments go through the same lab-wide booking. Everything else is an
ordinary station file (:mod:`orchestrator.station`); no secret belongs here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..station import InstrumentConfig, Position, StationConfig, StationError

__all__ = ["AgentConfig", "ApiSettings", "LabSection", "RemoteRef", "load_agent_config"]

ROLES = ("cycler", "impedance", "chamber")
_KIND = {"cycler": "cycler", "impedance": "impedance", "chamber": "chamber"}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ApiSettings(_Model):
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8743
    url: str | None = None  # how other agents reach it (default https://host:port)
    client_certs: bool = True  # require a certificate of the lab CA from callers


class LabSection(_Model):
    api: ApiSettings = Field(default_factory=ApiSettings)
    shared: list[str] = Field(default_factory=list)
    certs: str | None = None
    heartbeat_s: Annotated[float, Field(gt=0, le=300)] = 5.0
    lease_s: Annotated[float, Field(gt=0, le=3600)] = 30.0
    # how long a run waits for an offline instrument owner before its step fails
    owner_wait_s: Annotated[float, Field(gt=0)] = 4 * 3600.0


@dataclass(frozen=True, slots=True)
class RemoteRef:
    """An instrument channel reached through the lab: ``agent:instrument/channel``."""

    agent: str
    instrument: str
    channel: int

    @property
    def resource(self) -> str:
        return f"{self.agent}:{self.instrument}/{self.channel}"

    @classmethod
    def parse(cls, text: str) -> RemoteRef:
        agent, _, rest = text.partition(":")
        inst, _, chan = rest.partition("/")
        if not agent or not inst:
            raise ValueError(f"{text!r}: expected agent:instrument/channel")
        try:
            channel = int(chan) if chan else 0
        except ValueError:
            raise ValueError(f"{text!r}: channel {chan!r} is not a number") from None
        return cls(agent, inst, channel)


@dataclass
class AgentConfig:
    """The agent's name, its local station (lab references removed) and its lab links."""

    name: str
    instruments: dict[str, InstrumentConfig]
    station: StationConfig | None  # None: the agent only serves instruments
    links: dict[str, dict[str, RemoteRef]] = field(default_factory=dict)  # position -> role
    lab: LabSection = field(default_factory=LabSection)
    positions: list[Position] = field(default_factory=list)  # as written (for the lab db)
    path: Path | None = None
    remote: dict[str, tuple[str, str]] = field(default_factory=dict)  # driver remote: owner

    def needs_remote(self) -> bool:
        """Whether runs here reach instruments of other agents (or our own shared ones)."""
        return bool(self.remote) or any(self.links.values())

    def shared_instruments(self) -> dict[str, InstrumentConfig]:
        return {n: self.instruments[n] for n in self.lab.shared}

    def api_url(self) -> str:
        api = self.lab.api
        return api.url or f"https://{api.host}:{api.port}"


def _errors(path: Path, exc: ValidationError, prefix: str = "") -> StationError:
    lines = []
    for err in exc.errors():
        head = prefix.split(".") if prefix else []
        loc = ".".join(str(p) for p in (*head, *err["loc"]))
        lines.append(f"{path}: {loc}: {err['msg']}")
    return StationError("\n".join(lines))


def load_agent_config(path: Path) -> AgentConfig:
    """Read and check an agent's station file; errors name the file and the field."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise StationError(f"{path}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise StationError(f"{path}{line}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise StationError(f"{path}: a station file is a mapping with name, instruments, positions")
    return agent_config_from_dict(data, path)


def agent_config_from_dict(data: dict[str, Any], path: Path = Path("<station>")) -> AgentConfig:
    data = dict(data)
    try:
        lab = LabSection.model_validate(data.pop("lab", None) or {})
    except ValidationError as exc:
        raise _errors(path, exc, "lab") from None
    raw_positions = data.pop("positions", None) or []
    if not isinstance(raw_positions, list):
        raise StationError(f"{path}: positions: a list of positions")
    instruments_raw = data.get("instruments") or {}
    if not isinstance(instruments_raw, dict):
        raise StationError(f"{path}: instruments: a mapping of name to instrument")
    for n in lab.shared:
        if n not in instruments_raw:
            raise StationError(f"{path}: lab.shared: {n!r} is not an instrument of this station")
    name = data.get("name")
    links: dict[str, dict[str, RemoteRef]] = {}
    local_positions: list[dict[str, Any]] = []
    for i, pos in enumerate(raw_positions):
        if not isinstance(pos, dict):
            raise StationError(f"{path}: positions.{i}: a mapping")
        pos = dict(pos)
        for role in ROLES:
            ref = pos.get(role)
            if not isinstance(ref, str):
                continue
            try:
                if ":" in ref:
                    link = RemoteRef.parse(ref)
                elif ref.partition("/")[0] in lab.shared:
                    inst, _, chan = ref.partition("/")
                    link = RemoteRef(str(name), inst, int(chan) if chan else 0)
                else:
                    continue
            except ValueError as exc:
                raise StationError(f"{path}: positions.{i}.{role}: {exc}") from None
            if role == "cycler":
                raise StationError(
                    f"{path}: positions.{i}.cycler: a cell's cycler channel must be wired to "
                    "this PC (a run never drives a cycler through another agent)"
                )
            links.setdefault(str(pos.get("name")), {})[role] = link
            pos[role] = None
        local_positions.append(pos)
    instruments = _instruments(path, instruments_raw)
    remote = _remote_owners(path, instruments)
    station = None
    if local_positions:
        try:
            station = StationConfig.model_validate({**data, "positions": local_positions})
        except ValidationError as exc:
            raise _errors(path, exc) from None
        name = station.name
    elif not isinstance(name, str) or not name:
        raise StationError(f"{path}: name: the agent's name is required")
    written = [
        Position.model_validate({**p, **_remote_refs(p, remote),
                                 **{r: links[p["name"]][r].resource
                                    for r in links.get(str(p.get("name")), {})}})
        for p in local_positions
    ]  # fmt: skip
    return AgentConfig(
        name=str(name),
        instruments=instruments,
        station=station,
        links=links,
        lab=lab,
        positions=written,
        path=path,
        remote=remote,
    )


def _instruments(path: Path, raw: dict[str, Any]) -> dict[str, InstrumentConfig]:
    out = {}
    for k, v in raw.items():
        try:
            out[k] = InstrumentConfig.model_validate(v)
        except ValidationError as exc:
            raise _errors(path, exc, f"instruments.{k}") from None
    return out


def _remote_owners(
    path: Path, instruments: dict[str, InstrumentConfig]
) -> dict[str, tuple[str, str]]:
    """Instruments of ``driver: remote``: name -> (owning agent, its instrument)."""
    from ..instruments.hw.remote import parse_remote_address

    out = {}
    for k, inst in instruments.items():
        if inst.driver != "remote":
            continue
        if inst.address is None:
            raise StationError(f"{path}: instruments.{k}.address: lab://AGENT/INSTRUMENT needed")
        try:
            out[k] = parse_remote_address(inst.address)
        except ValueError as exc:
            raise StationError(f"{path}: instruments.{k}.address: {exc}") from None
    return out


def _remote_refs(pos: dict[str, Any], remote: dict[str, tuple[str, str]]) -> dict[str, str]:
    """A position's references to remote instruments, as the lab database writes them
    (``agent:instrument/channel``)."""
    out = {}
    for role in ROLES:
        ref = pos.get(role)
        if isinstance(ref, str) and ref.partition("/")[0] in remote:
            agent, inst = remote[ref.partition("/")[0]]
            out[role] = f"{agent}:{inst}/{ref.partition('/')[2] or 0}"
    return out
