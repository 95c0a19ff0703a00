"""How a model's prompts list their tools, and where a trained model records it.

Two formats:

- `json` (default): Qwen2.5's Hermes block, one OpenAI tool JSON per line inside `<tools></tools>`, as
  Qwen2.5-Instruct was trained to read it.
- `compact`: one line per tool, a typed signature and the description,
  `- compare(a: string, b: string, operator: "earlier"|"later"): Compare two values.`, followed by one
  line on how to call. About a quarter of the `json` block's tokens: for a small model trained from
  scratch on the format (the embedded demo), the tool block is otherwise the largest part of every
  sequence it trains on and every prompt it prefills. Parameter descriptions are left out.

A model is prompted the way it was trained, so the format travels with the model: SFT writes it next to
the exported weights (`mtr_chat_format.json`), and GRPO and evaluation read it from the model directory
they load. A directory without the file (any model this project did not train) reads as `json`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import ConfigError, MtrError
from ..io import atomic_write_json

TOOLS_FORMATS = ("json", "compact")
CHAT_FORMAT_FILE = "mtr_chat_format.json"

COMPACT_HEADER = "\n\n# Tools\n"
COMPACT_FOOTER = '\nCall a tool as <tool_call>\n{"name": <tool>, "arguments": {...}}\n</tool_call>'


def check_tools_format(value: str, key: str = "tools_format") -> str:
    if value not in TOOLS_FORMATS:
        raise ConfigError(key, f"must be one of {TOOLS_FORMATS}, got {value!r}")
    return value


def _type_text(prop: dict[str, Any]) -> str:
    if "enum" in prop:
        return "|".join(json.dumps(v, ensure_ascii=False) for v in prop["enum"])
    kind = prop.get("type", "any")
    if isinstance(kind, list):
        return "|".join(str(k) for k in kind)
    if kind == "array":
        return f"{_type_text(prop.get('items') or {})}[]"
    return str(kind)


def compact_signature(function: dict[str, Any]) -> str:
    """`name(arg: type, optional?: type): description` of an OpenAI function object."""
    params = function.get("parameters") or {}
    props = params.get("properties") or {}
    required = set(params.get("required") or [])
    args = ", ".join(
        f"{name}{'' if name in required else '?'}: {_type_text(prop if isinstance(prop, dict) else {})}"
        for name, prop in props.items()
    )
    description = str(function.get("description") or "").strip()
    return f"{function.get('name', '')}({args})" + (f": {description}" if description else "")


def compact_tools_block(functions: list[dict[str, Any]]) -> str:
    if not functions:
        return ""
    return COMPACT_HEADER + "\n".join(f"- {compact_signature(fn)}" for fn in functions) + COMPACT_FOOTER


def write_tools_format(model_dir: str | Path, tools_format: str) -> None:
    atomic_write_json(Path(model_dir) / CHAT_FORMAT_FILE, {"tools_format": check_tools_format(tools_format)})


def read_tools_format(model: str | Path) -> str:
    """The tools format recorded in a model directory; `json` for names and directories without one."""
    path = Path(str(model)).expanduser() / CHAT_FORMAT_FILE
    if not path.is_file():
        return "json"
    try:
        value = json.loads(path.read_text(encoding="utf-8"))["tools_format"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise MtrError(f'{path}: unreadable chat format ({exc}); expected {{"tools_format": ...}}') from None
    return check_tools_format(value, f"{path}: tools_format")
