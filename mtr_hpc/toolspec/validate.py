"""Validation of tool interfaces, of call arguments and of observations against them.

Checks (each a `ToolIssue` code): the record's shape (`not_object`, `unknown_key`, `missing_field`,
`bad_type`), the name (`bad_name`), descriptions of the tool and of every parameter
(`missing_description`), both schemas against the Draft 2020-12 metaschema (`bad_schema`), both schemas
describing an object (`not_object_schema`), `required` naming declared properties
(`required_not_in_properties`), and, across a set, unique names (`duplicate_name`).

What OpenAI's function-tool format accepts is accepted: descriptions are optional there, and a tool
without `parameters` takes no arguments. The project's own quality rules (`QUALITY_CODES`: every tool
and parameter described) are therefore warnings, reported as issues only with `strict=True`, which
`--strict` on the command line and the ToolMaker's check of its own output ask for. `x-returns` stays
required: it is the project's contract with the ToolActor (design §3).
"""

from __future__ import annotations

from typing import Any

from .schemas import compiled_validator, schema_errors
from .spec import (
    FUNCTION_KEYS,
    NAME_RE,
    QUALITY_CODES,
    RETURNS_KEY,
    TOP_LEVEL_KEYS,
    ToolIssue,
    ToolSpec,
    is_valid_name,
    parameters_schema,
    tool_name,
)


def _join(prefix: str, *parts: str) -> str:
    return ".".join(p for p in (prefix, *parts) if p)


def _nonempty_str(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _check_schema(schema: Any, path: str, *, describe_properties: bool) -> list[ToolIssue]:
    """Issues of one object schema (`parameters` or `x-returns`)."""
    if not isinstance(schema, dict):
        return [ToolIssue("bad_schema", path, f"must be a JSON Schema object, got {type(schema).__name__}")]
    issues = [ToolIssue("bad_schema", _join(path, p), m) for p, m in schema_errors(schema)]
    if schema.get("type") != "object":
        issues.append(ToolIssue("not_object_schema", _join(path, "type"), 'must be "object"'))
    props = schema.get("properties", {})
    props = props if isinstance(props, dict) else {}
    required = schema.get("required", [])
    if isinstance(required, list):
        for name in required:
            if isinstance(name, str) and name not in props:
                issues.append(
                    ToolIssue(
                        "required_not_in_properties",
                        _join(path, "required"),
                        f"'{name}' is required but not a declared property",
                    )
                )
    if describe_properties:
        for name, prop in props.items():
            if not (isinstance(prop, dict) and _nonempty_str(prop.get("description"))):
                issues.append(
                    ToolIssue(
                        "missing_description",
                        _join(path, "properties", str(name), "description"),
                        f"parameter '{name}' needs a non-empty description",
                    )
                )
    return issues


def _check_function(fn: Any, path: str) -> list[ToolIssue]:
    if not isinstance(fn, dict):
        return [ToolIssue("missing_field", path, "'function' must be an object")]
    issues = [
        ToolIssue("unknown_key", _join(path, str(k)), f"unknown key '{k}'")
        for k in fn
        if k not in FUNCTION_KEYS
    ]
    if "name" not in fn:
        issues.append(ToolIssue("missing_field", _join(path, "name"), "missing tool name"))
    elif not is_valid_name(fn["name"]):
        issues.append(
            ToolIssue("bad_name", _join(path, "name"), f"{fn['name']!r} does not match {NAME_RE.pattern}")
        )
    if not _nonempty_str(fn.get("description")):
        issues.append(
            ToolIssue("missing_description", _join(path, "description"), "needs a non-empty description")
        )
    if "parameters" in fn:
        issues += _check_schema(fn["parameters"], _join(path, "parameters"), describe_properties=True)
    return issues


def validate_tool(tool: Any, path: str = "", *, strict: bool = False) -> list[ToolIssue]:
    """Every issue of one tool interface; an empty list means valid. Never raises.

    Quality issues (`QUALITY_CODES`) are included only with `strict`; `tool_warnings` lists them."""
    issues = _tool_issues(tool, path)
    return issues if strict else [i for i in issues if i.code not in QUALITY_CODES]


def tool_warnings(tool: Any, path: str = "") -> list[ToolIssue]:
    """The quality issues of one tool interface: what `strict` would add to its issues."""
    return [i for i in _tool_issues(tool, path) if i.code in QUALITY_CODES]


def _tool_issues(tool: Any, path: str) -> list[ToolIssue]:
    if not isinstance(tool, dict):
        return [ToolIssue("not_object", path, f"a tool must be a JSON object, got {type(tool).__name__}")]
    issues = [
        ToolIssue("unknown_key", _join(path, str(k)), f"unknown top-level key '{k}'")
        for k in tool
        if k not in TOP_LEVEL_KEYS
    ]
    if tool.get("type") != "function":
        issues.append(ToolIssue("bad_type", _join(path, "type"), 'must be "function"'))
    if "function" not in tool:
        issues.append(ToolIssue("missing_field", _join(path, "function"), "missing 'function'"))
    else:
        issues += _check_function(tool["function"], _join(path, "function"))
    if RETURNS_KEY not in tool:
        issues.append(ToolIssue("missing_field", _join(path, RETURNS_KEY), "missing observation schema"))
    else:
        issues += _check_schema(tool[RETURNS_KEY], _join(path, RETURNS_KEY), describe_properties=False)
    return issues


def validate_toolset(tools: Any, *, strict: bool = False) -> list[ToolIssue]:
    """Issues of each tool (paths prefixed `[i]`) plus `duplicate_name` for a name seen before."""
    if not isinstance(tools, list):
        return [ToolIssue("not_list", "", f"tools must be a list, got {type(tools).__name__}")]
    issues: list[ToolIssue] = []
    seen: dict[str, int] = {}
    for i, tool in enumerate(tools):
        issues += validate_tool(tool, f"[{i}]", strict=strict)
        name = tool_name(tool)
        if name is None:
            continue
        if name in seen:
            issues.append(
                ToolIssue(
                    "duplicate_name", f"[{i}].function.name", f"'{name}' already declared by [{seen[name]}]"
                )
            )
        else:
            seen[name] = i
    return issues


def _schema_of(tool: Any, which: str) -> Any:
    if not isinstance(tool, dict):
        return None
    if which == RETURNS_KEY:
        return tool.get(RETURNS_KEY)
    fn = tool.get("function")
    return parameters_schema(fn) if isinstance(fn, dict) else None


def _errors_against(schema: Any, instance: Any, what: str) -> list[str]:
    validator = compiled_validator(schema)
    if validator is None:
        return [f"the tool's {what} schema is not a valid JSON Schema"]
    return validator.errors(instance)


def validate_arguments(tool: ToolSpec, args: Any) -> list[str]:
    """Errors of call arguments against the tool's `parameters` (empty: valid)."""
    if not isinstance(args, dict):
        return [f"arguments must be a JSON object, got {type(args).__name__}"]
    return _errors_against(_schema_of(tool, "parameters"), args, "parameters")


def validate_observation(tool: ToolSpec, obs: Any) -> list[str]:
    """Errors of an observation against the tool's `x-returns` (empty: valid)."""
    return _errors_against(_schema_of(tool, RETURNS_KEY), obs, RETURNS_KEY)
