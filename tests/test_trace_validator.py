"""Whole-trace validation and trace JSONL IO."""

from __future__ import annotations

import copy
import json

import pytest
from _paths import FIXTURES

from mtr_hpc.errors import DataError
from mtr_hpc.trace import Trace, read_traces, validate_record, validate_trace, write_traces


@pytest.fixture()
def traces() -> list[Trace]:
    traces, errors = read_traces(FIXTURES / "traces_valid.jsonl")
    assert errors == [] and len(traces) == 2
    return traces


@pytest.fixture()
def bridge(traces) -> Trace:
    return copy.deepcopy(traces[0])


@pytest.fixture()
def comparison(traces) -> Trace:
    return copy.deepcopy(traces[1])


def codes(trace: Trace, **kw) -> set[str]:
    return {i.code for i in validate_trace(trace, **kw)}


def args_of(trace: Trace, msg: int, k: int = 0) -> dict:
    return json.loads(trace.messages[msg]["tool_calls"][k]["function"]["arguments"])


def set_args(trace: Trace, msg: int, args, k: int = 0) -> None:
    trace.messages[msg]["tool_calls"][k]["function"]["arguments"] = json.dumps(args)


def test_hand_written_traces_are_valid(traces):
    for trace in traces:
        assert validate_trace(trace) == []
    assert traces[1].messages[2]["tool_calls"][1]["id"] == "call_b"  # the parallel-call case is covered


def test_undeclared_tool(bridge):
    bridge.messages[4]["tool_calls"][0]["function"]["name"] = "browse"
    issues = validate_trace(bridge)
    assert [(i.code, i.index) for i in issues] == [("undeclared_tool", 4)]


def test_schema_invalid_arguments(bridge):
    set_args(bridge, 2, {**args_of(bridge, 2), "k": 50})
    assert codes(bridge) == {"invalid_arguments"}
    set_args(bridge, 2, {"k": 2})
    assert codes(bridge) == {"invalid_arguments"}


def test_arguments_not_a_json_object(bridge):
    bridge.messages[2]["tool_calls"][0]["function"]["arguments"] = '{"query": "x",}'
    assert codes(bridge) == {"trailing_comma"}
    bridge.messages[2]["tool_calls"][0]["function"]["arguments"] = '["x"]'
    assert codes(bridge) == {"bad_arguments"}
    bridge.messages[2]["tool_calls"][0]["function"]["arguments"] = {"query": "x"}
    assert codes(bridge) == {"bad_tool_call"}


def test_observation_violating_x_returns(bridge):
    bridge.messages[5]["content"] = json.dumps({"title": "Shirley Temple"})
    issues = validate_trace(bridge)
    assert [(i.code, i.index) for i in issues] == [("invalid_observation", 5)]
    bridge.messages[5]["content"] = "Shirley Temple was a diplomat."
    assert codes(bridge) == {"bad_observation_json"}


def test_tool_call_id_mismatch(comparison):
    comparison.messages[3]["tool_call_id"], comparison.messages[4]["tool_call_id"] = "call_b", "call_a"
    issues = validate_trace(comparison)
    assert [(i.code, i.index) for i in issues] == [("id_mismatch", 3), ("id_mismatch", 4)]


def test_duplicate_call_ids(comparison):
    comparison.messages[5]["tool_calls"][0]["id"] = "call_a"
    comparison.messages[6]["tool_call_id"] = "call_a"
    assert codes(comparison) == {"duplicate_call_id"}


def test_missing_and_extra_tool_messages(comparison):
    missing = copy.deepcopy(comparison)
    del missing.messages[4]
    assert "missing_tool_response" in codes(missing)
    extra = copy.deepcopy(comparison)
    extra.messages.insert(5, copy.deepcopy(extra.messages[4]))
    assert codes(extra) == {"unexpected_tool_message"}


def test_two_answers(bridge):
    bridge.messages.insert(6, copy.deepcopy(bridge.messages[6]))
    issues = validate_trace(bridge)
    assert {i.code for i in issues} == {"multiple_answers"}


def test_no_answer(bridge):
    del bridge.messages[6]
    assert codes(bridge) == {"no_answer"}
    bridge.messages.append({"role": "assistant", "content": "<think>I give up.</think>"})
    assert codes(bridge) == {"no_action", "no_answer"}


def test_answer_must_be_last_and_match(bridge):
    moved = copy.deepcopy(bridge)
    moved.messages.insert(4, moved.messages.pop(6))
    assert "answer_not_last" in codes(moved)
    bridge.answer = "Ambassador"
    assert codes(bridge) == {"answer_mismatch"}
    bridge.answer = None
    assert codes(bridge) == {"answer_mismatch"}


def test_too_many_turns(bridge):
    assert codes(bridge, max_turns=3) == set()
    assert codes(bridge, max_turns=2) == {"too_many_turns"}


def test_bad_grammar(bridge):
    bridge.messages[2]["content"] = "Let me search.<think>plan</think>"
    assert codes(bridge) == {"text_outside_tags"}
    bridge.messages[2]["content"] = "<think>plan</think><answer>early</answer>"
    assert "both_call_and_answer" in codes(bridge)
    bridge.messages[2]["content"] = "<think>plan</think>"
    bridge.messages[6]["content"] = "<answer>Chief of Protocol</answer>"
    assert codes(bridge) == {"missing_think"}


def test_call_written_in_content(bridge):
    bridge.messages[6]["content"] = (
        '<think>t</think><tool_call>{"name": "open_page", "arguments": {}}</tool_call>'
    )
    assert codes(bridge) == {"call_in_content", "no_answer"}


def test_invalid_tools_and_structure(bridge, comparison):
    bridge.tools[0]["function"]["description"] = ""
    assert validate_trace(bridge) == []  # OpenAI's format allows it: bad only under strict
    assert {i.code for i in validate_trace(bridge, strict=True)} == {"bad_tool"}
    bridge.tools[0]["function"]["name"] = "two words"
    assert codes(bridge) >= {"bad_tool"}
    comparison.messages[0], comparison.messages[1] = comparison.messages[1], comparison.messages[0]
    assert codes(comparison) == {"bad_order"}
    comparison.messages.append("not a message")
    assert "bad_message" in codes(comparison)


def test_validate_record_of_raw_values(traces):
    assert validate_record(traces[0].to_dict()) == []
    assert {i.code for i in validate_record([1, 2])} == {"bad_field"}
    rec = traces[0].to_dict()
    del rec["messages"]
    rec["tools"] = "none"
    assert [i.message for i in validate_record(rec)] == ["tools: must be list, got str", "messages: missing"]


def test_write_read_round_trip(tmp_path, traces):
    path = tmp_path / "out" / "t.jsonl"
    assert write_traces(path, traces) == 2
    again, errors = read_traces(path)
    assert errors == [] and again == traces
    assert [p.name for p in path.parent.iterdir()] == ["t.jsonl"]  # no temp file left behind


def test_read_traces_bad_lines(tmp_path, traces):
    path = tmp_path / "t.jsonl"
    good = json.dumps(traces[0].to_dict())
    path.write_text(good + "\n{not json\n\n" + json.dumps({"id": "x"}) + "\n" + good + "\n")
    with pytest.raises(DataError, match="line 2"):
        read_traces(path)
    ok, errors = read_traces(path, skip_bad=True)
    assert len(ok) == 2
    assert [(e.where, e.field) for e in errors] == [("line 2", None), ("line 4", "example_id")]
    with pytest.raises(DataError, match="cannot read"):
        read_traces(tmp_path / "missing.jsonl")
    (tmp_path / "bin.jsonl").write_bytes(b"\xff\xfe\n")
    with pytest.raises(DataError, match="UTF-8"):
        read_traces(tmp_path / "bin.jsonl")


def test_unicode_line_separator_inside_a_string(tmp_path, traces):
    trace = copy.deepcopy(traces[0])
    trace.meta["note"] = "a\u2028b\u0085c"
    write_traces(tmp_path / "t.jsonl", [trace])
    again, _ = read_traces(tmp_path / "t.jsonl")
    assert again[0].meta["note"] == "a\u2028b\u0085c"


_JUNK = [None, 0, -1, "", "x", "<think>", [], {}, [None], {"role": "tool"}, 1.5, True, "\ud800"]


def _mutate(rng, value, depth=0):
    """Replace, delete or duplicate one random node of a JSON-like value."""
    if isinstance(value, dict) and value and depth < 6 and rng.random() < 0.8:
        key = rng.choice(list(value))
        op = rng.random()
        if op < 0.2:
            del value[key]
        elif op < 0.35:
            value[key] = rng.choice(_JUNK)
        else:
            value[key] = _mutate(rng, value[key], depth + 1)
        return value
    if isinstance(value, list) and value and depth < 6 and rng.random() < 0.8:
        i = rng.randrange(len(value))
        op = rng.random()
        if op < 0.2:
            del value[i]
        elif op < 0.3:
            value.insert(i, copy.deepcopy(value[i]))
        else:
            value[i] = _mutate(rng, value[i], depth + 1)
        return value
    if isinstance(value, str) and value and rng.random() < 0.7:
        pos = rng.randrange(len(value))
        return value[:pos] + rng.choice(["<", "}", ",", "</think>", '"', "é", ""]) + value[pos + 1 :]
    return rng.choice(_JUNK)


def test_fuzzed_records_never_raise(traces):
    import random

    rng = random.Random(3)
    seen = set()
    for i in range(1500):
        record = traces[i % 2].to_dict()
        for _ in range(rng.randint(1, 4)):
            record = _mutate(rng, record)
        issues = validate_record(record)
        seen.update(issue.code for issue in issues)
    assert len(seen) >= 15, seen  # the mutations reach many different checks
