"""Grounded simulation: observations computed from the example's evidence, no model involved.

`search`, `open_page` and the relation tools are answered by `sim/observations.py` over the example's
own pages and distractors, in the real engine's format. Interfaces written by a model may name their
output fields differently: `fit_to_schema` maps the canonical payload onto such a schema (a field of
values gets the passages' texts), and anything that still fails validation becomes an `unsupported`
error observation.
"""

from __future__ import annotations

from typing import Any

from ..toolspec.spec import RETURNS_KEY
from .schemas import error_observation

_VALUE_NAMES = ("value", "values", "result", "results", "answer", "answers", "output", "data")


def _types(prop: dict[str, Any]) -> set[str]:
    t = prop.get("type")
    return set(t) if isinstance(t, list) else {t} if isinstance(t, str) else set()


def _fit_value(prop: dict[str, Any], name: str, payload: dict[str, Any]) -> Any:
    types = _types(prop)
    values = payload.get("values") or [r["snippet"] for r in payload.get("results") or []]
    if "boolean" in types:
        return bool(payload.get("found", values))
    if "array" in types:
        return list(values)
    if "string" in types:
        if name in payload and isinstance(payload[name], str):
            return payload[name]
        if any(k in name for k in ("entity", "name", "subject", "person", "title", "query")):
            return payload.get("entity", "")
        return "; ".join(values) if values else ("null" if "null" not in types else None)
    if "null" in types:
        return None
    return None


def fit_to_schema(schema: dict[str, Any], payload: dict[str, Any]) -> dict[str, Any]:
    """The canonical payload re-expressed in the fields a (model-written) `x-returns` declares."""
    props = {
        k: v for k, v in (schema.get("properties") or {}).items() if k != "error" and isinstance(v, dict)
    }
    if all(k in payload for k in props) and set(payload) <= set(props):
        return payload
    out: dict[str, Any] = {}
    for name, prop in props.items():
        value = payload[name] if name in payload else _fit_value(prop, name.lower(), payload)
        if value is not None or "null" in _types(prop):
            out[name] = value
    if not out and any(n in _VALUE_NAMES for n in props):
        out = {n: _fit_value(props[n], n, payload) for n in props if n in _VALUE_NAMES}
    return out


def conform(tool: dict[str, Any], payload: dict[str, Any], validate) -> dict[str, Any]:
    """`payload` if valid against the tool's `x-returns`, else its fitted form, else an error observation."""
    if not validate(payload):
        return payload
    fitted = fit_to_schema(tool.get(RETURNS_KEY) or {}, payload)
    if not validate(fitted):
        return fitted
    return error_observation(
        "unsupported", "the simulator cannot express this result in the tool's declared output"
    )
