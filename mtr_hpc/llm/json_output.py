"""JSON answers from models that do not constrain their decoding: the schema instruction, and checking.

An engine without structured outputs (the transformers engine) is told the schema in the system prompt,
and its answer is parsed and validated afterwards. An engine with them (vLLM) is checked the same way,
because a constrained answer cut off by `max_tokens` is still not an instance.
"""

from __future__ import annotations

import json
from typing import Any

from .protocol import LLMError

SCHEMA_INSTRUCTION = (
    "Reply with a single JSON value and nothing else. It must be valid for this JSON Schema:\n{schema}"
)


def with_schema_instruction(messages: list[dict], schema: dict) -> list[dict]:
    """`messages` with the schema instruction appended to the system message (added if absent)."""
    note = SCHEMA_INSTRUCTION.format(schema=json.dumps(schema, ensure_ascii=False))
    out = [dict(m) for m in messages]
    if out and out[0].get("role") == "system" and isinstance(out[0].get("content"), str):
        out[0]["content"] = f"{out[0]['content']}\n\n{note}"
    else:
        out.insert(0, {"role": "system", "content": note})
    return out


def extract_json(text: str) -> Any:
    """The first JSON value in `text` (code fences and surrounding prose tolerated); ValueError if none."""
    stripped = text.strip()
    if stripped.startswith("```"):
        stripped = stripped.strip("`")
        stripped = stripped[stripped.find("\n") + 1 :] if "\n" in stripped else stripped
    try:
        return json.loads(stripped)
    except json.JSONDecodeError:
        pass
    decoder = json.JSONDecoder()
    for i, ch in enumerate(stripped):
        if ch in "{[":
            try:
                return decoder.raw_decode(stripped, i)[0]
            except json.JSONDecodeError:
                continue
    raise ValueError("no JSON value in the model output")


def check_schema_output(text: str, schema: dict) -> str:
    """Canonical JSON text of the instance in `text`, or `LLMError(bad_response)` naming the violation."""
    import jsonschema

    try:
        value = extract_json(text)
    except ValueError as exc:
        raise LLMError("bad_response", f"{exc}: {text[:120]!r}", retryable=True) from None
    try:
        jsonschema.validate(value, schema)
    except jsonschema.ValidationError as exc:
        path = "/".join(str(p) for p in exc.absolute_path) or "<root>"
        raise LLMError(
            "bad_response", f"output violates the schema at {path}: {exc.message}", retryable=True
        ) from None
    except jsonschema.SchemaError as exc:
        raise LLMError(
            "bad_response", f"the requested json_schema is itself invalid: {exc.message}"
        ) from None
    return json.dumps(value, ensure_ascii=False)
