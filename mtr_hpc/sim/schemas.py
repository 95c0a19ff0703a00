"""Observation schemas (`x-returns`) of the synthesized tools, with the error shape every one allows.

An observation that could not be produced (an invalid simulated output after retries, a call the
simulator cannot answer) is recorded as `{"error": {"type", "message"}}`. Every `x-returns` made here
declares that alternative (`anyOf` of the success shape and the error shape), and `with_error_shape`
adds it to an interface written by a model, so error observations are schema-valid too.
"""

from __future__ import annotations

import copy
from typing import Any

ERROR_TYPES = ("invalid_output", "not_found", "bad_arguments", "unknown_tool", "llm_error", "unsupported")

ERROR_PROPERTY: dict[str, Any] = {
    "type": "object",
    "properties": {
        "type": {"type": "string", "enum": list(ERROR_TYPES)},
        "message": {"type": "string"},
    },
    "required": ["type", "message"],
    "additionalProperties": False,
}


def returns_schema(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    """An object schema for `properties` that also admits the error observation."""
    return {
        "type": "object",
        "properties": {**properties, "error": ERROR_PROPERTY},
        "anyOf": [{"required": list(required)}, {"required": ["error"]}],
        "additionalProperties": False,
    }


def with_error_shape(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` (an object schema) widened to admit `{"error": {...}}`; unchanged if it already does."""
    out = copy.deepcopy(schema)
    props = out.setdefault("properties", {})
    if "error" in props and any(alt.get("required") == ["error"] for alt in out.get("anyOf", [])):
        return out
    props["error"] = ERROR_PROPERTY
    required = out.pop("required", [])
    out["anyOf"] = [{"required": list(required)}, {"required": ["error"]}]
    return out


def error_observation(kind: str, message: str) -> dict[str, Any]:
    kind = kind if kind in ERROR_TYPES else "invalid_output"
    return {"error": {"type": kind, "message": message[:500]}}


def is_error(obs: Any) -> bool:
    return isinstance(obs, dict) and set(obs) == {"error"}
