"""The JSON Schema of a protocol file as it is written: what the loader accepts.

pydantic's own schema describes the validated tree (numbers in SI, steps as objects); a
protocol file is friendlier than that. This schema also accepts what the loader turns
into that tree:

- a step string wherever a step goes ("Charge at 0.1C until 3.7 V"),
- quantities with units wherever a number in a unit goes ("3.7 V", "2 K/min", "10 min"),
- currents as text ("0.1C", "C/20", "1.6 mA", "190 mA/g") and conditions as text
  ("3.68 V or 15 h"), loop ends as text ("discharge capacity < 80% of cycle 3"),
- both the documented name and its alternative (``temperature_degC`` / ``temperature_C``,
  ``rate`` / ``rate_K_per_s``, ``current_abs_mA`` / ``current_abs_A``, ``dV_mV`` / ``dV_V``).

Editors use it for completion and checks (see the README); ``labrig validate`` remains
the full check (units, step grammar, limits, the cell).
"""

from __future__ import annotations

import json
from types import MethodType
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from . import models as m
from .fields import INPUT_FORMS

__all__ = ["SCHEMA_DIALECT", "SCHEMA_ID", "input_schema", "input_schema_text"]

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_ID = "urn:labrig:schema:protocol:1"

#: First words of the step strings the grammar knows (ECMA-262 regex, no inline flags).
_STEP_START = (
    r"^\s*(?:[Cc]harge|[Dd]ischarge|[Rr]est|[Hh]old|[Mm]easure|[Ee][Ii][Ss]|PEIS|GEIS|"
    r"[Ss]et|[Rr]amp|[Hh]eat|[Cc]ool|[Dd]well|[Pp]ulse)\b"
)
STEP_STRING: dict[str, Any] = {
    "type": "string",
    "pattern": _STEP_START,
    "description": "a step string; `labrig validate` checks its grammar",
    "examples": [
        "Charge at 0.1C until 3.68 V or 15 h",
        "Discharge at 0.1C until 2.28 V",
        "Rest for 1 h",
        "EIS from 7 MHz to 10 mHz, 10 per decade, 7 mV amplitude at OCV",
        "Ramp furnace to 400 °C at 2 K/min",
        "Set gas N2 to 118.5 sccm",
    ],
}
_QUANTITY: dict[str, Any] = {
    "type": "string",
    "pattern": r"^\s*[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?\s*\S",
    "description": "a number with its unit",
}
_TEXT: dict[str, dict[str, Any]] = {
    "quantity": _QUANTITY,
    "current": {"type": "string", "description": "'0.1C', 'C/20', '1.6 mA', '190 mA/g'"},
    "conditions": {
        "anyOf": [
            {"type": "string"},
            {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "object"}]}},
        ],
        "description": "end conditions, e.g. '3.68 V or 15 h'",
    },
    "loop_condition": {"type": "string", "description": "'discharge capacity < 80% of cycle 3'"},
    "version": {"type": "number"},
}
_KEYWORDS = {"ge": "minimum", "gt": "exclusiveMinimum", "le": "maximum", "lt": "exclusiveMaximum"}


def _tag_of(schema: core_schema.CoreSchema) -> str | None:
    fn = schema.get("function", {}).get("function")
    if isinstance(fn, MethodType):  # a classmethod validator, bound to its model
        fn = fn.__func__
    return INPUT_FORMS.get(fn) if callable(fn) else None


class _InputSchema(GenerateJsonSchema):
    """pydantic's schema generator, widened to the loader's input forms."""

    def function_before_schema(
        self, schema: core_schema.BeforeValidatorFunctionSchema
    ) -> JsonSchemaValue:
        inner = super().function_before_schema(schema)
        tag = _tag_of(schema)
        if tag == "step_string":
            return dict(STEP_STRING)
        if tag in _TEXT:
            return {"anyOf": [inner, _TEXT[tag]]}
        return inner

    def model_schema(self, schema: core_schema.ModelSchema) -> JsonSchemaValue:
        out = super().model_schema(schema)
        cls = schema["cls"]
        props = out.get("properties")
        if isinstance(props, dict) and issubclass(cls, BaseModel):
            for name, info in cls.model_fields.items():
                if info.alias and info.alias in props and name not in props:
                    props[name] = props[info.alias]
            for key, (like, _) in getattr(cls, "json_input_aliases", {}).items():
                if like in props:
                    props[key] = {**props[like], "description": f"{like} in milli-units"}
        return out


def _fix_keywords(node: Any) -> Any:
    """Constraints placed after a unit-parsing validator come out under pydantic's own
    names (``ge``); and a node may be both a loop and a group to the schema (the loader
    tells them apart), so only discriminated unions stay ``oneOf``."""
    if isinstance(node, dict):
        out = {_KEYWORDS.get(k, k) if not isinstance(v, dict | list) else k: _fix_keywords(v)
               for k, v in node.items()}  # fmt: skip
        if "oneOf" in out and "discriminator" not in out:
            out["anyOf"] = out.pop("oneOf")
        return out
    if isinstance(node, list):
        return [_fix_keywords(v) for v in node]
    return node


def input_schema() -> dict[str, Any]:
    """The protocol file's JSON Schema (draft 2020-12) with ``$schema`` and ``$id``."""
    body = m.Protocol.model_json_schema(mode="validation", schema_generator=_InputSchema)
    body = _fix_keywords(body)
    return {"$schema": SCHEMA_DIALECT, "$id": SCHEMA_ID, **body}


def input_schema_text() -> str:
    """:func:`input_schema` as the JSON text ``labrig schema`` prints."""
    return json.dumps(input_schema(), indent=2, ensure_ascii=False) + "\n"
