"""Rollout engines: the transformers engine's decode loop, sampling, stops and weight sync; vLLM's seam.

Most tests run a tiny random Llama that shares SmolLM2's vocabulary (so stop strings decode to real
text); two run the real SmolLM2-135M-Instruct weights with a ChatML prompt.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from _fake_vllm import install_fake_vllm

from mtr_hpc.errors import ConfigError, MissingDependencyError, MtrError
from mtr_hpc.models.registry import load_tokenizer
from mtr_hpc.models.tiny import tiny_hf_model
from mtr_hpc.rollout import Generation, HFRolloutEngine, RolloutEngine, SamplingParams
from mtr_hpc.rollout.sampling import truncate_logits

VOCAB = 49152  # SmolLM2's


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("smollm2-135m")


@pytest.fixture(scope="module")
def tiny(tokenizer):
    model = tiny_hf_model(seed=0, model_type="llama", vocab_size=VOCAB, hidden_size=32, intermediate_size=64)
    return HFRolloutEngine(model, tokenizer=tokenizer, batch_size=4)


@pytest.fixture(scope="module")
def smol():
    return HFRolloutEngine("smollm2-135m", batch_size=4)


def _prompts(seed: int = 1, lengths=(5, 11, 8)) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(100, VOCAB, (n,), generator=g).tolist() for n in lengths]


def _chatml(tok, question: str) -> list[int]:
    ids = tok.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True)
    return list(ids["input_ids"] if hasattr(ids, "keys") else ids)


def _reference_logprobs(engine, prompt: list[int], gen: Generation, temperature: float) -> torch.Tensor:
    logits = engine.logits(prompt + gen.token_ids)[len(prompt) - 1 : -1]
    scaled = logits / (temperature if temperature > 0 else 1.0)
    return scaled.log_softmax(-1).gather(-1, torch.tensor(gen.token_ids).unsqueeze(-1)).squeeze(-1)


def _hf_greedy(model, prompts: list[list[int]], max_new: int, pad_id: int) -> list[list[int]]:
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[pad_id] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    with torch.no_grad():
        out = model.generate(
            input_ids=ids, attention_mask=mask, max_new_tokens=max_new, do_sample=False, pad_token_id=pad_id
        )
    return out[:, width:].tolist()


# -- real SmolLM2 -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_smollm2_greedy_matches_hf_generate_and_logprobs_match_a_full_forward(smol):
    tok = smol.tokenizer
    questions = ["Hi", "What is 2+2?", "Name the capital of France and say why in one sentence."]
    prompts = [_chatml(tok, q) for q in questions]
    assert len({len(p) for p in prompts}) == 3
    outs = smol.generate(prompts, SamplingParams(max_new_tokens=24, temperature=0))
    refs = _hf_greedy(smol.model, prompts, 24, tok.pad_token_id)
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    for prompt, out, ref in zip(prompts, outs, refs, strict=True):
        assert out.token_ids == ref[: len(out.token_ids)]
        if out.finish_reason == "stop":  # the model's end-of-turn is a stop token by default
            assert out.stop == im_end and out.token_ids[-1] == im_end
        else:
            assert len(out.token_ids) == 24
        diff = (_reference_logprobs(smol, prompt, out, 0.0) - torch.tensor(out.logprobs)).abs().max()
        assert diff < 1e-4
    assert any(o.finish_reason == "stop" for o in outs)


def test_smollm2_stops_right_after_a_stop_string(smol):
    tok = smol.tokenizer
    prompt = _chatml(tok, "What is the capital of France?")
    free = smol.generate([prompt], SamplingParams(max_new_tokens=24, temperature=0))[0]
    text = tok.decode(free.token_ids)
    word = "Paris" if "Paris" in text else text.split()[2]
    out = smol.generate([prompt], SamplingParams(max_new_tokens=24, temperature=0, stop_strings=[word]))[0]
    assert (out.finish_reason, out.stop) == ("stop", word)
    assert word in tok.decode(out.token_ids) and word not in tok.decode(out.token_ids[:-1])
    assert out.token_ids == free.token_ids[: len(out.token_ids)]


# -- tiny model: decode loop ------------------------------------------------------------------------


def test_engine_satisfies_the_protocol(tiny):
    assert isinstance(tiny, RolloutEngine)
    assert tiny.vocab_size == VOCAB


def test_greedy_batch_with_left_padding_matches_hf_generate(tiny):
    prompts = _prompts(lengths=(3, 17, 9, 1, 12))  # two batches of at most 4
    outs = tiny.generate(prompts, SamplingParams(max_new_tokens=12, temperature=0))
    assert [o.token_ids for o in outs] == _hf_greedy(tiny.model, prompts, 12, 0)
    assert all(o.finish_reason == "length" and o.stop is None and len(o.logprobs) == 12 for o in outs)


def test_rows_finishing_early_leave_the_other_rows_unchanged(tiny):
    prompts = _prompts()
    alone = [tiny.generate([p], SamplingParams(max_new_tokens=10, temperature=0))[0] for p in prompts]
    # Row 0 stops at its 3rd token, row 1 at its 6th; row 2 runs on with a smaller batch and cache.
    params = [
        SamplingParams(max_new_tokens=10, temperature=0, stop_token_ids=[alone[0].token_ids[2]]),
        SamplingParams(max_new_tokens=10, temperature=0, stop_token_ids=[alone[1].token_ids[5]]),
        SamplingParams(max_new_tokens=10, temperature=0),
    ]
    outs = tiny.generate(prompts, params)
    for out, ref, p in zip(outs, alone, params, strict=True):
        if p.stop_token_ids:
            cut = ref.token_ids.index(p.stop_token_ids[0]) + 1
            assert (out.finish_reason, out.stop) == ("stop", p.stop_token_ids[0])
        else:
            cut = 10
            assert out.finish_reason == "length"
        assert out.token_ids == ref.token_ids[:cut]
        assert torch.allclose(torch.tensor(out.logprobs), torch.tensor(ref.logprobs[:cut]), atol=1e-5)


def test_sampled_logprobs_are_tempered_log_softmax_of_a_full_forward(tiny):
    prompts = _prompts(seed=2)
    params = [SamplingParams(max_new_tokens=8, temperature=t, seed=i) for i, t in enumerate((0.7, 1.0, 1.5))]
    for prompt, out, p in zip(prompts, tiny.generate(prompts, params), params, strict=True):
        ref = _reference_logprobs(tiny, prompt, out, p.temperature)
        assert (ref - torch.tensor(out.logprobs)).abs().max() < 1e-4


def test_logprobs_are_taken_before_top_k_truncation(tiny):
    prompt = _prompts(seed=3)[:1]
    out = tiny.generate(prompt, SamplingParams(max_new_tokens=6, temperature=0.8, top_k=5, seed=1))[0]
    ref = _reference_logprobs(tiny, prompt[0], out, 0.8)
    assert (ref - torch.tensor(out.logprobs)).abs().max() < 1e-4


def test_seeds_reproduce_and_differ_independently_of_the_batch(tiny):
    prompts = _prompts(seed=4)
    p = SamplingParams(max_new_tokens=10, temperature=1.0, seed=123)
    first = tiny.generate(prompts, p)
    again = tiny.generate(prompts, p)
    assert [o.token_ids for o in first] == [o.token_ids for o in again]
    alone = tiny.generate(prompts[1:2], p)[0]
    assert alone.token_ids == first[1].token_ids
    other = tiny.generate(prompts, SamplingParams(max_new_tokens=10, temperature=1.0, seed=124))
    assert [o.token_ids for o in other] != [o.token_ids for o in first]


def test_top_k_one_and_tiny_top_p_are_greedy(tiny):
    prompts = _prompts(seed=5)
    greedy = [o.token_ids for o in tiny.generate(prompts, SamplingParams(max_new_tokens=6, temperature=0))]
    for p in (
        SamplingParams(max_new_tokens=6, top_k=1, seed=3),
        SamplingParams(max_new_tokens=6, top_p=1e-6),
    ):
        assert [o.token_ids for o in tiny.generate(prompts, p)] == greedy


def test_truncate_logits_keeps_top_k_and_the_nucleus():
    logits = torch.log(torch.tensor([[0.1, 0.5, 0.15, 0.25], [0.1, 0.5, 0.15, 0.25]]))
    out = truncate_logits(logits, torch.tensor([2, 0]), torch.tensor([1.0, 0.7]))
    assert torch.isfinite(out).tolist() == [[False, True, False, True], [False, True, False, True]]
    out = truncate_logits(logits, torch.tensor([0, 0]), torch.tensor([0.8, 1.0]))
    assert torch.isfinite(out).tolist() == [[False, True, True, True], [True] * 4]


def test_stop_string_ends_generation_right_after_it(tiny, tokenizer):
    prompt = _prompts(seed=6)[:1]
    free = tiny.generate(prompt, SamplingParams(max_new_tokens=16, temperature=0))[0].token_ids
    text = tokenizer.decode(free)
    start = len(tokenizer.decode(free[:6]))
    stop = next(text[i : i + 3] for i in range(start, len(text) - 3) if text[i : i + 3].isprintable())
    expected = next(n for n in range(1, len(free) + 1) if stop in tokenizer.decode(free[:n]))
    out = tiny.generate(
        prompt, SamplingParams(max_new_tokens=16, temperature=0, stop_strings=["@@@@", stop])
    )[0]
    assert (out.finish_reason, out.stop) == ("stop", stop)
    assert out.token_ids == free[:expected]


def test_max_new_tokens_gives_length(tiny):
    out = tiny.generate(_prompts()[:1], SamplingParams(max_new_tokens=3, temperature=0.9, seed=0))[0]
    assert (out.finish_reason, out.stop, len(out.token_ids), len(out.logprobs)) == ("length", None, 3, 3)


def test_bad_requests_raise_typed_errors(tiny):
    with pytest.raises(ConfigError, match="temperature"):
        tiny.generate(_prompts()[:1], SamplingParams(temperature=-1))
    with pytest.raises(ConfigError, match="top_p"):
        tiny.generate(_prompts()[:1], SamplingParams(top_p=0))
    with pytest.raises(MtrError, match="prompt 1 is empty"):
        tiny.generate([[5], []], SamplingParams())
    with pytest.raises(MtrError, match="outside the vocabulary"):
        tiny.generate([[5, VOCAB]], SamplingParams())
    with pytest.raises(MtrError, match="2 SamplingParams for 1 prompts"):
        tiny.generate([[5]], [SamplingParams(), SamplingParams()])
    with pytest.raises(ConfigError, match="json_schema"):
        tiny.generate([[5]], SamplingParams(json_schema="object"))
    bare = HFRolloutEngine(tiny.model)
    with pytest.raises(MtrError, match="tokenizer"):
        bare.generate([[5]], SamplingParams(stop_strings=["x"]))


def test_json_schema_constrains_decoding_to_instances(tiny):
    """Even a random model writes only instances of the schema when its decoding is constrained."""
    import json

    import jsonschema

    schema = {
        "type": "object",
        "properties": {
            "ok": {"type": "boolean"},
            "kind": {"enum": ["a", "bb"]},
            "tags": {"type": "array", "items": {"enum": ["x", "y"]}, "maxItems": 3},
        },
        "required": ["ok", "kind", "tags"],
        "additionalProperties": False,
    }
    params = [SamplingParams(max_new_tokens=96, seed=s, json_schema=schema) for s in range(6)]
    gens = tiny.generate([[5, 6], [7], [8, 9, 10], [11], [12], [13]], params)
    for g in gens:
        assert g.finish_reason == "stop"
        jsonschema.validate(json.loads(tiny.tokenizer.decode(g.token_ids, skip_special_tokens=True)), schema)
    free = tiny.generate([[5, 6]], SamplingParams(max_new_tokens=16, seed=0))[0]
    assert free.token_ids != gens[0].token_ids  # unconstrained, the same seed writes something else


def test_a_tools_result_schema_is_decoded_as_its_result_form():
    from mtr_hpc.rollout.json_constraint import decoding_schema

    returns = {
        "type": "object",
        "properties": {
            "found": {"type": "boolean"},
            "value": {"type": "string"},
            "error": {"type": "object"},
        },
        "anyOf": [{"required": ["found", "value"]}, {"required": ["error"]}],
        "additionalProperties": False,
    }
    got = decoding_schema(returns)
    assert got["required"] == ["found", "value"] and set(got["properties"]) == {"found", "value"}
    assert "anyOf" not in got and got["properties"]["value"] == {"type": "string", "maxLength": 200}
    # Unbounded strings and arrays get bounds, so an answer ends within its budget; given ones stay.
    listed = decoding_schema({"type": "array", "items": {"type": "string", "maxLength": 9}})
    assert listed == {"type": "array", "items": {"type": "string", "maxLength": 9}, "maxItems": 3}


# -- weight sync ------------------------------------------------------------------------------------


def _fresh_tiny(tied: bool = True):
    return tiny_hf_model(seed=7, model_type="llama", vocab_size=300, tied=tied)


@pytest.mark.parametrize("tied", [True, False])
def test_update_weights_matches_a_model_loaded_with_the_tensors(tied):
    engine = HFRolloutEngine(_fresh_tiny(tied))
    g = torch.Generator().manual_seed(0)
    new = {k: v + 0.05 * torch.randn(v.shape, generator=g) for k, v in _fresh_tiny(tied).state_dict().items()}
    if tied:  # the trainer may send the tied head under its own name
        new["lm_head.weight"] = new["model.embed_tokens.weight"]
    ids = [3, 17, 250, 9, 42]
    before = engine.logits(ids)
    stats = engine.update_weights((k, v.to(torch.bfloat16)) for k, v in new.items())
    reference = _fresh_tiny(tied)
    reference.load_state_dict({k: v.to(torch.bfloat16).float() for k, v in new.items()}, strict=False)
    with torch.no_grad():
        expected = reference(torch.tensor([ids])).logits[0]
    after = engine.logits(ids)
    assert (after - expected).abs().max() < 1e-5
    assert (after - before).abs().max() > 1e-2
    assert stats["tensors"] == len(new)
    assert stats["bytes"] == sum(v.numel() * 2 for v in new.values())
    assert stats["seconds"] >= 0


def test_update_weights_rejects_unknown_names_and_wrong_shapes():
    engine = HFRolloutEngine(_fresh_tiny())
    with pytest.raises(MtrError, match="unknown parameter name 'model.layers.9.mlp.up_proj.weight'"):
        engine.update_weights([("model.layers.9.mlp.up_proj.weight", torch.zeros(2))])
    with pytest.raises(MtrError, match=r"shape \(64, 63\).*expects \(64, 64\)"):
        engine.update_weights([("model.layers.0.self_attn.q_proj.weight", torch.zeros(64, 63))])


def test_sleep_keeps_generation_working_on_cpu(tiny):
    prompts = _prompts()[:1]
    before = tiny.generate(prompts, SamplingParams(max_new_tokens=4, temperature=0))
    tiny.sleep()
    assert tiny.asleep
    assert tiny.generate(prompts, SamplingParams(max_new_tokens=4, temperature=0)) == before
    assert not tiny.asleep


# -- vLLM seam --------------------------------------------------------------------------------------


def test_vllm_engine_without_vllm_raises_missing_dependency(monkeypatch):
    from mtr_hpc.rollout import VLLMRolloutEngine

    monkeypatch.setitem(sys.modules, "vllm", None)  # makes `import vllm` fail as if not installed
    with pytest.raises(MissingDependencyError, match="'vllm'.*pip install vllm"):
        VLLMRolloutEngine("smollm2-135m")


def test_importing_the_rollout_package_imports_neither_vllm_nor_torch(repo_root):
    code = (
        "import sys, mtr_hpc.rollout as r; r.SamplingParams(); "
        "print(sorted(m for m in ('vllm', 'torch') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=repo_root, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


# -- memory lifecycle (the engine's, not its callers') -------------------------------------------------


class RecordingEngine:
    """A `ManagedEngine` whose hooks only record their calls (the order is the contract)."""

    @staticmethod
    def build(discards: bool):
        from mtr_hpc.rollout.lifecycle import ManagedEngine

        class Recorder(ManagedEngine):
            vocab_size = 10
            sleep_discards_weights = discards

            def __init__(self):
                super().__init__()
                self.calls = []

            def _wake_weights(self):
                self.calls.append("wake_weights")

            def _load_weights(self, named):
                self.calls.append(f"load:{len(list(named))}")
                return {}

            def _wake_cache(self):
                self.calls.append("wake_cache")

            def _generate(self, prompts, params):
                self.calls.append("generate")
                return [Generation([1], [0.0], "length") for _ in prompts]

            def _sleep(self):
                self.calls.append("sleep")

        return Recorder()


def _spy_hooks(engine):
    """Record the hook calls of a real engine while they still run."""
    calls = []
    for hook in ("_wake_weights", "_load_weights", "_wake_cache", "_generate", "_sleep"):
        original = getattr(engine, hook)

        def spy(*args, _name=hook, _original=original):
            calls.append(_name.lstrip("_"))
            return _original(*args)

        setattr(engine, hook, spy)
    return calls


def _step(engine, weights):
    """One GRPO step as the driver makes it: push, roll out (several turns), give the memory back."""
    engine.update_weights(weights)
    engine.generate([[1, 2]], SamplingParams(max_new_tokens=1, temperature=0))
    engine.generate([[1, 2, 3]], SamplingParams(max_new_tokens=1, temperature=0))
    engine.sleep()


@pytest.mark.parametrize("discards", [False, True])
def test_engine_orders_wake_load_wake_cache_generate_sleep(discards):
    engine = RecordingEngine.build(discards)
    engine.sleep()
    _step(engine, [("w", torch.zeros(1))])
    assert engine.calls == [
        "sleep", "wake_weights", "load:1", "wake_cache", "generate", "generate", "sleep"
    ]  # fmt: skip
    engine.calls.clear()
    engine.sleep()  # already asleep: nothing to do
    assert engine.calls == []


def test_engine_that_discarded_its_weights_refuses_to_generate_until_a_push():
    keeps, discards = RecordingEngine.build(False), RecordingEngine.build(True)
    for engine in (keeps, discards):
        engine.sleep()
    keeps.generate([[1]], SamplingParams(max_new_tokens=1))
    assert keeps.calls == ["sleep", "wake_weights", "wake_cache", "generate"]
    with pytest.raises(MtrError, match="discarded.*update_weights"):
        discards.generate([[1]], SamplingParams(max_new_tokens=1))
    discards.update_weights([])
    discards.generate([[1]], SamplingParams(max_new_tokens=1))
    assert discards.calls[-3:] == ["load:0", "wake_cache", "generate"]


def test_transformers_engine_follows_the_same_lifecycle():
    engine = HFRolloutEngine(_fresh_tiny())
    calls = _spy_hooks(engine)
    state = {k: v.clone() for k, v in _fresh_tiny().state_dict().items()}
    engine.sleep()
    _step(engine, state.items())
    assert calls == ["sleep", "wake_weights", "load_weights", "wake_cache", "generate", "generate", "sleep"]
    assert isinstance(engine, RolloutEngine)


@pytest.mark.parametrize("in_place", [False, True])
@pytest.mark.parametrize("level", [1, 2])
def test_vllm_engine_wakes_weights_before_loading_and_the_cache_before_generating(
    monkeypatch, level, in_place
):
    from mtr_hpc.rollout import VLLMRolloutEngine

    log: list = []
    install_fake_vllm(monkeypatch, log, reload_in_place=in_place)
    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "1")
    # Outside a torch.distributed world (another test of this process may have started one).
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: False)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: log.append(("empty_cache",)))
    engine = VLLMRolloutEngine("smollm2-135m", sleep_level=level, bucket_bytes=16)
    assert log[0][1]["logprobs_mode"] == "processed_logprobs"
    assert "distributed_executor_backend" not in log[0][1]  # no torch.distributed world here
    assert sys.modules["os"].environ["VLLM_ENABLE_V1_MULTIPROCESSING"] == "0"
    log.clear()
    engine.sleep()
    assert engine.reloads_in_place == in_place
    _step(engine, [("l0.a", torch.zeros(2)), ("l1.b", torch.zeros(2)), ("l2.c", torch.zeros(1))])
    # vLLM >= 0.16 streams the whole push through one in-place reload; older releases load buckets
    # (here of 16 bytes) of whole layers.
    loads = (
        [("reload_weights", ["l0.a", "l1.b", "l2.c"])]
        if in_place
        else [("load_weights", ["l0.a", "l1.b"]), ("load_weights", ["l2.c"])]
    )
    # Every wake first hands PyTorch's cached blocks back, so vLLM can map its memory.
    assert [entry for entry in log if entry[0] != "requests"] == [
        ("sleep", level),
        ("empty_cache",),
        ("wake_up", ("weights",)),
        *loads,
        ("reset_prefix_cache",),
        ("empty_cache",),
        ("wake_up", ("kv_cache",)),
        ("generate", 1),
        ("generate", 1),
        ("sleep", level),
    ]
    assert engine._llm.sleeping_tags == {"weights", "kv_cache"}
    if level == 2:
        with pytest.raises(MtrError, match="discarded"):
            engine.generate([[1]], SamplingParams(max_new_tokens=1))


def test_a_vllm_engine_pushed_to_but_not_generating_still_sleeps(monkeypatch):
    """A replica that only receives weights in a step (no prompts of its own) must give its memory
    back: vLLM's executor ignores `sleep` while a tag is still asleep, so the KV cache wakes first."""
    from mtr_hpc.rollout import VLLMRolloutEngine

    log: list = []
    install_fake_vllm(monkeypatch, log)
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: False)
    engine = VLLMRolloutEngine("smollm2-135m", sleep_level=2, bucket_bytes=1 << 20)
    engine.sleep()
    for _ in range(2):  # two steps without a prompt: push, then sleep for the trainer's update
        engine.update_weights([(name, torch.zeros(2)) for name in ("l0.a", "l1.b", "l2.c")])
        engine.sleep()
        assert engine._llm.sleeping_tags == {"weights", "kv_cache"}, log
        assert engine.asleep
    assert not any(entry[0].endswith("ignored") for entry in log), log


@pytest.mark.slow
def test_vllm_engine_joins_the_torch_world_through_the_external_launcher(monkeypatch):
    from _dist import run_distributed

    got = run_distributed(_build_fake_vllm_in_world, 2, timeout=120)
    assert [g["backend"] for g in got] == ["external_launcher", "external_launcher"]
    assert [g["rank"] for g in got] == ["0", "1"] and {g["world"] for g in got} == {"2"}


def _build_fake_vllm_in_world(rank, world):
    import os

    from mtr_hpc.rollout import VLLMRolloutEngine

    log: list = []
    mp = pytest.MonkeyPatch()
    install_fake_vllm(mp, log)
    try:
        VLLMRolloutEngine("smollm2-135m")
    finally:
        mp.undo()
    return {
        "backend": log[0][1].get("distributed_executor_backend"),
        "rank": os.environ["RANK"],
        "world": os.environ["WORLD_SIZE"],
    }


# -- prefix cache: a turn reuses the KV of the episode's previous turns ---------------------------------


def _turns(engine, params_of, n_turns: int = 3, seed: int = 5):
    """Three episodes of `n_turns` turns; fixed 'observation' ids are appended after every turn."""
    g = torch.Generator().manual_seed(seed)
    contexts = _prompts(seed, lengths=(7, 13, 9))
    gens_all = []
    for turn in range(n_turns):
        gens = engine.generate(contexts, [params_of(i, turn) for i in range(len(contexts))])
        gens_all.append(gens)
        obs = [torch.randint(100, VOCAB, (int(torch.randint(2, 6, (1,), generator=g)),), generator=g).tolist()
               for _ in contexts]  # fmt: skip
        contexts = [c + x.token_ids + o for c, x, o in zip(contexts, gens, obs, strict=True)]
    return gens_all


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_prefix_cache_turns_equal_re_prefilled_turns(tiny, temperature):
    cached = HFRolloutEngine(tiny.model, tokenizer=tiny.tokenizer, batch_size=4)
    bare = HFRolloutEngine(tiny.model, tokenizer=tiny.tokenizer, batch_size=4, prefix_cache_gb=0)

    def params(i, turn):
        return SamplingParams(max_new_tokens=5 + i, temperature=temperature, seed=100 * turn + i)

    got, expected = _turns(cached, params), _turns(bare, params)
    for turn_got, turn_expected in zip(got, expected, strict=True):
        for a, b in zip(turn_got, turn_expected, strict=True):
            assert a.token_ids == b.token_ids
            assert a.logprobs == pytest.approx(b.logprobs, abs=1e-5)
    assert cached._prefix.hits >= 6 and bare._prefix is None  # turns 2 and 3 of all three episodes
    # The same prompts; the cache turned most of their prefill into reuse.
    total = sum(bare.prefill_stats.values())
    assert sum(cached.prefill_stats.values()) == total and bare.prefill_stats["reused"] == 0
    assert cached.prefill_stats["reused"] > cached.prefill_stats["computed"]


def test_rows_with_one_prompt_are_prefilled_once_and_sample_on_their_own(tiny):
    prompt = _prompts(3)[0]
    engine = HFRolloutEngine(tiny.model, tokenizer=tiny.tokenizer, batch_size=8)
    together = engine.generate([prompt] * 4, [SamplingParams(max_new_tokens=6, seed=s) for s in range(4)])
    alone = [
        HFRolloutEngine(tiny.model, tokenizer=tiny.tokenizer, prefix_cache_gb=0).generate(
            [prompt], SamplingParams(max_new_tokens=6, seed=s)
        )[0]
        for s in range(4)
    ]
    assert [g.token_ids for g in together] == [g.token_ids for g in alone]
    assert len({tuple(g.token_ids) for g in together}) > 1  # distinct seeds, distinct samples


def test_a_weight_update_drops_cached_kv():
    engine = HFRolloutEngine(_fresh_tiny())
    prompt = [3, 17, 250, 9]
    first = engine.generate([prompt], SamplingParams(max_new_tokens=3, temperature=0))[0]
    assert len(engine._prefix) == 1
    new = {k: v + 0.3 for k, v in _fresh_tiny().state_dict().items()}
    engine.update_weights(new.items())
    assert len(engine._prefix) == 0
    follow = prompt + first.token_ids + [5]
    fresh = HFRolloutEngine(_fresh_tiny(), prefix_cache_gb=0)
    fresh.update_weights(new.items())
    assert engine.generate([follow], SamplingParams(max_new_tokens=3, temperature=0)) == fresh.generate(
        [follow], SamplingParams(max_new_tokens=3, temperature=0)
    )


def test_prefix_cache_longest_prefix_and_lru_budget():
    from mtr_hpc.rollout.kv_cache import PrefixCache

    def kv(n):
        return [(torch.zeros(1, n, 2), torch.zeros(1, n, 2))]  # 2 * n * 2 floats = 16n bytes

    cache = PrefixCache(max_bytes=16 * 10)
    cache.store((1, 2), kv(2))
    cache.store((1, 2, 3, 4), kv(4))
    key, entry = cache.lookup([1, 2, 3, 4, 5])
    assert key == (1, 2, 3, 4) and entry.length == 4
    assert cache.lookup([1, 2, 9])[0] == (1, 2)
    assert cache.lookup([7])[0] is None
    cache.store((5, 6, 7, 8), kv(4))  # 2 + 4 + 4 tokens = 160 bytes: still within
    cache.store((9,), kv(1))  # over budget: the least recently used entry goes
    assert cache.bytes <= cache.max_bytes
    assert cache.lookup([1, 2, 3, 4, 0])[0] == (1, 2)  # (1, 2, 3, 4) went; (1, 2) was used after it


# -- continuous batching: a request's next turn joins the batch while others still decode -------------


class _Rounds:
    """The engine seen through `generate` only: `generate_continuous` drives it in rounds."""

    def __init__(self, engine):
        self.generate = engine.generate


def _multi_turn(engine, temperature: float, n: int = 6, turns: int = 3):
    """`n` requests of `turns` turns each, turn lengths differing by request and turn, fixed
    'observations' appended after each turn; returns every (request, turn) generation."""
    from mtr_hpc.rollout.protocol import generate_continuous

    contexts = _prompts(11, lengths=tuple(4 + 3 * i for i in range(n)))
    turn = [0] * n
    seen = {}

    def params(i):
        return SamplingParams(max_new_tokens=2 + (5 * i + 3 * turn[i]) % 7, temperature=temperature,
                              seed=10 * i + turn[i])  # fmt: skip

    def follow_up(i, gen):
        seen[(i, turn[i])] = gen
        contexts[i] = contexts[i] + gen.token_ids + [100 + i, 200 + turn[i]]
        turn[i] += 1
        return (contexts[i], params(i)) if turn[i] < turns else None

    generate_continuous(engine, [list(c) for c in contexts], [params(i) for i in range(n)], follow_up)
    return seen


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_continuous_batching_equals_turn_rounds(tiny, temperature):
    # batch_size 4 < 6 requests: requests wait for slots, rows leave mid-batch and others move into
    # their slots, follow-ups join while the rest decode.
    engine = HFRolloutEngine(tiny.model, tokenizer=tiny.tokenizer, batch_size=4)
    got = _multi_turn(engine, temperature)
    expected = _multi_turn(
        _Rounds(HFRolloutEngine(tiny.model, tokenizer=tiny.tokenizer, batch_size=8)), temperature
    )
    assert sorted(got) == sorted(expected) and len(got) == 18
    for key, gen in expected.items():
        assert got[key].token_ids == gen.token_ids, key
        assert got[key].logprobs == pytest.approx(gen.logprobs, abs=1e-5)
    assert engine._prefix.hits >= 12  # every later turn prefilled on top of the turn before
    assert len(engine._prefix) == 0  # ended requests leave nothing behind, extended ones were consumed


def test_continuous_batching_rejects_a_bad_follow_up(tiny):
    def follow_up(i, gen):
        return [VOCAB + 5], SamplingParams(max_new_tokens=2)

    with pytest.raises(MtrError, match="outside the vocabulary"):
        tiny.generate_continuous(_prompts(2), SamplingParams(max_new_tokens=2), follow_up)
