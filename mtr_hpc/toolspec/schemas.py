"""Compiled JSON Schema validators, cached by the canonical JSON of the schema.

Valid instances of common tool schemas are accepted by `fastpath` closures; everything else, and every
error message, comes from `jsonschema`.

Building a `jsonschema` validator (and checking a schema against the metaschema) costs far more than
validating one small instance, and the same few schemas are used by thousands of calls and traces, so
both are memoised. Keys are canonical JSON, never object identity: two equal schemas share one entry,
and a schema mutated after use is looked up afresh.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from jsonschema import Draft202012Validator

from .fastpath import compile_fast, quick_schema_ok
from .spec import canonical_json

# Errors reported per instance; a wildly wrong object need not list hundreds.
MAX_ERRORS = 20
# jsonschema messages quote the offending value; a huge value must not make a huge report.
MAX_MESSAGE = 300

_META = Draft202012Validator(
    Draft202012Validator.META_SCHEMA, format_checker=Draft202012Validator.FORMAT_CHECKER
)


def _path(parts) -> str:
    return ".".join(str(p) for p in parts)


@lru_cache(maxsize=8192)
def _schema_errors_cached(key: str) -> tuple[tuple[str, str], ...]:
    schema = json.loads(key)
    if quick_schema_ok(schema):
        return ()
    errors = sorted(_META.iter_errors(schema), key=lambda e: [str(p) for p in e.absolute_path])
    return tuple((_path(e.absolute_path), e.message) for e in errors[:MAX_ERRORS])


def schema_errors(schema: Any) -> list[tuple[str, str]]:
    """(path inside the schema, message) for each way `schema` violates the Draft 2020-12 metaschema."""
    try:
        key = canonical_json(schema)
    except (TypeError, ValueError) as exc:
        return [("", f"not JSON-serialisable: {exc}")]
    return list(_schema_errors_cached(key))


class CompiledSchema:
    """A valid schema, compiled: the `jsonschema` validator plus, when the schema allows, a fast check."""

    __slots__ = ("validator", "fast")

    def __init__(self, schema: Any):
        self.validator = Draft202012Validator(schema)
        self.fast = compile_fast(schema)

    def errors(self, instance: Any) -> list[str]:
        """Messages `<path>: <message>` of `instance`, sorted by path; empty when valid."""
        if self.fast is not None and self.fast(instance):
            return []
        out = []
        for err in self.validator.iter_errors(instance):
            path = _path(err.absolute_path)
            msg = err.message if len(err.message) <= MAX_MESSAGE else err.message[:MAX_MESSAGE] + "..."
            out.append(f"{path}: {msg}" if path else msg)
            if len(out) >= MAX_ERRORS:
                break
        out.sort()
        return out


@lru_cache(maxsize=8192)
def _compiled(key: str) -> CompiledSchema | None:
    if _schema_errors_cached(key):
        return None
    return CompiledSchema(json.loads(key))


def compiled_validator(schema: Any) -> CompiledSchema | None:
    """A cached compiled schema, or None when `schema` is not a valid JSON Schema."""
    try:
        key = canonical_json(schema)
    except (TypeError, ValueError):
        return None
    return _compiled(key)
