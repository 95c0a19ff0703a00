"""Tensor-parallel conversion: shard layout, and TP=2 over gloo in 2 processes reproducing TP=1 logits."""

from __future__ import annotations

import time

import pytest
import torch
from _dist import run_distributed

from mtr_hpc.models.config import arch_from_hf, padded_vocab_size
from mtr_hpc.models.convert import Layout, hf_to_megatron, megatron_to_hf
from mtr_hpc.models.tiny import tiny_hf_config, tiny_hf_model
from mtr_hpc.models.verify import megatron_logits, states_equal

# Multi-second tests (real clusters, several ranks or real models): out of `-m "not slow"`.
pytestmark = pytest.mark.slow


def test_qkv_shards_hold_whole_query_groups():
    model = tiny_hf_model(model_type="llama", tied=True, num_heads=4, num_kv_heads=2)
    state = model.state_dict()
    layout = Layout(arch_from_hf(model.config), tp=2)
    d = 16
    q, k, v = (state[f"model.layers.0.self_attn.{p}_proj.weight"] for p in "qkv")
    for rank in range(2):
        shard = hf_to_megatron(state, layout, rank)["decoder.layers.0.self_attention.linear_qkv.weight"]
        # Rank r holds query group r: its 2 query heads, then its key head, then its value head.
        expected = torch.cat(
            [q[2 * d * rank : 2 * d * (rank + 1)], k[d * rank : d * (rank + 1)], v[d * rank : d * (rank + 1)]]
        )
        assert torch.equal(shard, expected)
        fc1 = hf_to_megatron(state, layout, rank)["decoder.layers.0.mlp.linear_fc1.weight"]
        gate, up = state["model.layers.0.mlp.gate_proj.weight"], state["model.layers.0.mlp.up_proj.weight"]
        assert torch.equal(fc1, torch.cat([gate.chunk(2)[rank], up.chunk(2)[rank]]))


@pytest.mark.parametrize("tp", [2, 4])
def test_sharded_roundtrip_is_exact(tp):
    model = tiny_hf_model(model_type="qwen2", tied=False, num_heads=4, num_kv_heads=4)
    state = model.state_dict()
    layout = Layout(arch_from_hf(model.config), tp=tp)
    shards = [hf_to_megatron(state, layout, r) for r in range(tp)]
    # 200 tokens padded to a multiple of 128 * tp, split evenly.
    rows = [s["embedding.word_embeddings.weight"].shape[0] for s in shards]
    assert rows == [padded_vocab_size(200, 128, tp) // tp] * tp and sum(rows) >= 200
    assert states_equal(megatron_to_hf(shards, layout), state)


def _tp_worker(rank, world_size, cases):
    from megatron.core import parallel_state as ps

    from mtr_hpc.models.checkpoint import load_into_model
    from mtr_hpc.models.config import ModelConfig
    from mtr_hpc.models.convert import megatron_to_hf_iter
    from mtr_hpc.models.gpt import build_gpt, forward_logits
    from mtr_hpc.models.parallel import init_parallel, tp_group

    info = init_parallel(world_size, 1, backend="gloo")
    assert info.tp_rank == rank
    results = []
    for hf_config, hf_state, ids in cases:
        arch = arch_from_hf(hf_config)
        layout = Layout(arch, tp=world_size)
        model = build_gpt(
            arch, ModelConfig(hf="", layer_spec="sdpa", tp=world_size), init_weights=False
        ).eval()
        load_into_model(model, hf_to_megatron(hf_state, layout, rank))
        with torch.no_grad():
            logits = forward_logits(model, ids, arch.vocab_size)
        streamed = dict(megatron_to_hf_iter(model, layout, tp_group()))
        results.append((logits, states_equal(streamed, {k: hf_state[k] for k in streamed})))
    ps.destroy_model_parallel()
    return results


def test_tp2_over_gloo_matches_tp1():
    """Tiny Qwen2 (QKV bias, untied) and tiny Llama (tied), both GQA with 4 query and 2 KV heads."""
    cases, references = [], []
    for model_type, tied in (("qwen2", False), ("llama", True)):
        config = tiny_hf_config(model_type=model_type, tied=tied, num_heads=4, num_kv_heads=2)
        state = {
            k: v.clone() for k, v in tiny_hf_model(model_type=model_type, tied=tied).state_dict().items()
        }
        arch = arch_from_hf(config)
        ids = torch.randint(0, arch.vocab_size, (2, 7), generator=torch.Generator().manual_seed(3))
        references.append(megatron_logits(arch, Layout(arch), hf_to_megatron(state, Layout(arch)), ids))
        cases.append((config, state, ids))
    per_rank = run_distributed(_tp_worker, 2, cases, timeout=150)
    for results in per_rank:
        for (logits, exact), reference in zip(results, references, strict=True):
            assert exact
            assert (logits - reference).abs().max().item() <= 1e-4
            assert torch.equal(logits.argmax(-1), reference.argmax(-1))


def _hang(rank, world_size):
    import torch.distributed as dist

    if rank == 0:
        dist.barrier()  # rank 1 never joins
    else:
        time.sleep(600)
    return rank


def test_runner_deadline_fails_a_hang():
    from _dist import DistributedFailure

    with pytest.raises(DistributedFailure, match="timed out"):
        run_distributed(_hang, 2, timeout=8)
