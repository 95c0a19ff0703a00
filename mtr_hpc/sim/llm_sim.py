"""The `llm` simulation backend: a model plays the tool (design §5).

The model sees the tool's interface (with its `x-returns`), the call, the episode's earlier calls and
observations (so it stays consistent) and, optionally, the example's evidence as a hint. Its output must
be JSON valid against `x-returns` (requested as a `json_schema` constraint; clients that cannot enforce
it get the schema in the prompt); invalid output is retried, then recorded as an `invalid_output` error
observation, and a client error or a request unanswered after `timeout_s` (when > 0) as `llm_error`
(retried first when retryable). The function never raises for model behaviour. `stats` counts `retries`,
`invalid_json`, `invalid_schema`, `invalid_output`, `llm_error` and `timeout`.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

from ..llm.protocol import ChatRequest, LLMError
from ..toolspec import openai_view
from ..toolspec.spec import RETURNS_KEY
from .schemas import error_observation

_FENCE_RE = re.compile(r"^\s*```(?:json)?\s*|\s*```\s*$")
MAX_HISTORY = 8
MAX_HINT_CHARS = 3000


def simulation_messages(
    tool: dict[str, Any], args: dict[str, Any], history: list[tuple[str, dict, Any]], hint: str | None
) -> list[dict[str, str]]:
    system = (
        "You simulate a tool for a question-answering agent. Given the tool's interface, its output "
        "schema and a call, reply with the tool's output: ONE JSON object valid against the output "
        "schema, nothing else. Stay consistent with earlier outputs of this episode. If the tool cannot "
        "know the answer, say so inside the schema (an empty list of results, or found: false)."
    )
    parts = [
        f"Tool: {json.dumps(openai_view(tool)['function'], ensure_ascii=False)}",
        f"Output schema: {json.dumps(tool.get(RETURNS_KEY), ensure_ascii=False)}",
    ]
    if history:
        lines = [
            f"- {name}({json.dumps(a, ensure_ascii=False)}) -> {json.dumps(o, ensure_ascii=False)}"
            for name, a, o in history[-MAX_HISTORY:]
        ]
        parts.append("Earlier calls in this episode:\n" + "\n".join(lines))
    if hint:
        parts.append("Reference facts (ground your output in them):\n" + hint[:MAX_HINT_CHARS])
    parts.append(f"Call: {json.dumps(args, ensure_ascii=False)}")
    return [{"role": "system", "content": system}, {"role": "user", "content": "\n\n".join(parts)}]


def parse_json_output(text: str) -> Any:
    return json.loads(_FENCE_RE.sub("", text.strip()))


async def simulate_llm(
    client: Any,
    tool: dict[str, Any],
    args: dict[str, Any],
    history: list[tuple[str, dict, Any]],
    hint: str | None,
    validate,
    *,
    retries: int,
    timeout_s: float,
    max_tokens: int,
    temperature: float,
    seed: int,
    stats,
) -> dict[str, Any]:
    messages = simulation_messages(tool, args, history, hint)
    last = "no output"
    for attempt in range(retries + 1):
        if attempt:
            stats["retries"] += 1
        req = ChatRequest(
            messages,
            max_tokens=max_tokens,
            temperature=temperature,
            seed=seed + attempt,
            json_schema=tool.get(RETURNS_KEY),
        )
        try:
            resp = await (asyncio.wait_for(client.chat(req), timeout_s) if timeout_s else client.chat(req))
        except TimeoutError:
            stats["timeout"] += 1
            stats["llm_error"] += 1
            if attempt < retries:
                continue
            return error_observation("llm_error", f"the tool model did not answer within {timeout_s:g} s")
        except LLMError as exc:
            if exc.kind == "bad_response":  # a client that checks the schema itself refused the output
                stats["invalid_schema"] += 1
                last = str(exc)
                continue
            stats["llm_error"] += 1
            if exc.retryable and attempt < retries:
                continue
            return error_observation("llm_error", str(exc))
        try:
            obs = parse_json_output(resp.text)
        except ValueError:
            stats["invalid_json"] += 1
            last = "output is not JSON"
            continue
        errors = validate(obs)
        if not errors:
            return obs
        stats["invalid_schema"] += 1
        last = f"output violates the schema: {errors[0]}"
    stats["invalid_output"] += 1
    return error_observation("invalid_output", f"after {retries + 1} attempts: {last}")
