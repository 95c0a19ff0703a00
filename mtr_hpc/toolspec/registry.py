"""`ToolRegistry`: one episode's tool set, looked up by name, with its validators compiled once.

The registry is the fast path of trace validation and of rollouts: every call's arguments and every
observation is checked against a validator compiled when the registry was built.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from .schemas import CompiledSchema, compiled_validator
from .spec import (
    RETURNS_KEY,
    ToolIssue,
    ToolSpec,
    ToolSpecError,
    openai_view,
    parameters_schema,
    tool_name,
)
from .validate import validate_toolset


class ToolRegistry:
    """A tool set by name.

    With `strict=True` (default) any issue of the set raises `ToolSpecError`. With `strict=False` the
    issues are kept in `.issues`, and every tool that has a string name is still registered (the first
    of duplicates wins); a tool whose schema does not compile reports that as an argument error.
    """

    def __init__(self, tools: Iterable[ToolSpec], *, strict: bool = True):
        self._list = list(tools)
        self.issues: list[ToolIssue] = validate_toolset(self._list)
        if strict and self.issues:
            raise ToolSpecError(self.issues)
        self._tools: dict[str, ToolSpec] = {}
        self._params: dict[str, CompiledSchema | None] = {}
        self._returns: dict[str, CompiledSchema | None] = {}
        for tool in self._list:
            name = tool_name(tool)
            if name is None or name in self._tools:
                continue
            self._tools[name] = tool
            fn = tool["function"]
            self._params[name] = compiled_validator(parameters_schema(fn))
            self._returns[name] = compiled_validator(tool.get(RETURNS_KEY))

    @property
    def ok(self) -> bool:
        return not self.issues

    @property
    def names(self) -> list[str]:
        return list(self._tools)

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __len__(self) -> int:
        return len(self._tools)

    def __iter__(self) -> Iterator[ToolSpec]:
        return iter(self._tools.values())

    def __getitem__(self, name: str) -> ToolSpec:
        return self._tools[name]

    def get(self, name: str) -> ToolSpec | None:
        return self._tools.get(name)

    def openai_tools(self) -> list[ToolSpec]:
        """The tools as the policy is shown them, in declaration order."""
        return [openai_view(t) for t in self._tools.values()]

    def _check(self, table: dict, name: str, instance: Any, what: str) -> list[str]:
        if name not in table:
            return [f"unknown tool '{name}'"]
        validator = table[name]
        if validator is None:
            return [f"tool '{name}' has no valid {what} schema"]
        return validator.errors(instance)

    def validate_arguments(self, name: str, args: Any) -> list[str]:
        if not isinstance(args, dict):
            return [f"arguments must be a JSON object, got {type(args).__name__}"]
        return self._check(self._params, name, args, "parameters")

    def validate_observation(self, name: str, obs: Any) -> list[str]:
        return self._check(self._returns, name, obs, RETURNS_KEY)
