"""Parsing an assistant turn as the model emits it (Hermes / Qwen2.5 convention, design §3).

Grammar (whitespace allowed between elements):

    turn  := <think>TEXT</think> ( call+ | <answer>TEXT</answer> )
    call  := <tool_call>{"name": NAME, "arguments": {...}}</tool_call>

`parse_turn` never raises: every deviation becomes a `TurnError`, and whatever could still be read is
returned, so a reward function can both reject a turn and log why. One regex pass over the tags and one
`json.loads` per call keep it linear in the length of the text. Following the OpenAI API, `arguments`
may also be a JSON-encoded string of an object.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from ..toolspec.spec import NAME_RE

TAGS = ("think", "tool_call", "answer")
_TAG_RE = re.compile(r"<(/?)(think|tool_call|answer)>")
_TRAILING_COMMA_RE = re.compile(r",\s*[}\]]")

DEFAULT_MAX_CHARS = 100_000
# A pathological turn (thousands of stray tags) is reported by its first errors, not all of them.
MAX_ERRORS = 32


@dataclass(frozen=True)
class TurnError:
    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class ToolCall(NamedTuple):
    name: str
    arguments: dict[str, Any]


@dataclass
class ParsedTurn:
    think: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    answer: str | None = None
    errors: list[TurnError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def full(self) -> bool:
        """True once MAX_ERRORS are recorded: callers skip formatting messages nobody will keep."""
        return len(self.errors) >= MAX_ERRORS

    def error(self, code: str, message: str) -> None:
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(TurnError(code, message))


class _Element(NamedTuple):
    tag: str
    body: str
    start: int
    end: int


def _scan(text: str, turn: ParsedTurn) -> list[_Element]:
    """Top-level tagged elements, in order. Nested or unbalanced tags become errors."""
    elements: list[_Element] = []
    stack: list[tuple[str, int, int]] = []  # (tag, start of "<tag>", end of "<tag>")
    open_count = dict.fromkeys(TAGS, 0)
    for m in _TAG_RE.finditer(text):
        slash, tag = m.groups()
        m_start, m_end = m.span()
        if not slash:
            if stack and not turn.full:
                turn.error("nested_tag", f"<{tag}> at offset {m_start} inside <{stack[-1][0]}>")
            stack.append((tag, m_start, m_end))
            open_count[tag] += 1
            continue
        if open_count[tag] == 0:
            if not turn.full:
                turn.error("unbalanced_tag", f"</{tag}> at offset {m_start} has no opening tag")
            continue
        # Close everything opened after the matching tag: each is a tag never closed.
        while stack[-1][0] != tag:
            inner, pos, _ = stack.pop()
            open_count[inner] -= 1
            if not turn.full:
                turn.error("unbalanced_tag", f"<{inner}> at offset {pos} is never closed")
        _, start, body_start = stack.pop()
        open_count[tag] -= 1
        if not stack:
            elements.append(_Element(tag, text[body_start:m_start], start, m_end))
    for tag, pos, _ in stack[:MAX_ERRORS]:
        turn.error("unbalanced_tag", f"<{tag}> at offset {pos} is never closed")
    return elements


def _check_outside(text: str, elements: list[_Element], turn: ParsedTurn) -> None:
    cursor = 0
    for el in [*elements, _Element("", "", len(text), len(text))]:
        gap = text[cursor : el.start]
        if gap.strip():
            snippet = gap.strip()[:40]
            turn.error("text_outside_tags", f"text outside tags at offset {cursor}: {snippet!r}")
        cursor = max(cursor, el.end)


def decode_arguments(raw: Any) -> tuple[dict[str, Any] | None, TurnError | None]:
    """`arguments` as a dict: an object as is, or a JSON-encoded string of an object (OpenAI style)."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            code = "trailing_comma" if _TRAILING_COMMA_RE.search(raw) else "bad_json"
            return None, TurnError(code, f"arguments string is not JSON: {exc}"[:200])
    if not isinstance(raw, dict):
        return None, TurnError("bad_arguments", f"arguments must be an object, got {type(raw).__name__}")
    return raw, None


def parse_call_object(obj: Any) -> tuple[ToolCall | None, list[TurnError]]:
    """Check one decoded `{"name", "arguments"}` object."""
    if not isinstance(obj, dict):
        return None, [
            TurnError("call_not_object", f"a tool call must be a JSON object, got {type(obj).__name__}")
        ]
    errors = []
    name = obj.get("name")
    if not (isinstance(name, str) and NAME_RE.fullmatch(name)):
        errors.append(TurnError("bad_tool_name", f"tool name {name!r:.80} does not match {NAME_RE.pattern}"))
    if "arguments" not in obj:
        errors.append(TurnError("bad_arguments", "tool call has no 'arguments'"))
        args = None
    else:
        args, err = decode_arguments(obj["arguments"])
        if err:
            errors.append(err)
    if errors:
        return None, errors
    return ToolCall(name, args), []


def _parse_call(body: str, turn: ParsedTurn) -> None:
    try:
        obj = json.loads(body)
    except (ValueError, RecursionError) as exc:
        if _TRAILING_COMMA_RE.search(body):
            turn.error("trailing_comma", "tool call JSON has a trailing comma")
        else:
            turn.error("bad_json", f"tool call is not JSON: {exc}"[:200])
        return
    call, errors = parse_call_object(obj)
    for e in errors:
        turn.error(e.code, e.message)
    if call is not None:
        turn.tool_calls.append(call)


def _check_order(elements: list[_Element], turn: ParsedTurn, require_action: bool) -> None:
    thinks = [i for i, el in enumerate(elements) if el.tag == "think"]
    n_calls = sum(el.tag == "tool_call" for el in elements)
    n_answers = sum(el.tag == "answer" for el in elements)
    if not thinks:
        turn.error("missing_think", "the turn does not start with <think>...</think>")
    elif thinks[0] != 0:
        turn.error("missing_think", "<think> must come before any action")
    if len(thinks) > 1:
        turn.error("multiple_think", f"{len(thinks)} <think> blocks, expected one")
    if n_calls and n_answers:
        turn.error("both_call_and_answer", "a turn either calls tools or answers, not both")
    if n_answers > 1:
        turn.error("multiple_answers", f"{n_answers} <answer> blocks, expected one")
    if require_action and not n_calls and not n_answers:
        turn.error("no_action", "no <tool_call> and no <answer> after <think>")


def parse_turn(text: Any, *, max_chars: int = DEFAULT_MAX_CHARS, require_action: bool = True) -> ParsedTurn:
    """Parse one assistant turn. With `require_action=False` a bare `<think>` turn is accepted (the
    content of a trace's call turn, whose calls live in the message's `tool_calls`)."""
    turn = ParsedTurn()
    if not isinstance(text, str):
        turn.error("not_text", f"turn content must be a string, got {type(text).__name__}")
        return turn
    if len(text) > max_chars:
        turn.error("too_long", f"turn has {len(text)} characters, the limit is {max_chars}")
        return turn
    elements = _scan(text, turn)
    _check_outside(text, elements, turn)
    _check_order(elements, turn, require_action)
    for el in elements:
        if el.tag == "think" and turn.think is None:
            turn.think = el.body.strip()
        elif el.tag == "answer" and turn.answer is None:
            turn.answer = el.body.strip()
            if not turn.answer:
                turn.error("empty_answer", "<answer> is empty")
        elif el.tag == "tool_call":
            _parse_call(el.body, turn)
    return turn
