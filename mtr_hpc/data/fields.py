"""Typed field access for benchmark records.

Converters read raw JSON objects through these helpers, which raise `FieldError` (field + message)
instead of KeyError/TypeError; the loader adds the file and line/record and turns it into a `DataError`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

_MISSING = object()


class FieldError(Exception):
    """A field of one record is missing or has the wrong type (internal; wrapped into `DataError`)."""

    def __init__(self, field: str, message: str):
        self.field = field
        self.message = message
        super().__init__(f"field '{field}': {message}")

    def under(self, prefix: str) -> FieldError:
        """The same error for a field nested under `prefix` (e.g. FlashRAG's `metadata`)."""
        return FieldError(f"{prefix}.{self.field}", self.message)


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "object", list: "array", str: "string", bool: "boolean"}.get(
        type(value), type(value).__name__
    )


def get(rec: Mapping[str, Any], key: str, *, required: bool = True, prefix: str = "") -> Any:
    """`rec[key]`; a missing key is a `FieldError` naming `prefix.key` (or None when not required)."""
    value = rec.get(key, _MISSING)
    if value is _MISSING:
        if required:
            raise FieldError(f"{prefix}.{key}" if prefix else key, "is missing")
        return None
    return value


def as_str(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise FieldError(field, f"must be a string, got {type_name(value)}")
    return value


def as_list(value: Any, field: str) -> list:
    if not isinstance(value, list | tuple):
        raise FieldError(field, f"must be an array, got {type_name(value)}")
    return list(value)


def as_int(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise FieldError(field, f"must be an integer, got {type_name(value)}")
    return value


def as_bool(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise FieldError(field, f"must be true or false, got {type_name(value)}")
    return value


def req_str(rec: Mapping[str, Any], key: str) -> str:
    return as_str(get(rec, key), key)


def opt_str(rec: Mapping[str, Any], key: str) -> str | None:
    """A string field that may be absent or null."""
    value = get(rec, key, required=False)
    return None if value is None else as_str(value, key)


def str_list(value: Any, field: str, *, allow_scalar: bool = False) -> list[str]:
    """A list of strings; with `allow_scalar` a lone string counts as a list of one."""
    if allow_scalar and isinstance(value, str):
        return [value]
    items = as_list(value, field)
    return [as_str(v, f"{field}[{i}]") for i, v in enumerate(items)]


def dedupe(items: Iterable[str]) -> list[str]:
    """Drop repeated answers, keeping the first occurrence (the gold answer stays first)."""
    seen: set[str] = set()
    out = []
    for item in items:
        if item not in seen:
            seen.add(item)
            out.append(item)
    return out


def record_id(
    rec: Mapping[str, Any], benchmark: str, index: int, keys: tuple[str, ...] = ("_id", "id")
) -> str:
    """The official id (`_id` or `id`), else `<benchmark>-<index in file>` (design §3)."""
    for key in keys:
        value = rec.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise FieldError(key, f"must be a string, got {type_name(value)}")
        if isinstance(value, str) and not value.strip():
            raise FieldError(key, "is empty")
        return str(value)
    return f"{benchmark}-{index}"


def question(rec: Mapping[str, Any], key: str = "question") -> str:
    text = req_str(rec, key)
    if not text.strip():
        raise FieldError(key, "is empty")
    return text
