"""The multi-turn rollout environment: scripted engine (exact), real ToolActor, and the HF engine."""

from __future__ import annotations

import json

import pytest

from mtr_hpc.data.example import QAExample
from mtr_hpc.errors import ConfigError
from mtr_hpc.models.tokenizers import build_test_tokenizer
from mtr_hpc.reward import RewardConfig, score_episode
from mtr_hpc.rollout.env import EnvConfig, run_episodes
from mtr_hpc.rollout.episode import check_drift, drift_metrics
from mtr_hpc.rollout.protocol import Generation, SamplingParams
from mtr_hpc.sim import ActorSimulator, EpisodeSetup, open_groups
from mtr_hpc.trace.render import ChatRenderer

LOOKUP = {
    "type": "function",
    "function": {
        "name": "lookup",
        "description": "Look up a fact about an entity.",
        "parameters": {
            "type": "object",
            "properties": {"entity": {"type": "string", "description": "The entity name."}},
            "required": ["entity"],
            "additionalProperties": False,
        },
    },
    "x-returns": {
        "type": "object",
        "properties": {"entity": {"type": "string"}, "fact": {"type": "string"}},
        "required": ["entity", "fact"],
    },
}
FACTS = {
    "Arthur's Magazine": "Arthur's Magazine was started in 1844.",
    "First for Women": "First for Women was started in 1989.",
}
EXAMPLE = QAExample(
    "ex-1",
    "hotpotqa",
    "Which magazine was started first, Arthur's Magazine or First for Women?",
    ["Arthur's Magazine"],
)


def fake_call(name, args):
    return {"entity": args["entity"], "fact": FACTS.get(args["entity"], "unknown")}


def setup(example=EXAMPLE):
    return EpisodeSetup(example, [LOOKUP], fake_call)


@pytest.fixture(scope="module")
def renderer():
    return ChatRenderer(build_test_tokenizer())


def call_text(renderer, think, *entities):
    calls = [{"function": {"name": "lookup", "arguments": json.dumps({"entity": e})}} for e in entities]
    return renderer.assistant_turn_text(
        {"role": "assistant", "content": f"<think>{think}</think>", "tool_calls": calls}
    )


def answer_text(think, answer):
    return f"<think>{think}</think><answer>{answer}</answer>"


class ScriptedEngine:
    """Plays a list of turns per episode. A turn is text (tokenized canonically, plus <|im_end|>) or a
    list of ids (sent as is). It identifies the episode of each prompt by the exact token history it
    produced before, so a prompt that is not token-in/token-out fails the test."""

    def __init__(self, renderer, scripts):
        self.renderer = renderer
        self.scripts = [list(s) for s in scripts]
        self.history: list[list[int] | None] = [None] * len(scripts)
        self.calls: list[list[SamplingParams]] = []
        self.sampled: list[list[list[int]]] = [[] for _ in scripts]

    def _episode(self, prompt, served):
        for k, hist in enumerate(self.history):
            if k in served:
                continue
            if hist is None:
                self.history[k] = list(prompt)
                return k
            if prompt[: len(hist)] == hist and len(prompt) > len(hist) and self.scripts[k]:
                return k
        raise AssertionError("prompt does not extend any episode's history")

    def generate(self, prompts, params):
        assert isinstance(params, list) and len(params) == len(prompts)
        self.calls.append(params)
        out, served = [], set()
        for prompt, p in zip(prompts, params, strict=True):
            k = self._episode(prompt, served)
            served.add(k)
            turn = self.scripts[k].pop(0)
            if isinstance(turn, str):
                eot = self.renderer.end_of_turn_id
                ids = self.renderer.tokenizer.encode(turn, add_special_tokens=False) + [eot]
            else:
                ids = list(turn)
            stop_at = next((i for i, t in enumerate(ids) if t in p.stop_token_ids), None)
            if stop_at is not None and stop_at < p.max_new_tokens:
                ids, finish = ids[: stop_at + 1], "stop"
            else:
                ids, finish = ids[: p.max_new_tokens], "length"
            self.sampled[k].append(ids)
            self.history[k] = list(prompt) + ids
            lps = [-0.01 * (i + 1) for i in range(len(ids))]
            out.append(Generation(ids, lps, finish, ids[-1] if finish == "stop" else None))
        return out


def two_call_script(renderer):
    return [
        call_text(renderer, "I need when Arthur's Magazine started.", "Arthur's Magazine"),
        call_text(renderer, "Arthur's Magazine started in 1844. Now First for Women.", "First for Women"),
        answer_text("First for Women started in 1989, later than 1844.", "Arthur's Magazine"),
    ]


def test_two_calls_then_answer(renderer):
    engine = ScriptedEngine(renderer, [two_call_script(renderer)])
    (ep,) = run_episodes(engine, renderer, [setup()], SamplingParams(seed=3), EnvConfig())
    assert (ep.finish, ep.turns, ep.tool_calls, ep.invalid_calls) == ("answer", 3, 2, 0)
    assert ep.answer == "Arthur's Magazine"
    assert [m["role"] for m in ep.messages] == [
        "system",
        "user",
        "assistant",
        "tool",
        "assistant",
        "tool",
        "assistant",
    ]
    assert json.loads(ep.messages[3]["content"])["fact"] == FACTS["Arthur's Magazine"]
    assert ep.token_ids[: ep.prompt_len] == renderer.render_prefix(ep.messages[:2], [LOOKUP])
    # Loss mask 1 exactly on the sampled ids, which sit in token_ids as sampled, logprobs aligned.
    sampled = [i for i, m in enumerate(ep.loss_mask) if m]
    flat = [t for turn in engine.sampled[0] for t in turn]
    assert [ep.token_ids[i] for i in sampled] == flat and ep.n_generated == len(flat)
    assert [ep.engine_logprobs[i] for i in sampled] == [
        -0.01 * (i + 1) for t in engine.sampled[0] for i in range(len(t))
    ]
    assert all(lp == 0.0 for lp, m in zip(ep.engine_logprobs, ep.loss_mask, strict=True) if not m)
    for (a, b), turn in zip(ep.turn_spans, engine.sampled[0], strict=True):
        assert ep.token_ids[a:b] == turn
    # A finished rollout plus the separator IS render() of its messages: drift 0.
    rendered = renderer.render(ep.messages, ep.tools)
    assert rendered.input_ids == ep.token_ids + renderer.turn_separator_ids
    assert rendered.loss_mask[: len(ep.loss_mask)] == ep.loss_mask
    assert not check_drift(ep, renderer).drifted
    r = score_episode(ep.messages, ep.tools, EXAMPLE, RewardConfig(), n_tokens=ep.n_tokens)
    assert r.valid and r.total == pytest.approx(1.2), r


def test_batched_one_generate_per_round_and_distinct_seeds(renderer):
    scripts = [
        two_call_script(renderer),
        [answer_text("I know it.", "Arthur's Magazine")],
        two_call_script(renderer)[1:],
    ]
    engine = ScriptedEngine(renderer, scripts)
    finished: list[int] = []
    eps = run_episodes(
        engine,
        renderer,
        [setup(), setup(), setup()],
        SamplingParams(seed=7),
        on_finished=lambda i, ep: finished.append(i) if ep.finish else None,
    )
    assert [len(c) for c in engine.calls] == [3, 2, 1]  # an engine with `generate` only runs in rounds
    assert finished == [1, 2, 0]  # told as each ends: one episode in each round
    assert [e.turns for e in eps] == [3, 1, 2] and all(e.finish == "answer" for e in eps)
    seeds = [p.seed for p in engine.calls[0]]
    assert len(set(seeds)) == 3
    assert all(
        p.stop_token_ids == [renderer.end_of_turn_id] and not p.stop_strings for c in engine.calls for p in c
    )
    assert drift_metrics(eps, renderer)["grpo/retokenization_drift"] == 0


def test_garbage_ends_with_parse_error_and_invalid_reward(renderer):
    engine = ScriptedEngine(renderer, [["the answer is probably 42", "never used"]])
    (ep,) = run_episodes(engine, renderer, [setup()], SamplingParams())
    assert ep.finish == "parse_error" and ep.turns == 1 and ep.error.startswith("text_outside_tags")
    assert ep.messages[-1] == {"role": "assistant", "content": "the answer is probably 42"}
    r = score_episode(ep.messages, ep.tools, EXAMPLE, RewardConfig(beta=0.5), n_tokens=ep.n_tokens)
    assert not r.valid and r.total == -0.5
    assert not check_drift(ep, renderer).drifted


def test_undeclared_tool_ends_episode(renderer):
    bad = '<think>search it</think>\n<tool_call>\n{"name": "google", "arguments": {"q": "x"}}\n</tool_call>'
    engine = ScriptedEngine(renderer, [[bad, "unused"]])
    (ep,) = run_episodes(engine, renderer, [setup()], SamplingParams())
    assert ep.finish == "parse_error" and ep.error.startswith("undeclared_tool") and ep.invalid_calls == 1
    assert ep.messages[-1]["tool_calls"][0]["function"]["name"] == "google"
    assert score_episode(ep.messages, ep.tools, EXAMPLE).total == -0.5


def test_invalid_call_can_continue_when_configured(renderer):
    bad = '<think>look</think>\n<tool_call>\n{"name": "lookup", "arguments": {"name": "x"}}\n</tool_call>'
    calls = []
    engine = ScriptedEngine(renderer, [[bad, answer_text("no luck", "x")]])
    s = EpisodeSetup(
        EXAMPLE,
        [LOOKUP],
        lambda n, a: calls.append(a) or {"error": {"type": "bad_arguments", "message": "m"}},
    )
    (ep,) = run_episodes(engine, renderer, [s], SamplingParams(), EnvConfig(end_on_invalid_call=False))
    assert ep.finish == "answer" and ep.invalid_calls == 1 and calls == [{"name": "x"}]
    assert not score_episode(ep.messages, ep.tools, EXAMPLE).valid


def test_turn_limit(renderer):
    turns = [call_text(renderer, f"try {k}", f"Thing {k}") for k in range(5)]
    engine = ScriptedEngine(renderer, [turns])
    (ep,) = run_episodes(engine, renderer, [setup()], SamplingParams(), EnvConfig(max_turns=2))
    assert ep.finish == "max_turns" and ep.turns == 2 and ep.tool_calls == 2
    assert ep.messages[-1]["role"] == "assistant"  # the last turn's calls are not run
    assert renderer.render(ep.messages, ep.tools).input_ids == ep.token_ids + renderer.turn_separator_ids
    assert "too_many_turns" not in score_episode(ep.messages, ep.tools, EXAMPLE).reasons  # no_answer instead
    assert not score_episode(ep.messages, ep.tools, EXAMPLE).valid


def test_repeated_calls_end_the_episode_when_configured(renderer):
    same = call_text(renderer, "again", "Arthur's Magazine")
    other = call_text(renderer, "now the other", "First for Women")
    # A, B, A (a repeat, answered), A (a second repeat: the end).
    script = [same, other, same, same, answer_text("x", "y")]
    answered = []
    s = EpisodeSetup(EXAMPLE, [LOOKUP], lambda n, a: answered.append(a["entity"]) or fake_call(n, a))
    (ep,) = run_episodes(ScriptedEngine(renderer, [script]), renderer, [s], SamplingParams(),
                         EnvConfig(max_turns=6, max_repeats=1))  # fmt: skip
    assert (ep.finish, ep.turns, ep.tool_calls) == ("repeated_call", 4, 4)
    assert answered == ["Arthur's Magazine", "First for Women", "Arthur's Magazine"]
    assert ep.messages[-1]["role"] == "assistant"  # the ending turn's calls are not run
    # Off (the default, as GRPO rolls out): the same script runs on to its answer.
    (ep,) = run_episodes(ScriptedEngine(renderer, [script]), renderer, [setup()], SamplingParams(),
                         EnvConfig(max_turns=6))  # fmt: skip
    assert (ep.finish, ep.turns) == ("answer", 5)
    # Other arguments are another call, whatever the order of the keys.
    (ep,) = run_episodes(ScriptedEngine(renderer, [[same, other, answer_text("x", "y")]]), renderer, [setup()],
                         SamplingParams(), EnvConfig(max_repeats=0))  # fmt: skip
    assert ep.finish == "answer"
    with pytest.raises(ConfigError, match="env.max_repeats"):
        EnvConfig(max_repeats=-1).validate()


def test_token_budget_cuts_the_turn(renderer):
    script = two_call_script(renderer)
    probe = run_episodes(ScriptedEngine(renderer, [list(script)]), renderer, [setup()], SamplingParams())[0]
    budget = probe.turn_spans[1][0] + 5  # room for 5 tokens of the second turn
    engine = ScriptedEngine(renderer, [list(script)])
    (ep,) = run_episodes(engine, renderer, [setup()], SamplingParams(), EnvConfig(max_tokens=budget))
    assert ep.finish == "max_tokens" and ep.turns == 2 and ep.n_tokens == budget
    assert engine.calls[1][0].max_new_tokens == 5 and not ep.turn_closed[-1]
    assert not check_drift(ep, renderer).drifted
    r = score_episode(ep.messages, ep.tools, EXAMPLE, RewardConfig(max_tokens=budget), n_tokens=ep.n_tokens)
    assert not r.valid
    # A budget the observations would exhaust: they are not appended.
    tight = probe.turn_spans[0][1] + 3
    (ep2,) = run_episodes(
        ScriptedEngine(renderer, [list(script)]),
        renderer,
        [setup()],
        SamplingParams(),
        EnvConfig(max_tokens=tight),
    )
    assert ep2.finish == "max_tokens" and ep2.turns == 1 and ep2.n_tokens <= tight


def test_turn_length_limit(renderer):
    engine = ScriptedEngine(renderer, [two_call_script(renderer)])
    (ep,) = run_episodes(engine, renderer, [setup()], SamplingParams(), EnvConfig(max_turn_tokens=4))
    assert ep.finish == "engine_length" and ep.n_generated == 4 and ep.loss_mask.count(1) == 4


def test_non_canonical_tokenization_is_trained_as_sampled(renderer):
    tok = renderer.tokenizer
    text = answer_text("Arthur's Magazine came first.", "Arthur's Magazine")
    canonical = tok.encode(text, add_special_tokens=False)
    # The same text split into single characters: a token sequence the tokenizer never writes.
    odd = [t for ch in text for t in tok.encode(ch, add_special_tokens=False)] + [renderer.end_of_turn_id]
    assert odd[:-1] != canonical and tok.decode(odd[:-1]) == text
    engine = ScriptedEngine(renderer, [[odd]])
    (ep,) = run_episodes(engine, renderer, [setup()], SamplingParams())
    assert ep.finish == "answer" and ep.token_ids[ep.prompt_len :] == odd
    assert [t for t, m in zip(ep.token_ids, ep.loss_mask, strict=True) if m] == odd
    report = check_drift(ep, renderer)
    assert report.drifted and report.kind == "tokenization" and report.turn == 0
    assert drift_metrics([ep], renderer)["grpo/drift_tokenization"] == 1


def test_format_drift_keeps_sampled_ids_and_canonical_messages(renderer):
    compact = '<think>look it up</think>\n<tool_call>{"name":"lookup","arguments":{"entity":"First for Women"}}</tool_call>'
    engine = ScriptedEngine(renderer, [[compact, answer_text("1989 vs 1844", "Arthur's Magazine")]])
    (ep,) = run_episodes(engine, renderer, [setup()], SamplingParams())
    assert ep.finish == "answer"
    assert ep.token_ids[ep.turn_spans[0][0] : ep.turn_spans[0][1]] == engine.sampled[0][0]
    assert json.loads(ep.messages[2]["tool_calls"][0]["function"]["arguments"]) == {
        "entity": "First for Women"
    }
    assert check_drift(ep, renderer).kind == "format"
    assert score_episode(ep.messages, ep.tools, EXAMPLE, n_tokens=ep.n_tokens).valid


def test_sampled_special_token_is_a_parse_error(renderer):
    text_ids = renderer.tokenizer.encode("<think>a</think><answer>b</answer>", add_special_tokens=False)
    ids = text_ids[:3] + [renderer.im_start_id] + text_ids[3:] + [renderer.end_of_turn_id]
    (ep,) = run_episodes(ScriptedEngine(renderer, [[ids]]), renderer, [setup()], SamplingParams())
    assert ep.finish == "parse_error" and ep.error.startswith("special_token")
    assert check_drift(ep, renderer).kind == "unrenderable"


def test_rejects_stop_strings(renderer):
    with pytest.raises(ConfigError):
        run_episodes(
            ScriptedEngine(renderer, [[]]), renderer, [setup()], SamplingParams(stop_strings=["</answer>"])
        )


def test_real_toolactor_groups(renderer):
    from mtr_hpc.data import load_sample
    from mtr_hpc.synth import ToolActor, ToolMaker

    ex = load_sample("hotpotqa")[0]
    setups = open_groups(ActorSimulator(ToolMaker(), ToolActor()), [ex], group_size=2, seed=0)
    search = '<think>Find both.</think>\n<tool_call>\n{"name": "search", "arguments": {"query": "Scott Derrickson nationality"}}\n</tool_call>'
    scripts = [[search, answer_text("Both American.", "yes")], [search, "garbage"]]
    eps = run_episodes(ScriptedEngine(renderer, scripts), renderer, setups, SamplingParams(seed=1))
    assert [e.finish for e in eps] == ["answer", "parse_error"]
    assert eps[0].messages[3]["content"] == eps[1].messages[3]["content"]  # same env within a group
    assert "results" in json.loads(eps[0].messages[3]["content"])
    r = score_episode(eps[0].messages, eps[0].tools, ex, n_tokens=eps[0].n_tokens)
    assert r.valid and r.correct == 1.0 and r.reasons == []  # real tools' schemas and observations pass
    assert drift_metrics(eps, renderer)["grpo/retokenization_drift"] == 0


def test_hf_engine_logprobs_match_the_trainer(renderer):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from mtr_hpc.models.tiny import tiny_hf_config
    from mtr_hpc.rollout.hf_engine import HFRolloutEngine
    from mtr_hpc.train.grpo_loss import token_logprobs

    torch.manual_seed(0)
    cfg = {**tiny_hf_config(vocab_size=len(renderer.tokenizer)), "max_position_embeddings": 4096}
    model = (
        transformers.AutoModelForCausalLM.from_config(transformers.AutoConfig.for_model(**cfg)).float().eval()
    )
    engine = HFRolloutEngine(model, tokenizer=renderer.tokenizer, eos_token_ids=[])
    setups = [setup(), setup()]
    eps = run_episodes(engine, renderer, setups, SamplingParams(seed=5), EnvConfig(max_turn_tokens=12))
    for ep in eps:
        assert ep.finish in ("parse_error", "engine_length") and ep.turns == 1
        assert ep.loss_mask.count(1) == ep.n_generated > 0
        logits = engine.logits(ep.token_ids)
        lp = token_logprobs(logits[:-1], torch.tensor(ep.token_ids[1:]))
        idx = [i for i, m in enumerate(ep.loss_mask) if m]
        got = torch.tensor([ep.engine_logprobs[i] for i in idx])
        torch.testing.assert_close(lp[[i - 1 for i in idx]], got, atol=1e-4, rtol=1e-4)
    assert eps[0].token_ids != eps[1].token_ids  # distinct per-episode seeds
