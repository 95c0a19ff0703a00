"""Validation of a whole trace (design §3) into typed issues.

A trace is valid when its record is well formed; its messages run system, user, then assistant turns,
each call turn followed by exactly one `tool` message per call with the matching `tool_call_id`, in
order, call ids unique; every assistant turn's content parses (`<think>` for a call turn, `<think>` +
`<answer>` for the final one); calls name declared tools with schema-valid arguments; observations are
JSON valid against the tool's `x-returns`; exactly one answer, in the last message, equal to
`trace.answer`; at most `max_turns` assistant turns; and the tools themselves are valid.

Issue codes: the parser's (`missing_think`, `bad_json`, ...) for grammar, and `bad_field`,
`bad_message`, `bad_order`, `bad_tool`, `bad_tool_call`, `duplicate_call_id`, `undeclared_tool`,
`invalid_arguments`, `missing_tool_response`, `id_mismatch`, `unexpected_tool_message`,
`bad_observation_json`, `invalid_observation`, `call_in_content`, `no_answer`, `multiple_answers`,
`answer_not_last`, `answer_mismatch`, `too_many_turns`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any

from ..toolspec import ToolIssue, ToolRegistry, canonical_json, tool_warnings
from .io import record_problems, trace_from_dict
from .model import Trace
from .parser import ParsedTurn, decode_arguments, parse_turn

DEFAULT_MAX_TURNS = 8
_NOT_JSON = object()
ROLES = frozenset({"system", "user", "assistant", "tool"})


@dataclass(frozen=True)
class TraceIssue:
    """One problem of a trace; `index` is the message index it concerns (None: the whole trace)."""

    code: str
    message: str
    index: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        where = f"message {self.index}: " if self.index is not None else ""
        return f"{where}{self.code}: {self.message}"


@lru_cache(maxsize=1024)
def _registry_cached(key: str) -> ToolRegistry:
    return ToolRegistry(json.loads(key), strict=False)


def registry_for(tools: Any) -> ToolRegistry:
    """A lenient registry of a trace's tools; traces with equal tool sets share one (one dump per trace
    instead of one validation per tool)."""
    if not isinstance(tools, list):
        return ToolRegistry([], strict=False)
    try:
        key = canonical_json(tools)
    except (TypeError, ValueError):
        return ToolRegistry(tools, strict=False)
    return _registry_cached(key)


@dataclass
class _Walk:
    """State carried through one trace's messages."""

    registry: ToolRegistry
    issues: list[TraceIssue] = field(default_factory=list)
    call_ids: set[str] = field(default_factory=set)
    answers: list[tuple[int, str | None]] = field(default_factory=list)
    n_assistant: int = 0

    def add(self, code: str, message: str, index: int | None = None) -> None:
        self.issues.append(TraceIssue(code, message, index))


def _grammar(walk: _Walk, turn: ParsedTurn, index: int) -> None:
    for err in turn.errors:
        walk.add(err.code, err.message, index)


def _check_call(walk: _Walk, call: Any, index: int) -> tuple[str | None, str | None]:
    """Check one `tool_calls` entry; returns (call id, tool name) as far as they could be read."""
    if not isinstance(call, dict) or not isinstance(call.get("function"), dict):
        walk.add("bad_tool_call", "a tool call must be an object with a 'function' object", index)
        return None, None
    call_id, fn = call.get("id"), call["function"]
    if not isinstance(call_id, str) or not call_id:
        walk.add("bad_tool_call", "tool call 'id' must be a non-empty string", index)
        call_id = None
    elif call_id in walk.call_ids:
        walk.add("duplicate_call_id", f"tool call id '{call_id}' is used twice", index)
    else:
        walk.call_ids.add(call_id)
    if call.get("type") != "function":
        walk.add("bad_tool_call", "tool call 'type' must be \"function\"", index)
    name = fn.get("name")
    if not isinstance(name, str):
        walk.add("bad_tool_call", "tool call has no string 'function.name'", index)
        return call_id, None
    if name not in walk.registry:
        walk.add("undeclared_tool", f"'{name:.80}' is not one of the trace's tools", index)
        name = None
    raw = fn.get("arguments")
    if not isinstance(raw, str):
        walk.add("bad_tool_call", "'function.arguments' must be a JSON-encoded string", index)
        return call_id, name
    args, err = decode_arguments(raw)
    if err is not None:
        walk.add(err.code, err.message, index)
    elif name is not None:
        for msg in walk.registry.validate_arguments(name, args):
            walk.add("invalid_arguments", f"{name}: {msg}", index)
    return call_id, name


def _check_response(walk: _Walk, msg: Any, index: int, call_id: str | None, name: str | None) -> None:
    if msg.get("tool_call_id") != call_id and call_id is not None:
        walk.add("id_mismatch", f"tool_call_id {msg.get('tool_call_id')!r:.60} != call id {call_id!r}", index)
    content = msg.get("content")
    try:
        obs = json.loads(content) if isinstance(content, str) else _NOT_JSON
    except (ValueError, RecursionError):
        obs = _NOT_JSON
    if obs is _NOT_JSON:
        walk.add("bad_observation_json", "tool message content must be a JSON-encoded observation", index)
        return
    if name is not None:
        for err in walk.registry.validate_observation(name, obs):
            walk.add("invalid_observation", f"{name}: {err}", index)


def _call_turn(walk: _Walk, messages: list, i: int, calls: list) -> int:
    """Check an assistant call turn at `i` and its tool messages; returns the next index."""
    turn = parse_turn(messages[i].get("content"), require_action=False)
    _grammar(walk, turn, i)
    if turn.tool_calls:
        walk.add("call_in_content", "tool calls belong in 'tool_calls', not in the content", i)
    if turn.answer is not None:
        walk.add("both_call_and_answer", "a turn with tool_calls must not answer", i)
    j = i + 1
    for call in calls:
        call_id, name = _check_call(walk, call, i)
        nxt = messages[j] if j < len(messages) else None
        if not (isinstance(nxt, dict) and nxt.get("role") == "tool"):
            walk.add("missing_tool_response", f"no tool message for call {call_id!r}", i)
            continue
        _check_response(walk, nxt, j, call_id, name)
        j += 1
    return j


def _answer_turn(walk: _Walk, msg: dict, i: int) -> None:
    turn = parse_turn(msg.get("content"), require_action=True)
    _grammar(walk, turn, i)
    if turn.tool_calls:
        walk.add("call_in_content", "tool calls belong in 'tool_calls', not in the content", i)
    elif turn.answer is not None:
        walk.answers.append((i, turn.answer))


def _walk_messages(walk: _Walk, messages: list) -> None:
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict) or not isinstance(msg.get("role"), str) or msg["role"] not in ROLES:
            walk.add("bad_message", "a message must be an object with a known 'role'", i)
    if any(not isinstance(m, dict) for m in messages):
        return
    for i, want in enumerate(("system", "user")):
        if i >= len(messages) or messages[i].get("role") != want:
            walk.add("bad_order", f"message {i} must be the {want} message", i)
        elif not isinstance(messages[i].get("content"), str):
            walk.add("bad_message", f"the {want} message needs string content", i)
    i = 2
    while i < len(messages):
        msg = messages[i]
        role = msg.get("role")
        if role == "tool":
            walk.add("unexpected_tool_message", "a tool message that answers no call", i)
            i += 1
            continue
        if role != "assistant":
            walk.add("bad_order", f"expected an assistant turn, got role {role!r:.40}", i)
            i += 1
            continue
        walk.n_assistant += 1
        calls = msg.get("tool_calls")
        if calls is not None and not isinstance(calls, list):
            walk.add("bad_message", "'tool_calls' must be a list", i)
            calls = None
        if calls:
            i = _call_turn(walk, messages, i, calls)
        else:
            _answer_turn(walk, msg, i)
            i += 1


def _check_answer(walk: _Walk, trace: Trace, n_messages: int) -> None:
    if not walk.answers:
        walk.add("no_answer", "the trace has no final <answer>")
        return
    if len(walk.answers) > 1:
        walk.add("multiple_answers", f"{len(walk.answers)} answer turns, expected one", walk.answers[1][0])
    index, answer = walk.answers[-1]
    if index != n_messages - 1:
        walk.add("answer_not_last", "the answer turn must be the last message", index)
    if not isinstance(trace.answer, str) or answer != trace.answer.strip():
        walk.add("answer_mismatch", f"<answer> {answer!r:.80} != trace.answer {trace.answer!r:.80}", index)


def validate_trace(
    trace: Trace,
    max_turns: int = DEFAULT_MAX_TURNS,
    *,
    registry: ToolRegistry | None = None,
    strict: bool = False,
) -> list[TraceIssue]:
    """Every issue of one trace; an empty list means valid. Never raises on a `Trace`.

    `registry`: `registry_for(trace.tools)` when the caller already holds it (a synthesis episode
    compiled its tool set when it started), which spares re-serialising the tools to look it up.
    `strict`: the tools' quality warnings (`toolspec.tool_warnings`) are `bad_tool` issues too.
    """
    walk = _Walk(registry if registry is not None else registry_for(trace.tools))
    if not isinstance(trace.tools, list):
        walk.add("bad_field", "'tools' must be a list")
    for issue in walk.registry.issues:
        walk.add("bad_tool", str(issue))
    if strict:
        for issue in trace_tool_warnings(trace.tools):
            walk.add("bad_tool", str(issue))
    if not isinstance(trace.messages, list):
        walk.add("bad_field", "'messages' must be a list")
        return walk.issues
    _walk_messages(walk, trace.messages)
    if walk.n_assistant > max_turns:
        walk.add("too_many_turns", f"{walk.n_assistant} assistant turns, the limit is {max_turns}")
    _check_answer(walk, trace, len(trace.messages))
    return walk.issues


def trace_tool_warnings(tools: Any) -> list[ToolIssue]:
    """The quality warnings of a trace's tools (paths prefixed `tools[i]`)."""
    if not isinstance(tools, list):
        return []
    return [w for i, tool in enumerate(tools) for w in tool_warnings(tool, f"tools[{i}]")]


def validate_record(
    obj: Any, max_turns: int = DEFAULT_MAX_TURNS, *, strict: bool = False
) -> list[TraceIssue]:
    """Issues of a decoded JSONL record: field problems (`bad_field`), else those of the trace."""
    problems = record_problems(obj)
    if problems:
        return [TraceIssue("bad_field", f"{f}: {m}" if f else m) for f, m in problems]
    return validate_trace(trace_from_dict(obj), max_turns, strict=strict)
