"""A fast acceptance check for the JSON Schema subset tool interfaces use.

`jsonschema` validates a small tool argument in tens of microseconds, mostly in generic dispatch.
Tool schemas are nearly always plain objects of typed properties, so `compile_fast` turns such a schema
into nested closures that answer "certainly valid" (True) or "not sure" (False). Only a True is trusted;
a False sends the instance to `jsonschema`, which decides and words the errors. So the fast path may be
conservative (it gives up on anything unusual) but must never accept what `jsonschema` rejects. A
schema using any keyword outside `_KEYWORDS` gets no fast path at all.

`anyOf` is accepted when one branch's fast check accepts: every synthesized `x-returns` is an object
schema with `anyOf` [success fields required, error required], so without it every observation of a
trace would go through `jsonschema`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Check = Callable[[Any], bool]

_ANNOTATIONS = frozenset({"description", "title", "default", "examples", "$schema", "$comment", "deprecated"})
_KEYWORDS = _ANNOTATIONS | {
    "type",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "minItems",
    "maxItems",
    "enum",
    "const",
    "minLength",
    "maxLength",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "anyOf",
}


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


# Draft 2020-12 type semantics as jsonschema implements them (1.0 is an integer, True is not).
_TYPES: dict[str, Check] = {
    "string": lambda x: isinstance(x, str),
    "integer": lambda x: (
        (isinstance(x, int) and not isinstance(x, bool)) or (isinstance(x, float) and x.is_integer())
    ),
    "number": _is_number,
    "boolean": lambda x: isinstance(x, bool),
    "object": lambda x: isinstance(x, dict),
    "array": lambda x: isinstance(x, list),
    "null": lambda x: x is None,
}


def _type_check(spec: Any) -> Check | None:
    names = [spec] if isinstance(spec, str) else spec
    if not isinstance(names, list) or not names or any(n not in _TYPES for n in names):
        return None
    return _any([_TYPES[n] for n in names])


def _literal_check(schema: dict) -> Check | None:
    """enum / const, only over strings (other literals compare subtly: 1 == True, 1 == 1.0)."""
    if "enum" in schema:
        values = schema["enum"]
        if not (isinstance(values, list) and all(isinstance(v, str) for v in values)):
            return None
        allowed = frozenset(values)
        return lambda x: isinstance(x, str) and x in allowed
    value = schema["const"]
    if not isinstance(value, str):
        return None
    return lambda x: isinstance(x, str) and x == value


def _is_str(x: Any) -> bool:
    return isinstance(x, str)


def _is_list(x: Any) -> bool:
    return isinstance(x, list)


# keyword -> (test of instance against bound, which instances the keyword applies to)
_BOUND_RULES: dict[str, tuple[Callable[[Any, Any], bool], Check]] = {
    "minLength": (lambda x, b: len(x) >= b, _is_str),
    "maxLength": (lambda x, b: len(x) <= b, _is_str),
    "minItems": (lambda x, b: len(x) >= b, _is_list),
    "maxItems": (lambda x, b: len(x) <= b, _is_list),
    "minimum": (lambda x, b: x >= b, _is_number),
    "maximum": (lambda x, b: x <= b, _is_number),
    "exclusiveMinimum": (lambda x, b: x > b, _is_number),
    "exclusiveMaximum": (lambda x, b: x < b, _is_number),
}


def _bound_checks(schema: dict) -> list[Check] | None:
    checks: list[Check] = []
    for key in schema.keys() & _BOUND_RULES.keys():
        test, applies = _BOUND_RULES[key]
        bound = schema[key]
        if not _is_number(bound):
            return None
        checks.append(lambda x, t=test, b=bound, a=applies: not a(x) or t(x, b))
    return checks


def _object_checks(schema: dict) -> list[Check] | None:
    checks: list[Check] = []
    props = schema.get("properties", {})
    required = schema.get("required", [])
    extra = schema.get("additionalProperties", True)
    if not isinstance(props, dict) or not isinstance(required, list) or not isinstance(extra, bool | dict):
        return None
    subs: dict[str, Check] = {}
    for name, sub in props.items():
        compiled = compile_fast(sub)
        if compiled is None:
            return None
        subs[name] = compiled
    extra_check = compile_fast(extra) if isinstance(extra, dict) else None
    if isinstance(extra, dict) and extra_check is None:
        return None
    req = tuple(required)
    if not subs and extra is True:
        # Only `required` (an `anyOf` branch): no need to visit the values.
        if req:
            checks.append(lambda x: not isinstance(x, dict) or all(key in x for key in req))
        return checks

    def check(x: Any) -> bool:
        if not isinstance(x, dict):
            return True
        for key in req:
            if key not in x:
                return False
        for key, value in x.items():
            sub = subs.get(key)
            if sub is not None:
                if not sub(value):
                    return False
            elif extra is False:
                return False
            elif extra_check is not None and not extra_check(value):
                return False
        return True

    checks.append(check)
    return checks


def compile_fast(schema: Any) -> Check | None:
    """A conservative acceptance check for `schema`, or None when it uses anything unsupported."""
    if schema is True:
        return _true
    if not isinstance(schema, dict) or any(k not in _KEYWORDS for k in schema):
        return None
    checks: list[Check] = []
    if "type" in schema:
        tc = _type_check(schema["type"])
        if tc is None:
            return None
        checks.append(tc)
    if "enum" in schema or "const" in schema:
        lc = _literal_check(schema)
        if lc is None:
            return None
        checks.append(lc)
    bounds = _bound_checks(schema)
    objects = _object_checks(schema)
    if bounds is None or objects is None:
        return None
    checks += bounds + objects
    if "items" in schema:
        item = compile_fast(schema["items"])
        if item is None:
            return None
        checks.append(_items_check(item))
    if "anyOf" in schema:
        branches = _any_of_checks(schema["anyOf"])
        if branches is None:
            return None
        checks.append(_any(branches))
    return _all(checks)


def _true(x: Any) -> bool:
    return True


def _items_check(item: Check) -> Check:
    def check(x: Any) -> bool:
        if isinstance(x, list):
            for v in x:
                if not item(v):
                    return False
        return True

    return check


# Combinators without a generator per call: these closures run for every argument and observation.
def _all(checks: list[Check]) -> Check:
    if not checks:
        return _true
    if len(checks) == 1:
        return checks[0]
    if len(checks) == 2:
        first, second = checks
        return lambda x: first(x) and second(x)

    def check(x: Any) -> bool:
        for c in checks:
            if not c(x):
                return False
        return True

    return check


def _any(checks: list[Check]) -> Check:
    if len(checks) == 1:
        return checks[0]

    def check(x: Any) -> bool:
        for c in checks:
            if c(x):
                return True
        return False

    return check


def _any_of_checks(branches: Any) -> list[Check] | None:
    """Fast checks of the `anyOf` branches; None unless every branch compiles (then a True of any one
    branch is certain, and a False of all of them only means "not sure")."""
    if not isinstance(branches, list) or not branches:
        return None
    out: list[Check] = []
    for branch in branches:
        compiled = compile_fast(branch)
        if compiled is None:
            return None
        out.append(compiled)
    return out


_SIMPLE_TYPES = frozenset(_TYPES)
_COUNTS = ("minLength", "maxLength", "minItems", "maxItems")
_BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
# $schema is left out: its metaschema rule checks a URI format.
_QUICK_KEYWORDS = _KEYWORDS - {"$schema"}


def _unique_strings(values: Any) -> bool:
    return (
        isinstance(values, list)
        and all(isinstance(v, str) for v in values)
        and len(set(values)) == len(values)
    )


def _quick_keyword_ok(key: str, value: Any) -> bool:
    if key in ("description", "title", "$comment"):
        return isinstance(value, str)
    if key in ("default", "const"):
        return True
    if key in ("examples", "enum"):
        return isinstance(value, list)
    if key == "deprecated":
        return isinstance(value, bool)
    if key == "type":
        names = [value] if isinstance(value, str) else value
        return _unique_strings(names) and bool(names) and set(names) <= _SIMPLE_TYPES
    if key in _COUNTS:
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0
    if key in _BOUNDS:
        return _is_number(value)
    if key == "required":
        return _unique_strings(value)
    if key == "properties":
        return isinstance(value, dict) and all(quick_schema_ok(v) for v in value.values())
    if key == "anyOf":
        return isinstance(value, list) and bool(value) and all(quick_schema_ok(v) for v in value)
    return quick_schema_ok(value)  # items, additionalProperties


def quick_schema_ok(schema: Any) -> bool:
    """True only if `schema` is certainly valid under the Draft 2020-12 metaschema.

    The metaschema check is the slow part of validating a new tool (milliseconds per schema); tool
    schemas written in the plain subset of `_QUICK_KEYWORDS` are recognised here in microseconds. A
    False means "not sure": the caller runs the full metaschema check.
    """
    if isinstance(schema, bool):
        return True
    if not isinstance(schema, dict):
        return False
    return all(key in _QUICK_KEYWORDS and _quick_keyword_ok(key, value) for key, value in schema.items())
