"""What a run is asked to do: a protocol, a station position, where to write, how; or
to go on with a stopped run (:class:`Resumption`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from labrig.protocols.models import Protocol

from ..station import DEFAULT_STATION, StationConfig
from ..store import RunStore
from .lifecycle import RunOptions

__all__ = ["Resumption", "RunRequest"]


@dataclass
class RunRequest:
    protocol: Protocol
    protocol_yaml: str
    out_dir: Path
    station: StationConfig = DEFAULT_STATION
    position: str | None = None
    sim: bool = True
    seed: int = 0
    options: RunOptions | None = None
    run_id: str | None = None
    durable: bool | None = None  # fsync data and journal (default: on hardware)
    staging: bool | None = None  # log rows before they reach a chunk (default: durable)
    # how often rows reach the staging log (default: STAGE_EVERY_S if durable, else 0)
    stage_every_s: float | None = None


@dataclass(frozen=True)
class Resumption:
    """What a stopped run's directory says about it, read once to go on with it (a cell
    run or a furnace run alike)."""

    run_dir: Path
    meta: dict[str, Any]
    protocol: Protocol
    station: StationConfig
    sim: bool
    durable: bool

    @classmethod
    def read(
        cls,
        run_dir: Path,
        *,
        station: StationConfig | None = None,
        sim: bool | None = None,
        durable: bool | None = None,
    ) -> Resumption:
        """``run.json`` and ``protocol.yaml`` of ``run_dir``; the station, simulation and
        durability it ran with unless given. A run that ended cannot be resumed."""
        from labrig.protocols.loader import load_protocol_text

        meta: dict[str, Any] = json.loads((run_dir / "run.json").read_text())
        if meta.get("state") in ("finished", "aborted", "failed"):
            raise ValueError(f"{run_dir.name} ended ({meta['state']}); nothing to resume")
        source = run_dir / "protocol.yaml"
        protocol = load_protocol_text(source.read_text(), source_name=str(source))
        if station is None:
            station = StationConfig.model_validate(meta["station_config"])
        sim_ = bool(meta.get("simulated")) if sim is None else sim
        durable_ = (not sim_) if durable is None else durable
        return cls(run_dir, meta, protocol, station, sim_, durable_)

    @property
    def run_id(self) -> str:
        return str(self.meta["run_id"])

    @property
    def seed(self) -> int:
        return int(self.meta.get("seed", 0))

    def mark_resumed(self, store: RunStore) -> None:
        """``run.json`` says the run goes on, and when it was resumed."""
        now = datetime.now(UTC).isoformat()
        store.update_meta(state="running", resumed=[*self.meta.get("resumed", []), now])
