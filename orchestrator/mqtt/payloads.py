"""Pure codecs: run objects to MQTT payloads, and command payloads to typed requests.

Payloads are compact JSON with the exact field names of :mod:`orchestrator.events`, so a
subscriber can rebuild the objects (``Event.from_json``). Non-finite numbers (NaN, inf)
are not valid JSON and become ``null``. The JSON Schemas are in
:mod:`orchestrator.mqtt.schemas`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from ..events import Event, RunStatus, Telemetry
from .topics import COMMANDS

__all__ = [
    "MAX_COMMAND_BYTES",
    "CommandRecord",
    "CommandRequest",
    "InstrumentInfo",
    "StationDescription",
    "decode_command",
    "encode_event",
    "encode_reply",
    "encode_station",
    "encode_status",
    "encode_telemetry",
]

MAX_COMMAND_BYTES = 4096
_MAX_TEXT = 200
_COMMAND_KEYS = frozenset({"sender", "request_id", "note"})
SCHEMA_VERSION = 1


def _finite(value: Any) -> Any:
    """Replace NaN/inf by None anywhere in a JSON-like value."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False, default=str)  # made once


def _dumps(obj: Any) -> bytes:
    return _ENCODER.encode(_finite(obj)).encode()


def encode_event(event: Event) -> bytes:
    """The ``<channel>/events`` payload: the fields of :class:`Event`, kind as a string."""
    d = {
        "run_id": event.run_id,
        "channel": event.channel,
        "seq": event.seq,
        "kind": event.kind.value,
        "wall_time": event.wall_time,
        "run_time_s": event.run_time_s,
        "data": event.data,
    }
    return _dumps(d)


def encode_status(status: RunStatus) -> bytes:
    """The retained ``<channel>/status`` payload: the fields of :class:`RunStatus`."""
    return _dumps(status.to_dict())


def encode_telemetry(telemetry: Telemetry) -> bytes:
    """The ``<channel>/telemetry`` payload: the fields of :class:`Telemetry`."""
    return _dumps(telemetry.to_dict())


@dataclass(frozen=True, slots=True)
class InstrumentInfo:
    """One instrument as the station description shows it (no addresses or secrets)."""

    name: str
    kind: str
    driver: str = ""
    channels: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class StationDescription:
    """What the retained ``<prefix>/station`` message describes."""

    station: str
    instruments: tuple[InstrumentInfo, ...] = ()
    channels: tuple[str, ...] = ()
    units: dict[str, str] = field(
        default_factory=lambda: {
            "voltage": "V",
            "current": "A",
            "temperature": "degC",
            "time": "s",
            "capacity": "Ah",
        }
    )

    def to_dict(self, extra_channels: tuple[str, ...] = ()) -> dict[str, Any]:
        channels = list(dict.fromkeys((*self.channels, *extra_channels)))
        return {
            "schema_version": SCHEMA_VERSION,
            "station": self.station,
            "instruments": [
                {
                    "name": i.name,
                    "kind": i.kind,
                    "driver": i.driver,
                    "channels": list(i.channels),
                }
                for i in self.instruments
            ],
            "channels": channels,
            "units": dict(self.units),
            "commands": list(COMMANDS),
        }


def encode_station(description: StationDescription, extra_channels: tuple[str, ...] = ()) -> bytes:
    return _dumps(description.to_dict(extra_channels))


@dataclass(frozen=True, slots=True)
class CommandRequest:
    """A well-formed command for a channel (not yet judged by the run)."""

    channel: str
    command: str
    sender: str
    request_id: str
    note: str | None = None


@dataclass(frozen=True, slots=True)
class CommandRecord:
    """The audit record of one command, accepted or not.

    The run records it as ``Event(kind=EventKind.command, data=record.event_data())``.
    """

    channel: str
    command: str
    sender: str | None
    request_id: str | None
    accepted: bool
    reason: str
    topic: str
    wall_time: float

    def event_data(self) -> dict[str, Any]:
        return {
            "command": self.command,
            "sender": self.sender,
            "accepted": self.accepted,
            "reason": self.reason,
            "request_id": self.request_id,
            "topic": self.topic,
            "via": "mqtt",
        }


def encode_reply(record: CommandRecord) -> bytes:
    """The ``<channel>/cmd/reply`` payload for a command's audit record."""
    return _dumps(
        {
            "request_id": record.request_id,
            "channel": record.channel,
            "command": record.command,
            "sender": record.sender,
            "accepted": record.accepted,
            "reason": record.reason,
            "time": record.wall_time,
        }
    )


def _text(d: dict[str, Any], key: str, *, required: bool) -> str | None:
    value = d.get(key)
    if value is None:
        if required:
            raise ValueError(f"field {key!r} is missing")
        return None
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"field {key!r} must be a non-empty string")
    if len(value) > _MAX_TEXT:
        raise ValueError(f"field {key!r} is longer than {_MAX_TEXT} characters")
    if any(ord(c) < 32 for c in value):
        raise ValueError(f"field {key!r} contains control characters")
    return value


def decode_command(channel: str, command: str, payload: bytes) -> CommandRequest:
    """Parse a command payload ``{"sender": ..., "request_id": ..., "note"?: ...}``.

    Raises ValueError with a message naming what is wrong; the caller refuses and audits.
    """
    if command not in COMMANDS:
        raise ValueError(f"unknown command {command!r} (expected one of {', '.join(COMMANDS)})")
    if len(payload) > MAX_COMMAND_BYTES:
        raise ValueError(f"payload is {len(payload)} bytes, more than {MAX_COMMAND_BYTES}")
    try:
        d = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"payload is not UTF-8 JSON: {exc}") from None
    if not isinstance(d, dict):
        raise ValueError("payload must be a JSON object")
    unknown = sorted(set(d) - _COMMAND_KEYS)
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(map(repr, unknown))}")
    sender = _text(d, "sender", required=True)
    request_id = _text(d, "request_id", required=True)
    note = _text(d, "note", required=False)
    assert sender is not None and request_id is not None
    return CommandRequest(channel, command, sender, request_id, note)


def best_effort_ids(payload: bytes) -> tuple[str | None, str | None]:
    """``(sender, request_id)`` from a payload that failed validation, for the audit."""
    try:
        d = json.loads(payload[:MAX_COMMAND_BYTES].decode("utf-8", "replace"))
    except ValueError:
        return None, None
    if not isinstance(d, dict):
        return None, None

    def pick(key: str) -> str | None:
        v = d.get(key)
        return v[:_MAX_TEXT] if isinstance(v, str) else None

    return pick("sender"), pick("request_id")
