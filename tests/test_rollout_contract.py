"""The `RolloutEngine` contract, run against every engine that runs here: transformers and vLLM (CPU).

Both engines hold the same tiny Llama (SmolLM2's tokenizer and vocabulary, tied embeddings, fp32), and
a transformers copy of it plays the trainer: its teacher-forced logprobs are the reference for what the
engine returns, before and after weight pushes. One engine of each kind is built per module (a vLLM
engine takes 10-40 s to build on 2 cores).
"""

from __future__ import annotations

import pytest
import torch

from mtr_hpc.errors import MtrError, RunFailure
from mtr_hpc.models.registry import load_tokenizer
from mtr_hpc.models.tiny import tiny_hf_model
from mtr_hpc.rollout import HFRolloutEngine, RolloutEngine, SamplingParams
from mtr_hpc.rollout.protocol import generate_continuous

VOCAB = 49152  # SmolLM2's
SHAPE = dict(
    model_type="llama", vocab_size=VOCAB, hidden_size=128, num_heads=2, num_kv_heads=1, intermediate_size=256
)
TOL = 1e-4  # fp32 logprobs, engine against trainer


def _save(path, tied: bool):
    model = tiny_hf_model(seed=3, tied=tied, **SHAPE)
    model.save_pretrained(path, safe_serialization=True)
    load_tokenizer("smollm2-135m").save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return _save(tmp_path_factory.mktemp("tiny-llama"), tied=True)


def _build(kind: str, path):
    if kind == "hf":
        return HFRolloutEngine(_load(path), tokenizer=load_tokenizer(path), batch_size=4)
    pytest.importorskip("vllm", reason="vLLM is installed by `tools/setup.sh --test`")
    from mtr_hpc.rollout import VLLMRolloutEngine

    return VLLMRolloutEngine(str(path), dtype="fp32", max_model_len=256, cpu_kv_cache_gib=1, seed=0)


@pytest.fixture(scope="module", params=["hf", "vllm"])
def engine(request, model_dir):
    eng = _build(request.param, model_dir)
    yield eng
    getattr(eng, "close", lambda: None)()


def _load(path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()


@pytest.fixture
def trainer(model_dir):
    """The trainer's copy of the weights, fresh for each test."""
    return _load(model_dir)


@pytest.fixture
def restore(engine, model_dir):
    """Push the saved weights back after a test that changed them."""
    yield
    engine.update_weights(list(_load(model_dir).named_parameters()))


def _prompts(seed: int = 1, lengths=(5, 11, 8)) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(100, VOCAB, (n,), generator=g).tolist() for n in lengths]


def _reference(model, prompt: list[int], ids: list[int], temperature: float = 0.0) -> torch.Tensor:
    with torch.no_grad():
        logits = model(torch.tensor([prompt + ids])).logits[0, len(prompt) - 1 : -1]
    scaled = logits / (temperature if temperature > 0 else 1.0)
    return scaled.log_softmax(-1).gather(-1, torch.tensor(ids).unsqueeze(-1)).squeeze(-1)


def _gap(engine, model, temperature: float = 0.0, seed: int | None = None) -> float:
    """The largest |engine logprob - trainer logprob| over a few prompts' sampled tokens."""
    prompts = _prompts()
    params = SamplingParams(max_new_tokens=10, temperature=temperature, seed=seed)
    gens = engine.generate(prompts, params)
    return max(
        (_reference(model, p, g.token_ids, temperature) - torch.tensor(g.logprobs)).abs().max().item()
        for p, g in zip(prompts, gens, strict=True)
    )


def test_is_a_rollout_engine_over_the_whole_vocabulary(engine):
    assert isinstance(engine, RolloutEngine)
    assert engine.vocab_size >= VOCAB


@pytest.mark.parametrize("temperature", [0.0, 0.7])
def test_logprobs_are_the_trainers_tempered_log_softmax(engine, trainer, temperature):
    assert _gap(engine, trainer, temperature, seed=11) < TOL


def test_length_and_stop_strings_end_generation_as_declared(engine):
    tok = load_tokenizer("smollm2-135m")
    prompt = _prompts(lengths=(9,))
    free = engine.generate(prompt, SamplingParams(max_new_tokens=12, temperature=0))[0]
    assert free.finish_reason == "length" and free.stop is None and len(free.token_ids) == 12
    assert len(free.logprobs) == 12
    word = tok.decode(free.token_ids[4:6])
    assert word.strip()
    cut = engine.generate(prompt, SamplingParams(max_new_tokens=12, temperature=0, stop_strings=[word]))[0]
    assert (cut.finish_reason, cut.stop) == ("stop", word)
    assert word in tok.decode(cut.token_ids) and cut.token_ids == free.token_ids[: len(cut.token_ids)]
    assert len(cut.token_ids) <= 6


def test_a_seed_reproduces_its_sample(engine):
    params = [SamplingParams(max_new_tokens=8, temperature=1.0, seed=s) for s in (1, 2, 1)]
    a, b, c = engine.generate(_prompts(lengths=(7, 7, 7))[:1] * 3, params)
    assert a.token_ids == c.token_ids and a.token_ids != b.token_ids


def test_bad_requests_are_typed_errors(engine):
    with pytest.raises(MtrError, match="empty"):
        engine.generate([[]], SamplingParams())
    with pytest.raises(MtrError, match="outside the vocabulary"):
        engine.generate([[engine.vocab_size + 5]], SamplingParams())
    with pytest.raises(MtrError, match="temperature"):
        engine.generate([[5]], SamplingParams(temperature=-1))


def test_multi_turn_follow_ups_run_to_the_end(engine):
    turns: dict[int, int] = {}

    def follow_up(i, gen):
        turns[i] = turns.get(i, 0) + 1
        return None if turns[i] == 3 else (prompts[i] + gen.token_ids + [42], params)

    prompts = _prompts()
    params = SamplingParams(max_new_tokens=4, temperature=0)
    generate_continuous(engine, prompts, params, follow_up)
    assert turns == {0: 3, 1: 3, 2: 3}


def test_a_bad_follow_up_is_refused_and_the_engine_goes_on(engine, trainer):
    def follow_up(i, gen):
        return [engine.vocab_size + 5], SamplingParams(max_new_tokens=2)

    with pytest.raises(MtrError, match="outside the vocabulary"):
        generate_continuous(engine, _prompts(), SamplingParams(max_new_tokens=3), follow_up)
    assert _gap(engine, trainer) < TOL  # nothing of the failed call is left in flight


def _perturb(model, names: list[str] | None = None, scale: float = 0.05, seed: int = 7) -> list[str]:
    g = torch.Generator().manual_seed(seed)
    touched = []
    with torch.no_grad():
        for name, p in model.named_parameters():
            if names is None or name in names:
                p.add_(torch.randn(p.shape, generator=g) * scale)
                touched.append(name)
    return touched


def test_a_push_of_new_weights_gives_the_trainers_new_logprobs(engine, trainer, restore):
    old = _copy(trainer)
    _perturb(trainer)
    info = engine.update_weights(trainer.named_parameters())  # a stream, as GRPO pushes
    assert info["tensors"] >= len(list(trainer.named_parameters()))
    assert _gap(engine, trainer) < TOL
    assert _gap(engine, old) > 100 * TOL  # the old weights are gone


def test_a_push_of_the_embedding_alone_reaches_the_tied_output_layer(engine, trainer, restore):
    old = _copy(trainer)
    assert _perturb(trainer, ["model.embed_tokens.weight"], scale=0.2) == ["model.embed_tokens.weight"]
    engine.update_weights([("model.embed_tokens.weight", trainer.model.embed_tokens.weight)])
    assert _gap(engine, trainer) < TOL
    assert _gap(engine, old) > 100 * TOL


def test_sleeping_and_pushing_keep_generation_right(engine, trainer, restore):
    engine.sleep()
    _perturb(trainer, seed=9)
    engine.update_weights(list(trainer.named_parameters()))
    engine.sleep()
    assert _gap(engine, trainer) < TOL


def _copy(model):
    import copy

    return copy.deepcopy(model)


# -- vLLM only: whole layers, the output layer of an untied model ---------------------------------------


@pytest.fixture(scope="module")
def vllm_engine(engine):
    if not hasattr(engine, "reloads_in_place"):
        pytest.skip("vLLM's own behaviour; the transformers engine loads any tensor on its own")
    return engine


def test_vllm_refuses_a_push_that_would_half_load_a_layer(vllm_engine, trainer):
    q = "model.layers.0.self_attn.q_proj.weight"
    changed = _copy(trainer)
    _perturb(changed, [q], scale=0.5)
    with pytest.raises(RunFailure, match=r"qkv_proj lacks .*k_proj.weight"):
        vllm_engine.update_weights([(q, changed.get_parameter(q))])
    assert _gap(vllm_engine, trainer) < TOL  # nothing was loaded
    stream = ((n, t) for n, t in changed.named_parameters() if n != "model.layers.1.mlp.up_proj.weight")
    with pytest.raises(RunFailure, match=r"gate_up_proj lacks .*up_proj.weight"):
        vllm_engine.update_weights(stream)  # a stream is checked as it goes: the rest loads
    with pytest.raises(RunFailure, match="does not have: model.extra.weight"):
        vllm_engine.update_weights([("model.extra.weight", torch.zeros(2))])
    vllm_engine.update_weights(list(trainer.named_parameters()))
    assert _gap(vllm_engine, trainer) < TOL


def test_vllm_untied_output_layer_takes_a_push_of_its_own(vllm_engine, tmp_path):
    path = _save(tmp_path / "untied", tied=False)
    vllm_engine.close()  # one vLLM engine at a time in a process; the module's is rebuilt below
    untied = _build("vllm", path)
    try:
        trainer = _load(path)
        assert _gap(untied, trainer) < TOL
        _perturb(trainer, ["lm_head.weight"], scale=0.2)
        untied.update_weights([("lm_head.weight", trainer.lm_head.weight)])
        assert _gap(untied, trainer) < TOL
    finally:
        untied.close()
