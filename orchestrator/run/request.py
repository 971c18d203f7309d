"""What a run is asked to do: a protocol, a station position, where to write, how."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from labrig.protocols.models import Protocol

from ..station import DEFAULT_STATION, StationConfig
from .lifecycle import RunOptions

__all__ = ["RunRequest"]


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
