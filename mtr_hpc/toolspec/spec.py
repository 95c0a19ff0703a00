"""The tool interface record (design §3) and its small helpers.

A tool interface is an OpenAI function tool plus the project's own key `x-returns`, the JSON Schema
of the tool's observation. The policy only ever sees `openai_view(tool)`; `x-returns` is for the
ToolActor (which must produce conforming observations) and for validation.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from typing import Any

from ..errors import MtrError

ToolSpec = dict[str, Any]

NAME_RE = re.compile(r"[a-zA-Z0-9_-]{1,64}")
TOP_LEVEL_KEYS = frozenset({"type", "function", "x-returns"})
# `strict` is OpenAI's structured-output flag; it is harmless and kept when present.
FUNCTION_KEYS = frozenset({"name", "description", "parameters", "strict"})
RETURNS_KEY = "x-returns"
# Issue codes of the project's own quality rules, beyond what the OpenAI format requires (warnings
# unless validation is strict; see `toolspec.validate`).
QUALITY_CODES = frozenset({"missing_description"})
# OpenAI: "Omitting parameters defines a function with an empty parameter list."
NO_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}, "additionalProperties": False}


@dataclass(frozen=True)
class ToolIssue:
    """One problem of a tool interface. `path` is dotted (`[2].function.parameters.required`)."""

    code: str
    path: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.path or '<tool>'}: {self.code}: {self.message}"


class ToolSpecError(MtrError):
    """A tool set that must be valid (e.g. given to a `ToolRegistry(strict=True)`) is not."""

    def __init__(self, issues: list[ToolIssue]):
        self.issues = list(issues)
        shown = "; ".join(str(i) for i in self.issues[:5])
        more = f" (+{len(self.issues) - 5} more)" if len(self.issues) > 5 else ""
        super().__init__(f"invalid tool interface: {shown}{more}")


def is_valid_name(name: Any) -> bool:
    return isinstance(name, str) and NAME_RE.fullmatch(name) is not None


def tool_name(tool: Any) -> str | None:
    """The tool's name if it has a string one, else None (never raises)."""
    if isinstance(tool, dict):
        fn = tool.get("function")
        if isinstance(fn, dict) and isinstance(fn.get("name"), str):
            return fn["name"]
    return None


def parameters_schema(function: dict[str, Any]) -> Any:
    """The `parameters` schema of a tool's `function`; a tool that omits it takes no arguments."""
    return function.get("parameters", NO_PARAMETERS)


def openai_view(tool: ToolSpec) -> ToolSpec:
    """The tool as the policy is shown it: every key except `x-returns` (a shallow copy)."""
    return {k: v for k, v in tool.items() if k != RETURNS_KEY}


# json.dumps with options builds a new (stateless) encoder per call; one shared encoder does the same.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_json(obj: Any) -> str:
    """Key-sorted compact JSON: equal values give equal strings (cache keys, dedup)."""
    return _CANONICAL.encode(obj)
