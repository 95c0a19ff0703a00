"""Pipeline parallelism on CPU (gloo): each stage builds and loads exactly its layers, and the model
streamed back over the pipeline (and tensor) groups is the pp=1 model, bit for bit.

The schedules that run a pipelined forward/backward need CUDA; they are checked by tools/gpu_smoke.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from _dist import run_distributed

from mtr_hpc.models.config import arch_from_hf
from mtr_hpc.models.convert import Layout, hf_to_megatron, iter_rule_names
from mtr_hpc.models.tiny import save_tiny_hf_model, tiny_hf_config

# Multi-second tests (real clusters, several ranks or real models): out of `-m "not slow"`.
pytestmark = pytest.mark.slow


def test_stage_tables_split_the_model():
    arch = arch_from_hf(tiny_hf_config(model_type="qwen2", tied=True, num_layers=4))
    layout = Layout(arch, pp=2)
    first = {m for _, m, _ in iter_rule_names(layout, 0)}
    last = {m: h for _, m, h in iter_rule_names(layout, 1)}
    assert "embedding.word_embeddings.weight" in first and "output_layer.weight" not in first
    assert "decoder.final_layernorm.weight" in last and "embedding.word_embeddings.weight" not in last
    # Local indices on the stage, global ones on the HF side.
    assert last["decoder.layers.0.mlp.linear_fc2.weight"] == ("model.layers.2.mlp.down_proj.weight",)
    assert not any(m.startswith("decoder.layers.2") for m in last)
    # Tied embeddings: the last stage keeps its own copy, loaded from the embeddings, never exported.
    assert last["output_layer.weight"] == ("model.embed_tokens.weight",)
    exported = {m for _, m, _ in iter_rule_names(layout, 1, exported=True)}
    assert "output_layer.weight" not in exported
    with pytest.raises(Exception, match="not divisible by pipeline parallel size 3"):
        Layout(arch, pp=3).stage_layers(0)


def _stage_worker(rank, world, hf_dir, tp, pp):
    from megatron.core import parallel_state as ps

    from mtr_hpc.models.config import ModelConfig
    from mtr_hpc.models.parallel import init_parallel
    from mtr_hpc.train.model_io import build_policy, hf_named_tensors, policy_source

    init_parallel(tp, pp, backend="gloo")
    cfg = ModelConfig(hf=hf_dir, layer_spec="sdpa", tp=tp, pp=pp)
    src = policy_source(cfg)
    model = build_policy(cfg, src, "pretrained", device="cpu")
    # numpy, not tensors: torch shares tensors between processes through file descriptors that vanish
    # with the worker.
    own = {k: v.numpy().copy() for k, v in model.state_dict().items() if not k.endswith("_extra_state")}
    streamed = {k: v.numpy().copy() for k, v in hf_named_tensors(model, src)}
    out = {
        "stage": ps.get_pipeline_model_parallel_rank(),
        "tp_rank": ps.get_tensor_model_parallel_rank(),
        "layer_numbers": [layer.layer_number for layer in model.decoder.layers],
        "own": own,
        "streamed": streamed,
    }
    ps.destroy_model_parallel()
    return out


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("pp")
    return {
        "llama-tied": str(
            save_tiny_hf_model(root / "llama", seed=1, model_type="llama", tied=True, num_layers=4)
        ),
        "qwen2-untied": str(
            save_tiny_hf_model(root / "qwen2", seed=2, model_type="qwen2", tied=False, num_layers=4)
        ),
    }


@pytest.mark.parametrize("name", ["llama-tied", "qwen2-untied"])
def test_each_stage_holds_its_layers_and_the_export_is_the_pp1_export(tiny_dirs, name):
    from mtr_hpc.models.verify import load_hf_state_dict

    hf_dir = tiny_dirs[name]
    source = load_hf_state_dict(hf_dir)
    (single,) = run_distributed(_stage_worker, 1, hf_dir, 1, 1, timeout=120)
    stages = run_distributed(_stage_worker, 2, hf_dir, 1, 2, timeout=120)
    arch = arch_from_hf(
        tiny_hf_config(model_type=name.split("-")[0], tied=name.endswith("-tied"), num_layers=4)
    )
    layout = Layout(arch, pp=2)
    for s, got in enumerate(stages):
        assert got["stage"] == s
        assert got["layer_numbers"] == [2 * s + 1, 2 * s + 2]  # Megatron's 1-based global numbers
        expected = hf_to_megatron(source, layout, 0, s)
        assert set(got["own"]) == set(expected)
        for k, v in expected.items():
            assert np.array_equal(got["own"][k], v.numpy()), k
    for got in stages:  # every rank of the pipeline receives the whole model
        assert set(got["streamed"]) == set(single["streamed"])
        for k, v in single["streamed"].items():
            assert np.array_equal(got["streamed"][k], v), k
    assert all(np.array_equal(single["streamed"][k], source[k].numpy()) for k in single["streamed"])


def test_tp2_pp2_stream_equals_the_source(tiny_dirs):
    from mtr_hpc.models.verify import load_hf_state_dict

    hf_dir = tiny_dirs["qwen2-untied"]
    source = load_hf_state_dict(hf_dir)
    results = run_distributed(_stage_worker, 4, hf_dir, 2, 2, timeout=240)
    assert sorted((r["stage"], r["tp_rank"]) for r in results) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    for got in results:
        assert set(got["streamed"]) == set(source)
        assert all(np.array_equal(got["streamed"][k], source[k].numpy()) for k in source)


def test_smollm2_pipeline_stages_load_the_real_weights():
    from mtr_hpc.models.registry import resolve_model
    from mtr_hpc.models.verify import load_hf_state_dict

    hf_dir = resolve_model("smollm2-135m")
    stages = run_distributed(_stage_worker, 2, hf_dir, 1, 2, timeout=300)
    source = load_hf_state_dict(hf_dir)
    assert [len(s["layer_numbers"]) for s in stages] == [15, 15]
    last = stages[1]["own"]
    # The last stage's copy of the tied embeddings is the embedding matrix (padded), not zeros.
    embed = source["model.embed_tokens.weight"].numpy()
    assert np.array_equal(last["output_layer.weight"][: embed.shape[0]], embed)
    assert np.array_equal(
        last["decoder.layers.0.mlp.linear_fc2.weight"], source["model.layers.15.mlp.down_proj.weight"].numpy()
    )
    streamed = stages[0]["streamed"]
    assert set(streamed) == set(source) and all(
        np.array_equal(streamed[k], source[k].numpy()) for k in source
    )
