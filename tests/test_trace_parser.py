"""The assistant-turn parser: grammar, error codes, and that it never raises."""

from __future__ import annotations

import json
import random
import time

import pytest

from mtr_hpc.trace import ParsedTurn, parse_turn


def call(name, arguments) -> str:
    return f"<tool_call>{json.dumps({'name': name, 'arguments': arguments})}</tool_call>"


def codes(turn: ParsedTurn) -> set[str]:
    return {e.code for e in turn.errors}


def test_call_turn():
    turn = parse_turn("<think>look it up</think>" + call("search", {"query": "Ed Wood"}))
    assert turn.ok and turn.think == "look it up" and turn.answer is None
    assert turn.tool_calls == [("search", {"query": "Ed Wood"})]
    name, args = turn.tool_calls[0]
    assert name == "search" and args == {"query": "Ed Wood"}


def test_several_calls_with_whitespace_between():
    text = "\n <think>\ntwo lookups\n</think>\n\n" + call("a", {"x": 1}) + "\n" + call("b-2", {}) + "\n"
    turn = parse_turn(text)
    assert turn.ok and turn.think == "two lookups"
    assert [c.name for c in turn.tool_calls] == ["a", "b-2"]


def test_answer_turn():
    turn = parse_turn("<think>both American</think> <answer> yes </answer>")
    assert turn.ok and turn.answer == "yes" and turn.tool_calls == []


def test_unicode_everywhere():
    text = "<think>Zürich → 東京 🚄</think>" + call("lookup_城市", {"q": "Ø"})
    assert codes(parse_turn(text)) == {"bad_tool_name"}
    turn = parse_turn("<think>Zürich → 東京 🚄</think>" + call("lookup", {"q": "Ø東"}))
    assert turn.ok and turn.tool_calls[0].arguments == {"q": "Ø東"}


def test_arguments_as_json_string_are_accepted():
    turn = parse_turn("<think>t</think>" + call("search", json.dumps({"query": "x"})))
    assert turn.ok and turn.tool_calls == [("search", {"query": "x"})]


@pytest.mark.parametrize(
    "text, code",
    [
        ("<answer>x</answer>", "missing_think"),
        (call("a", {}) + "<think>late</think>", "missing_think"),
        ("<think>a</think>", "no_action"),
        ("<think>a</think><think>b</think><answer>c</answer>", "multiple_think"),
        ("<think>a</think><answer>b</answer><answer>c</answer>", "multiple_answers"),
        ("<think>a</think><answer>b</answer>" + call("a", {}), "both_call_and_answer"),
        ("<think>a</think><answer> </answer>", "empty_answer"),
        ("<think>a<answer>b</answer></think>", "nested_tag"),
        ("<think>a</think><tool_call>" + call("a", {}) + "</tool_call>", "nested_tag"),
        ("<think>a</think><answer>b", "unbalanced_tag"),
        ("<think>a</think></answer>b", "unbalanced_tag"),
        ("<think>a</answer>", "unbalanced_tag"),
        ("so: <think>a</think><answer>b</answer>", "text_outside_tags"),
        ("<think>a</think><answer>b</answer> and more", "text_outside_tags"),
        ("<think>a</think><tool_call>{name: a}</tool_call>", "bad_json"),
        ("<think>a</think><tool_call></tool_call>", "bad_json"),
        ('<think>a</think><tool_call>{"name": "a", "arguments": {"x": 1,}}</tool_call>', "trailing_comma"),
        ('<think>a</think><tool_call>{"name": "a", "arguments": {},}</tool_call>', "trailing_comma"),
        ('<think>a</think><tool_call>["a", {}]</tool_call>', "call_not_object"),
        ('<think>a</think><tool_call>"a"</tool_call>', "call_not_object"),
        ("<think>a</think>" + call("has space", {}), "bad_tool_name"),
        ("<think>a</think>" + call("x" * 65, {}), "bad_tool_name"),
        ("<think>a</think>" + call(None, {}), "bad_tool_name"),
        ("<think>a</think>" + call("a", [1, 2]), "bad_arguments"),
        ("<think>a</think>" + call("a", "[1, 2]"), "bad_arguments"),
        ("<think>a</think>" + call("a", 3), "bad_arguments"),
        ('<think>a</think><tool_call>{"name": "a"}</tool_call>', "bad_arguments"),
        ("<think>a</think>" + call("a", '{"x": 1,}'), "trailing_comma"),
        ("<think>a</think>" + call("a", "{x}"), "bad_json"),
    ],
)
def test_error_codes(text, code):
    turn = parse_turn(text)
    assert not turn.ok
    assert code in codes(turn), [str(e) for e in turn.errors]


def test_bad_call_is_dropped_good_one_kept():
    turn = parse_turn("<think>a</think>" + call("a b", {}) + call("ok", {"k": 1}))
    assert codes(turn) == {"bad_tool_name"} and turn.tool_calls == [("ok", {"k": 1})]


def test_too_long_and_non_text():
    text = "<think>" + "x" * 50 + "</think><answer>y</answer>"
    assert parse_turn(text).ok
    assert codes(parse_turn(text, max_chars=20)) == {"too_long"}
    assert codes(parse_turn(None)) == {"not_text"}
    assert codes(parse_turn(b"<think>")) == {"not_text"}


def test_bare_think_accepted_when_no_action_required():
    turn = parse_turn("<think>plan</think>", require_action=False)
    assert turn.ok and turn.think == "plan"


def test_errors_are_capped_on_pathological_input():
    turn = parse_turn("</think>" * 10_000)
    assert 0 < len(turn.errors) <= 32


def test_linear_time_on_huge_adversarial_strings():
    # Quadratic behaviour on any of these would take minutes; linear takes well under a second.
    n = 50_000
    cases = [
        "<think>" * n,
        "</answer>" * n,
        "<think>" + "<tool_call>" * n + "</think>" * n,
        "<think>a</think>" + "<tool_call>{" * n,
        "<think>a</think><tool_call>" + "[" * n + "</tool_call>",
        "x" * (20 * n),
    ]
    for text in cases:
        start = time.perf_counter()
        turn = parse_turn(text, max_chars=len(text))
        assert not turn.ok
        assert time.perf_counter() - start < 3.0, text[:30]


_PIECES = [
    "<think>", "</think>", "<tool_call>", "</tool_call>", "<answer>", "</answer>", "<think", "tool_call>",
    "{", "}", "[", "]", '"', ":", ",", '"name"', '"arguments"', "{}", "null", "1e999", "-", "\\", "\\u00",
    " ", "\n", "\t", "é", "東", "🚄", "\x00", "\ud800", "yes", "<", ">", "/", '"a b"', "99999999999999999999",
]  # fmt: skip


def _mutate(rng: random.Random, text: str) -> str:
    pos = rng.randrange(len(text) + 1)
    op = rng.randrange(4)
    if op == 0:
        return text[:pos] + rng.choice(_PIECES) + text[pos:]
    if op == 1:
        return text[:pos] + text[pos + rng.randrange(1, 8) :]
    if op == 2:
        a, b = sorted((rng.randrange(len(text) + 1), pos))
        return text[:b] + text[a:b] + text[b:]
    return text[:pos] + chr(rng.randrange(0x20, 0x3000)) + text[pos + 1 :]


def _check_invariants(turn: ParsedTurn) -> None:
    assert isinstance(turn, ParsedTurn)
    for name, args in turn.tool_calls:
        assert isinstance(name, str) and isinstance(args, dict)
    if turn.ok:
        assert turn.think is not None
        assert bool(turn.tool_calls) != (turn.answer is not None)


def test_fuzz_never_raises():
    rng = random.Random(1234)
    seeds = [
        "<think>a</think>" + call("search", {"query": "Ed Wood", "k": 2}) + call("open", '{"t": "x"}'),
        "<think>they match</think>\n<answer>yes</answer>",
    ]
    n_ok = 0
    for i in range(3000):
        if i % 3 == 0:
            text = "".join(rng.choice(_PIECES) for _ in range(rng.randrange(40)))
        else:
            text = rng.choice(seeds)
            for _ in range(rng.randrange(1, 6)):
                text = _mutate(rng, text)
        turn = parse_turn(text)
        _check_invariants(turn)
        n_ok += turn.ok
    assert 0 < n_ok < 3000  # the loop exercised both accepted and rejected turns
