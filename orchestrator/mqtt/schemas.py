"""JSON Schemas (draft 2020-12) of every labrig MQTT payload.

They document the wire format for dashboard authors and are checked against real
messages in the integration tests. labrig itself validates command payloads with the
stricter hand-written :func:`orchestrator.mqtt.payloads.decode_command`.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "COMMAND_SCHEMA",
    "EVENT_SCHEMA",
    "REPLY_SCHEMA",
    "SCHEMAS",
    "STATION_SCHEMA",
    "STATUS_SCHEMA",
    "TELEMETRY_SCHEMA",
]

_DRAFT = "https://json-schema.org/draft/2020-12/schema"
_NUM_OR_NULL: dict[str, Any] = {"type": ["number", "null"]}
_STATES = ["pending", "running", "paused", "finished", "aborted", "failed"]
_KINDS = [
    "run_started",
    "run_resumed",
    "run_ended",
    "step_started",
    "step_ended",
    "cycle_ended",
    "checkpoint_started",
    "checkpoint_done",
    "limit_trip",
    "fault",
    "paused",
    "resumed",
    "command",
    "notify",
    "wait",
]


def _object(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties) if required is None else required,
        "additionalProperties": False,
    }


STATUS_SCHEMA: dict[str, Any] = {
    "$schema": _DRAFT,
    "title": "labrig channel status (<prefix>/<channel>/status, retained, QoS 1)",
    **_object(
        {
            "run_id": {"type": "string"},
            "channel": {"type": "string"},
            "protocol": {"type": "string"},
            "state": {"enum": _STATES},
            "step": {"type": ["string", "null"]},
            "step_index": {"type": ["integer", "null"]},
            "cycle": {"type": "integer"},
            "voltage_V": _NUM_OR_NULL,
            "current_A": _NUM_OR_NULL,
            "temperature_C": _NUM_OR_NULL,
            "run_time_s": {"type": "number"},
            "eta_s": _NUM_OR_NULL,
            "updated": {"type": "number", "description": "wall time, s since the epoch"},
            "cell_id": {"type": ["string", "null"]},
        }
    ),
}

EVENT_SCHEMA: dict[str, Any] = {
    "$schema": _DRAFT,
    "title": "labrig run event (<prefix>/<channel>/events, QoS 1, de-duplicate by run_id+seq)",
    **_object(
        {
            "run_id": {"type": "string"},
            "channel": {"type": "string"},
            "seq": {"type": "integer", "minimum": 0},
            "kind": {"enum": _KINDS},
            "wall_time": {"type": "number"},
            "run_time_s": {"type": "number"},
            "data": {"type": "object"},
        }
    ),
}

TELEMETRY_SCHEMA: dict[str, Any] = {
    "$schema": _DRAFT,
    "title": "labrig live reading (<prefix>/<channel>/telemetry, QoS 0, rate-limited)",
    **_object(
        {
            "run_id": {"type": "string"},
            "channel": {"type": "string"},
            "wall_time": {"type": "number"},
            "run_time_s": {"type": "number"},
            "voltage_V": _NUM_OR_NULL,
            "current_A": _NUM_OR_NULL,
            "temperature_C": _NUM_OR_NULL,
            "cycle": {"type": "integer"},
            "step_index": {"type": ["integer", "null"]},
            "step": {"type": ["string", "null"]},
        }
    ),
}

STATION_SCHEMA: dict[str, Any] = {
    "$schema": _DRAFT,
    "title": "labrig station description (<prefix>/station, retained)",
    **_object(
        {
            "schema_version": {"const": 1},
            "station": {"type": "string"},
            "instruments": {
                "type": "array",
                "items": _object(
                    {
                        "name": {"type": "string"},
                        "kind": {"type": "string"},
                        "driver": {"type": "string"},
                        "channels": {"type": "array", "items": {"type": "string"}},
                    }
                ),
            },
            "channels": {"type": "array", "items": {"type": "string"}},
            "units": {"type": "object", "additionalProperties": {"type": "string"}},
            "commands": {"type": "array", "items": {"enum": ["pause", "resume", "abort"]}},
        }
    ),
}

_TEXT: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": 200}

COMMAND_SCHEMA: dict[str, Any] = {
    "$schema": _DRAFT,
    "title": "labrig command (<prefix>/<channel>/cmd/<pause|resume|abort>, QoS 1)",
    **_object(
        {"sender": _TEXT, "request_id": _TEXT, "note": _TEXT},
        required=["sender", "request_id"],
    ),
}

REPLY_SCHEMA: dict[str, Any] = {
    "$schema": _DRAFT,
    "title": "labrig command reply (<prefix>/<channel>/cmd/reply, QoS 1)",
    **_object(
        {
            "request_id": {"type": ["string", "null"]},
            "channel": {"type": "string"},
            "command": {"type": "string"},
            "sender": {"type": ["string", "null"]},
            "accepted": {"type": "boolean"},
            "reason": {"type": "string"},
            "time": {"type": "number"},
        }
    ),
}

SCHEMAS: dict[str, dict[str, Any]] = {
    "status": STATUS_SCHEMA,
    "events": EVENT_SCHEMA,
    "telemetry": TELEMETRY_SCHEMA,
    "station": STATION_SCHEMA,
    "cmd": COMMAND_SCHEMA,
    "cmd/reply": REPLY_SCHEMA,
}
