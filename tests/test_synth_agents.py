"""The one-example pipeline: grounded traces on every benchmark sample, filtering, llm agent failures."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from mtr_hpc.data import QAExample, load_sample
from mtr_hpc.llm.fake import ScriptedClient
from mtr_hpc.llm.protocol import LLMError
from mtr_hpc.synth import (
    AutoAgentConfig,
    DistractorPool,
    SynthAgents,
    SynthConfig,
    build_kb,
    filter_trace,
    synthesize_example,
)
from mtr_hpc.trace import validate_trace

# Kept fraction floors of the grounded pipeline on the shipped samples (measured: hotpotqa, musique and
# 2wiki keep all; Bamboogle's answer key disagrees with its own decomposition on ~10% of questions).
LOOP_TURN = '<think>again</think><tool_call>{"name": "search", "arguments": {"query": "x"}}</tool_call>'
FLOORS = {"hotpotqa": 0.95, "musique": 0.95, "2wiki": 0.95, "bamboogle": 0.8}


@pytest.mark.parametrize("benchmark", sorted(FLOORS))
def test_grounded_pipeline_keeps_valid_correct_traces(benchmark):
    examples = load_sample(benchmark)
    cfg = SynthConfig(benchmark=benchmark, seed=1)
    agents = SynthAgents.build(cfg, pool=DistractorPool.from_kbs([build_kb(e) for e in examples]))
    reasons = Counter()
    for ex in examples:
        trace, verdict = synthesize_example(ex, cfg, agents)
        reasons[verdict.reason] += 1
        if verdict.keep:
            assert validate_trace(trace) == []
            assert verdict.scores["em"] == 1.0 or verdict.scores["f1"] >= 1.0
            ids = [c["id"] for m in trace.messages for c in m.get("tool_calls", [])]
            assert len(ids) == len(set(ids)) and ids[0] == "call_0"
            assert trace.meta["agents"]["toolactor"] == "grounded" and trace.meta["seed"] == 1
    kept = reasons["ok"] / len(examples)
    print(f"{benchmark}: kept {kept:.3f} of {len(examples)} {dict(reasons)}")
    assert kept >= FLOORS[benchmark], dict(reasons)
    assert set(reasons) <= {"ok", "wrong_answer", "ungrounded"}


def test_search_queries_carry_no_double_quotes():
    # A model copies the query's quotes into its call's JSON unescaped; the plans drop them.
    quoted = [e for e in load_sample("hotpotqa") if '"' in e.question][:3]
    assert quoted, "the HotpotQA sample has quoted titles to test with"
    for ex in quoted:
        trace, _ = synthesize_example(ex, SynthConfig(seed=1))
        queries = [
            json.loads(c["function"]["arguments"])["query"]
            for m in trace.messages
            for c in m.get("tool_calls", [])
            if c["function"]["name"] == "search"
        ]
        assert queries and not any('"' in q for q in queries), queries
        assert queries[0] == " ".join(ex.question.replace('"', " ").split())


def test_same_seed_same_trace():
    ex = load_sample("2wiki")[3]
    a, _ = synthesize_example(ex, SynthConfig(seed=5))
    b, _ = synthesize_example(ex, SynthConfig(seed=5))
    assert a.messages == b.messages and a.answer == b.answer


def test_filter_rejects_wrong_answer_and_invalid_trace():
    ex = load_sample("musique")[0]
    trace, verdict = synthesize_example(ex)
    assert verdict.keep
    trace.answer = "definitely wrong"
    trace.messages[-1]["content"] = "<think>x</think><answer>definitely wrong</answer>"
    keep, reason, scores = filter_trace(trace, ex)
    assert (keep, reason, scores["em"]) == (False, "wrong_answer", 0.0)
    trace.messages[-1]["content"] = "<answer>definitely wrong</answer>"
    assert filter_trace(trace, ex)[1] == "missing_think"


def test_example_without_evidence_is_rejected_not_raised():
    ex = QAExample("bare", "hotpotqa", "Who wrote Hamlet?", ["Shakespeare"], "bridge", {})
    trace, verdict = synthesize_example(ex)
    assert not verdict.keep and verdict.reason == "ungrounded"


CALL = '<think>{t}</think><tool_call>{{"name": "{n}", "arguments": {a}}}</tool_call>'


def _llm_run(outputs, max_turns=4):
    ex = load_sample("hotpotqa")[1]
    cfg = SynthConfig(autoagent=AutoAgentConfig(backend="llm", max_turns=max_turns), model="scripted-1")
    client = ScriptedClient(outputs, default=LOOP_TURN, supports_json_schema=False)
    trace, verdict = synthesize_example(ex, cfg, llm=client)
    return ex, trace, verdict, client


def test_llm_agent_good_run_is_kept():
    ex = load_sample("hotpotqa")[1]
    outputs = [
        CALL.format(t="Search first.", n="search", a=json.dumps({"query": "Kiss and Tell Corliss Archer"})),
        CALL.format(t="Open the page.", n="open_page", a=json.dumps({"title": "Shirley Temple"})),
        f"<think>She was Chief of Protocol.</think><answer>{ex.answer}</answer>",
    ]
    _, trace, verdict, client = _llm_run(outputs)
    assert verdict.keep, verdict
    assert trace.meta["model"] == "scripted-1" and trace.meta["agents"]["autoagent"] == "llm"
    assert "<tools>" in client.requests[0].messages[0]["content"]
    assert "<tool_response>" in client.requests[1].messages[-1]["content"]


@pytest.mark.parametrize(
    "outputs,reason",
    [
        (
            ['<think>x</think><tool_call>{"name": "search", "arguments": {query: 1}}</tool_call>'],
            "parse_error",
        ),
        (
            [
                CALL.format(t="x", n="get_weather", a='{"city": "Paris"}'),
                "<think>y</think><answer>z</answer>",
            ],
            "undeclared_tool",
        ),
        (
            [
                CALL.format(t="x", n="search", a='{"query": 5}'),
                "<think>y</think><answer>Chief of Protocol</answer>",
            ],
            "invalid_arguments",
        ),
        ([], "turn_limit"),
        ([LLMError("timeout", "too slow", retryable=True)], "llm_error"),
        (["I think the answer is Paris."], "parse_error"),
    ],
)
def test_llm_agent_failures_are_counted_rejects(outputs, reason):
    _, trace, verdict, _ = _llm_run(outputs)
    assert not verdict.keep and verdict.reason == reason
    assert trace.meta["validation"]["reason"] == reason


def test_llm_agent_error_observation_recorded():
    outputs = [
        CALL.format(t="x", n="get_weather", a='{"city": "Paris"}'),
        "<think>y</think><answer>z</answer>",
    ]
    _, trace, _, _ = _llm_run(outputs)
    tool_msg = next(m for m in trace.messages if m["role"] == "tool")
    assert json.loads(tool_msg["content"])["error"]["type"] == "unknown_tool"
