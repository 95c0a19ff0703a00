"""Tool interfaces (design §3): OpenAI function tools plus an `x-returns` observation schema."""

from .registry import ToolRegistry
from .spec import NAME_RE, ToolIssue, ToolSpec, ToolSpecError, canonical_json, openai_view, tool_name
from .validate import (
    tool_warnings,
    validate_arguments,
    validate_observation,
    validate_tool,
    validate_toolset,
)

__all__ = [
    "NAME_RE",
    "ToolIssue",
    "ToolRegistry",
    "ToolSpec",
    "ToolSpecError",
    "canonical_json",
    "openai_view",
    "tool_name",
    "tool_warnings",
    "validate_arguments",
    "validate_observation",
    "validate_tool",
    "validate_toolset",
]
