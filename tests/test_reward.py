"""The composite reward (design §4), component by component, on hand-built traces."""

from __future__ import annotations

import json
import math

import pytest

from mtr_hpc.data.example import QAExample
from mtr_hpc.errors import ConfigError
from mtr_hpc.reward import RewardConfig, score_episode
from mtr_hpc.trace.model import Trace


def tool(name, params, returns):
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": f"The {name} tool.",
            "parameters": {
                "type": "object",
                "properties": {p: {"type": "string", "description": f"The {p}."} for p in params},
                "required": list(params),
                "additionalProperties": False,
            },
        },
        "x-returns": {"type": "object", "properties": {r: {} for r in returns}, "required": list(returns)},
    }


LOOKUP = tool("get_nationality", ["person"], ["person", "nationality"])
COMPARE = tool("compare", ["a", "b", "operator"], ["result"])
TOOLS = [LOOKUP, COMPARE]
NATIONALITY = {"Scott Derrickson": "American", "Ed Wood": "American", "Lars von Trier": "Danish"}


class Builder:
    def __init__(self, question):
        self.question = question
        self.messages = [{"role": "system", "content": "sys"}, {"role": "user", "content": question}]
        self.n = 0

    def call(self, think, *calls):
        tool_calls, obs = [], []
        for name, args, result in calls:
            cid = f"call_{self.n}"
            self.n += 1
            tool_calls.append(
                {"id": cid, "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}
            )
            obs.append({"role": "tool", "tool_call_id": cid, "content": json.dumps(result)})
        self.messages.append(
            {"role": "assistant", "content": f"<think>{think}</think>", "tool_calls": tool_calls}
        )
        self.messages += obs
        return self

    def answer(self, think, answer):
        self.messages.append(
            {"role": "assistant", "content": f"<think>{think}</think><answer>{answer}</answer>"}
        )
        return self.messages


def example(question, answers, benchmark="hotpotqa"):
    return QAExample("q1", benchmark, question, answers)


Q_DIRECTOR = "What is the nationality of the director of Dogville?"
Q_SAME = "Were Scott Derrickson and Ed Wood of the same nationality?"


def grounded_trace():
    b = Builder(Q_DIRECTOR).call(
        "Dogville was directed by Lars von Trier; look him up.", lookup("Lars von Trier")
    )
    return b.answer("He is Danish.", "Danish")


def lookup(person):
    return ("get_nationality", {"person": person}, {"person": person, "nationality": NATIONALITY[person]})


def test_valid_correct_grounded_is_one_plus_lambda():
    r = score_episode(
        grounded_trace(), TOOLS, example(Q_DIRECTOR, ["Danish"]), RewardConfig(lam=0.2), n_tokens=100
    )
    assert r.valid and r.reasons == []
    assert (r.em, r.f1, r.correct) == (1.0, 1.0, 1.0)
    assert (r.grounded, r.non_redundant, r.coherent, r.consist) == (1.0, 1.0, 1.0, 1.0)
    assert r.total == pytest.approx(1.2)
    assert r.metrics()["reward/total"] == pytest.approx(1.2) and r.metrics()["reward/valid"] == 1.0


def test_wrong_answer_keeps_consistency_and_alpha_mixes_f1():
    msgs = grounded_trace()
    ex = example(Q_DIRECTOR, ["Danish people"])
    r = score_episode(msgs, TOOLS, ex, RewardConfig(alpha=1.0, lam=0.2))
    assert r.valid and r.em == 0.0 and r.f1 == pytest.approx(2 / 3) and r.total == pytest.approx(0.2)
    r = score_episode(msgs, TOOLS, ex, RewardConfig(alpha=0.5, lam=0.0))
    assert r.total == pytest.approx(0.5 * 2 / 3)


@pytest.mark.parametrize(
    "mutate, reason",
    [
        (lambda m: m[-1].update(content="Danish"), "missing_think"),
        (lambda m: m[2]["tool_calls"][0]["function"].update(name="get_age"), "undeclared_tool"),
        (lambda m: m[2]["tool_calls"][0]["function"].update(arguments='{"who": "x"}'), "invalid_arguments"),
        (lambda m: m.pop(), "no_answer"),
    ],
)
def test_invalid_gets_minus_beta(mutate, reason):
    msgs = grounded_trace()
    mutate(msgs)
    r = score_episode(msgs, TOOLS, example(Q_DIRECTOR, ["Danish"]), RewardConfig(beta=0.7))
    assert not r.valid and reason in r.reasons and r.total == -0.7


def test_turn_and_token_limits():
    ex = example(Q_DIRECTOR, ["Danish"])
    r = score_episode(grounded_trace(), TOOLS, ex, RewardConfig(max_turns=1))
    assert "too_many_turns" in r.reasons and r.total == -0.5
    r = score_episode(grounded_trace(), TOOLS, ex, RewardConfig(max_tokens=99), n_tokens=100)
    assert r.reasons == ["too_many_tokens"] and r.total == -0.5
    assert score_episode(grounded_trace(), TOOLS, ex, RewardConfig(max_tokens=100), n_tokens=100).valid


def test_redundant_call():
    b = Builder(Q_DIRECTOR)
    b.call("Look up Lars von Trier.", lookup("Lars von Trier"))
    b.call("He is Danish; check again.", lookup("Lars von Trier"))
    r = score_episode(b.answer("He is Danish.", "Danish"), TOOLS, example(Q_DIRECTOR, ["Danish"]))
    assert r.valid and r.non_redundant == 0.0 and r.consist == pytest.approx(2 / 3)
    assert r.total == pytest.approx(1 + 0.2 * 2 / 3)


def test_ungrounded_answer():
    b = Builder(Q_DIRECTOR).call("Look up Lars von Trier.", lookup("Lars von Trier"))
    r = score_episode(
        b.answer("He is Danish, so maybe Swedish.", "Swedish"), TOOLS, example(Q_DIRECTOR, ["Swedish"])
    )
    assert r.valid and r.correct == 1.0 and r.grounded == 0.0
    # A token-boundary match only: "Dan" is not grounded by "Danish".
    b = Builder(Q_DIRECTOR).call("Look up Lars von Trier.", lookup("Lars von Trier"))
    assert score_episode(b.answer("Danish.", "Dan"), TOOLS, example(Q_DIRECTOR, ["Dan"])).grounded == 0.0


def test_yes_no_after_comparison_of_observed_operands():
    ex = example(Q_SAME, ["yes"])
    b = Builder(Q_SAME).call("Look up both.", lookup("Scott Derrickson"))
    b.call(
        "Derrickson is American; compare with Ed Wood's.",
        ("compare", {"a": "American", "b": "American", "operator": "equal"}, {"result": True}),
    )
    r = score_episode(b.answer("The comparison says yes.", "yes"), TOOLS, ex)
    assert r.valid and r.grounded == 1.0 and r.total == pytest.approx(1.2)
    # Operand never observed ("British"), and only one lookup: not grounded.
    b = Builder(Q_SAME).call("Look up one.", lookup("Scott Derrickson"))
    b.call(
        "American; compare.",
        ("compare", {"a": "American", "b": "British", "operator": "equal"}, {"result": False}),
    )
    assert score_episode(b.answer("Different.", "no"), TOOLS, example(Q_SAME, ["no"])).grounded == 0.0
    # Two lookups are a comparison of observed values.
    b = Builder(Q_SAME).call("Both at once.", lookup("Scott Derrickson"), lookup("Ed Wood"))
    assert score_episode(b.answer("Both American: yes.", "yes"), TOOLS, ex).grounded == 1.0
    # A bare yes without any tool use is not grounded.
    assert score_episode(Builder(Q_SAME).answer("Guess.", "yes"), TOOLS, ex).grounded == 0.0


def test_coherence_needs_thinks_and_references():
    ex = example(Q_DIRECTOR, ["Danish"])
    # The final think ignores the observation (mentions nothing new): 1 of 2 turns coherent.
    b = Builder(Q_DIRECTOR).call("Look up Lars von Trier.", lookup("Lars von Trier"))
    r = score_episode(b.answer("I will answer the question now.", "Swedish"), TOOLS, ex)
    assert r.coherent == pytest.approx(0.5)
    # The answer itself may carry the reference.
    b = Builder(Q_DIRECTOR).call("Look up Lars von Trier.", lookup("Lars von Trier"))
    assert score_episode(b.answer("Done.", "Danish"), TOOLS, ex).coherent == 1.0
    # An empty think is incoherent.
    b = Builder(Q_DIRECTOR).call("", lookup("Lars von Trier"))
    assert score_episode(b.answer("He is Danish.", "Danish"), TOOLS, ex).coherent == pytest.approx(0.5)


def test_trace_input_and_never_nan():
    msgs = grounded_trace()
    t = Trace("t", "q1", "hotpotqa", TOOLS, msgs, "Danish")
    assert score_episode(t, None, example(Q_DIRECTOR, ["Danish"])).total == pytest.approx(1.2)
    # Garbage of every kind scores finitely.
    junk = [
        [],
        [{"role": "assistant", "content": None}],
        [
            {"role": "system"},
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": "<answer></answer>"},
        ],
        [
            *msgs[:2],
            {"role": "assistant", "content": "<think>x</think>", "tool_calls": [{"function": "bad"}, 3]},
        ],
        [*msgs[:3], {"role": "tool", "tool_call_id": "call_0", "content": '{"v": NaN}'}, msgs[-1]],
        "not a list",
    ]
    for m in junk:
        r = score_episode(m, TOOLS, example(Q_DIRECTOR, ["Danish"]))
        assert not r.valid and r.total == -0.5
        assert all(math.isfinite(x) for x in r.metrics().values())
    with pytest.raises(ConfigError):
        score_episode(msgs, TOOLS, example(Q_DIRECTOR, ["Danish"]), RewardConfig(lam=float("nan")))
    with pytest.raises(ConfigError):
        RewardConfig(alpha=1.5).validate()
