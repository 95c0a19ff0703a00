"""Typed configs: dataclasses loaded from YAML, overridden by dotted `key=value` arguments.

Each component owns one dataclass; a stage config nests them. `load_config(Cls, path, overrides)`
checks every key and type and raises `ConfigError` naming the dotted key at fault: an unknown key, a
missing required one, or a value of the wrong type. `save_resolved` writes the final config into a run
directory so the run can be reproduced from that file alone.

Values given on the command line are strings; they are parsed for the type the field declares
(`lr=3e-4` is a float, `tp=2` an int, `tags=[a,b]` a list), so no YAML quirk decides their type.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import yaml

from .errors import ConfigError
from .io import atomic_write_text

T = TypeVar("T")

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


class _Arg(str):
    """A value that came from the command line, still unparsed."""


def load_config(
    cls: type[T],
    path: str | Path | None = None,
    overrides: typing.Sequence[str] = (),
    section: str | None = None,
    values: dict[str, Any] | None = None,
) -> T:
    """Build `cls` from a YAML file (or defaults), typed `values` by dotted key, then `key=value`
    overrides (which win).

    With `section`, a file holding several stages (e.g. `configs/demo.yaml` with `synth:`, `sft:`, ...)
    contributes only that top-level key; overrides may name keys with or without the section prefix.
    """
    data: dict[str, Any] = {}
    if path is not None:
        data = read_yaml(path)
        if section is not None and isinstance(data.get(section), dict):
            data = data[section]
    data = apply_values(data, values or {})
    data = apply_overrides(data, overrides, strip_prefix=section)
    return from_dict(cls, data)


def check_min(prefix: str, obj: Any, **minimums: float) -> None:
    """`ConfigError` naming `prefix + key` for the first field of `obj` that is not a number >= its
    minimum; config dataclasses call it from `__post_init__`, so a bad value fails before any work."""
    for key, low in minimums.items():
        value = getattr(obj, key)
        if isinstance(value, bool) or not isinstance(value, int | float) or not value >= low:
            raise ConfigError(prefix + key, f"must be >= {low}, got {value!r}")


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("", f"cannot read config file {path}: {exc.strerror or exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError("", f"config file {path} is not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError("", f"config file {path} must hold a mapping at the top level")
    return data


def apply_overrides(
    data: dict[str, Any], overrides: typing.Sequence[str], strip_prefix: str | None = None
) -> dict[str, Any]:
    """Return a copy of `data` with each `a.b.c=value` set (creating intermediate mappings)."""
    import copy

    out = copy.deepcopy(data)
    for item in overrides:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(item, "an override must look like key=value")
        if strip_prefix and key.startswith(strip_prefix + "."):
            key = key[len(strip_prefix) + 1 :]
        _set_dotted(out, key, _Arg(value))
    return out


def apply_values(data: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """Return a copy of `data` with each dotted key of `values` set to its Python value, which is
    checked like a value read from YAML (code that chains stages passes typed values, not text)."""
    import copy

    out = copy.deepcopy(data)
    for key, value in values.items():
        _set_dotted(out, key, copy.deepcopy(value))
    return out


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    node = data
    parts = key.split(".")
    for i, part in enumerate(parts[:-1]):
        nxt = node.get(part)
        if nxt is None:
            nxt = node[part] = {}
        if not isinstance(nxt, dict):
            raise ConfigError(".".join(parts[: i + 1]), "is not a section, cannot set keys inside it")
        node = nxt
    node[parts[-1]] = value


def from_dict(cls: type[T], data: Any, prefix: str = "") -> T:
    """Build dataclass `cls` from a mapping, checking keys and types recursively."""
    if isinstance(data, _Arg):
        data = _parse_yaml_arg(data, prefix)
    if not isinstance(data, dict):
        raise ConfigError(prefix, f"expected a mapping for {cls.__name__}, got {_tname(data)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        key = _join(prefix, str(unknown[0]))
        raise ConfigError(key, f"unknown key (known keys of {cls.__name__}: {', '.join(sorted(fields))})")
    kwargs = {}
    for name, f in fields.items():
        key = _join(prefix, name)
        if name in data:
            kwargs[name] = _convert(hints[name], _over_default(f, data[name]), key)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(key, "missing required key")
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        if prefix and "." not in exc.key:  # a section that names its own keys only (`LLMConfig`)
            raise ConfigError(_join(prefix, exc.key), exc.message) from None
        raise
    except (ValueError, TypeError) as exc:
        raise ConfigError(prefix or cls.__name__, str(exc)) from None


def _over_default(f: dataclasses.Field, value: Any) -> Any:
    """A section given in part fills the rest from the field's own default (`default_factory=lambda:
    LLMConfig(backend="transformers")`), not from the section class's defaults."""
    if not isinstance(value, dict) or f.default_factory is dataclasses.MISSING:
        return value
    base = f.default_factory()
    if not dataclasses.is_dataclass(base):
        return value
    return {**dataclasses.asdict(base), **value}


def _convert(tp: Any, value: Any, key: str) -> Any:
    origin = get_origin(tp)
    if tp is Any:
        return _parse_yaml_arg(value, key) if isinstance(value, _Arg) else value
    if origin in (Union, types.UnionType):
        options = get_args(tp)
        if type(None) in options and (
            value is None or (isinstance(value, _Arg) and value.lower() in ("null", "none", "~"))
        ):
            return None
        errors = []
        for opt in options:
            if opt is type(None):
                continue
            try:
                return _convert(opt, value, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(key, f"expected {_tname_type(tp)}, got {value!r}")
    if origin is Literal:
        choices = get_args(tp)
        for choice in choices:
            if value == choice or (isinstance(value, _Arg) and str(choice) == value):
                return choice
        raise ConfigError(key, f"must be one of {', '.join(map(repr, choices))}, got {value!r}")
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, key)
    if origin in (list, tuple) or tp in (list, tuple):
        if isinstance(value, _Arg):
            value = _parse_yaml_arg(value, key)
            if not isinstance(value, list):
                value = [value]
        if not isinstance(value, list | tuple):
            raise ConfigError(key, f"expected a list, got {_tname(value)}")
        args = get_args(tp)
        elem = args[0] if args else Any
        items = [_convert(elem, v, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if (origin or tp) is tuple else items
    if origin is dict or tp is dict:
        if isinstance(value, _Arg):
            value = _parse_yaml_arg(value, key)
        if not isinstance(value, dict):
            raise ConfigError(key, f"expected a mapping, got {_tname(value)}")
        args = get_args(tp)
        vt = args[1] if len(args) == 2 else Any
        return {str(k): _convert(vt, v, f"{key}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, _Arg) and value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
        raise ConfigError(key, f"expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value.replace("_", ""))
            except ValueError:
                pass
        raise ConfigError(key, f"expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # PyYAML reads `1e-4` (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(key, f"expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return str(value)
        raise ConfigError(key, f"expected a string, got {_tname(value)} {value!r}")
    if tp is Path:
        if isinstance(value, str):
            return Path(value)
        raise ConfigError(key, f"expected a path, got {_tname(value)}")
    raise ConfigError(key, f"unsupported config type {tp!r}")


def _parse_yaml_arg(value: _Arg, key: str) -> Any:
    try:
        return yaml.safe_load(str(value))
    except yaml.YAMLError:
        raise ConfigError(key, f"cannot parse value {str(value)!r}") from None


def to_dict(cfg: Any) -> Any:
    """Plain YAML-able data of a config (Paths become strings, tuples lists)."""
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        return {f.name: to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, list | tuple):
        return [to_dict(v) for v in cfg]
    if isinstance(cfg, dict):
        return {str(k): to_dict(v) for k, v in cfg.items()}
    if isinstance(cfg, Path):
        return str(cfg)
    return cfg


def dump_yaml(cfg: Any) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False, allow_unicode=True)


def save_resolved(cfg: Any, run_dir: str | Path, name: str = "config.yaml") -> Path:
    """Write the resolved config into the run directory (atomically) and return its path."""
    path = Path(run_dir) / name
    atomic_write_text(path, dump_yaml(cfg))
    return path


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _tname(value: Any) -> str:
    return type(value).__name__


def _tname_type(tp: Any) -> str:
    return " or ".join(getattr(a, "__name__", str(a)) for a in get_args(tp) if a is not type(None))
