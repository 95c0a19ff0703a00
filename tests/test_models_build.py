"""GPT builder, layer specs, CPU attention and parallel-state helpers on CPU."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from mtr_hpc.errors import ConfigError, MissingDependencyError
from mtr_hpc.models.config import Arch, ModelConfig, arch_from_hf, padded_vocab_size
from mtr_hpc.models.convert import Layout, iter_rule_names
from mtr_hpc.models.tiny import tiny_hf_config


@pytest.fixture(scope="module")
def parallel():
    from mtr_hpc.models.parallel import init_parallel

    return init_parallel(1, 1, backend="gloo")


def _arch(**kw) -> Arch:
    return arch_from_hf(tiny_hf_config(**kw))


@pytest.mark.parametrize("model_type,tied", [("qwen2", True), ("qwen2", False), ("llama", True)])
def test_model_tensors_are_exactly_the_conversion_table(parallel, model_type, tied):
    from mtr_hpc.models.gpt import build_gpt

    arch = _arch(model_type=model_type, tied=tied)
    model = build_gpt(arch, ModelConfig(hf="", layer_spec="sdpa"))
    names = {k for k in model.state_dict() if not k.endswith("_extra_state")}
    table = {mcore for _, mcore, _ in iter_rule_names(Layout(arch))}
    assert names == table
    assert model.state_dict()["embedding.word_embeddings.weight"].shape == (256, 64)  # 200 padded to 128k
    assert ("decoder.layers.0.self_attention.linear_qkv.bias" in names) == (model_type == "qwen2")


def test_forward_is_causal_and_shaped(parallel):
    from mtr_hpc.models.gpt import build_gpt, forward_logits

    arch = _arch()
    model = build_gpt(arch, ModelConfig(hf="", layer_spec="sdpa")).eval()
    ids = torch.randint(0, arch.vocab_size, (2, 9))
    with torch.no_grad():
        full = forward_logits(model, ids, arch.vocab_size)
        prefix = forward_logits(model, ids[:, :5], arch.vocab_size)
    assert full.shape == (2, 9, arch.vocab_size)
    # Later tokens must not change earlier positions.
    assert torch.allclose(full[:, :5], prefix, atol=1e-5)


def test_model_config_raises_no_library_warning(parallel):
    import warnings

    from mtr_hpc.models.gpt import transformer_config

    # Megatron's default CUDA-graph scope "full" warns on every stage of every run (0.16 and 0.19).
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        cfg = transformer_config(_arch(), ModelConfig(hf="", layer_spec="sdpa"), device="cpu")
    assert cfg.num_layers == _arch().num_layers


def _sdpa(heads=4, groups=2, dim=8):
    from megatron.core.transformer.enums import AttnMaskType
    from megatron.core.transformer.transformer_config import TransformerConfig

    from mtr_hpc.models.gpt import _whole_layer_graph_scope
    from mtr_hpc.models.spec import SdpaAttention

    cfg = TransformerConfig(
        num_layers=1, hidden_size=heads * dim, num_attention_heads=heads, num_query_groups=groups,
        kv_channels=dim, use_cpu_initialization=True, **_whole_layer_graph_scope(),
    )  # fmt: skip
    return SdpaAttention(cfg, 1, AttnMaskType.causal, "self").eval()


def _reference(q, k, v):
    """Plain causal GQA attention on [s, b, h, d] tensors."""
    rep = q.shape[2] // k.shape[2]
    k, v = k.repeat_interleave(rep, 2), v.repeat_interleave(rep, 2)
    scores = torch.einsum("sbhd,tbhd->bhst", q, k) / q.shape[-1] ** 0.5
    s = q.shape[0]
    scores = scores.masked_fill(~torch.ones(s, s, dtype=torch.bool).tril(), float("-inf"))
    out = torch.einsum("bhst,tbhd->sbhd", scores.softmax(-1), v)
    return out.reshape(s, q.shape[1], -1)


def test_sdpa_attention_gqa_matches_reference(parallel):
    attn = _sdpa()
    q, k, v = torch.randn(6, 2, 4, 8), torch.randn(6, 2, 2, 8), torch.randn(6, 2, 2, 8)
    assert torch.allclose(attn(q, k, v, None), _reference(q, k, v), atol=1e-5)


def test_sdpa_attention_mask_hides_keys(parallel):
    attn = _sdpa()
    q, k, v = torch.randn(5, 1, 4, 8), torch.randn(5, 1, 2, 8), torch.randn(5, 1, 2, 8)
    mask = torch.zeros(1, 1, 5, 5, dtype=torch.bool)
    mask[..., 0] = True  # Megatron convention: True = masked out
    out = attn(q, k, v, mask)
    v2 = v.clone()
    v2[0] += 100.0
    assert torch.allclose(out[1:], attn(q, k, v2, mask)[1:], atol=1e-5)
    assert not torch.allclose(attn(q, k, v, None)[1:], attn(q, k, v2, None)[1:])


def test_sdpa_attention_packed_is_block_diagonal(parallel):
    from megatron.core.packed_seq_params import PackedSeqParams

    attn = _sdpa()
    lens = [3, 5, 2]
    q, k, v = torch.randn(10, 4, 8), torch.randn(10, 2, 8), torch.randn(10, 2, 8)
    cu = torch.tensor([0, 3, 8, 10], dtype=torch.int32)
    packed = attn(
        q, k, v, None, packed_seq_params=PackedSeqParams(qkv_format="thd", cu_seqlens_q=cu, cu_seqlens_kv=cu)
    )
    assert packed.shape == (10, 32)
    start = 0
    for n in lens:
        sl = slice(start, start + n)
        alone = _reference(q[sl, None], k[sl, None], v[sl, None])[:, 0]
        assert torch.allclose(packed[sl], alone, atol=1e-5)
        start += n


def test_te_spec_needs_transformer_engine():
    from mtr_hpc.models.spec import layer_spec

    if importlib.util.find_spec("transformer_engine") is None:
        with pytest.raises(MissingDependencyError, match="transformer_engine"):
            layer_spec("te")
    else:
        assert layer_spec("te").submodules.self_attention is not None


def test_cpu_rng_tracker_forks_and_restores(parallel):
    from megatron.core import tensor_parallel

    tracker = tensor_parallel.get_cuda_rng_tracker()
    before = torch.get_rng_state()
    with tracker.fork():
        a = torch.rand(3)
    assert torch.equal(torch.get_rng_state(), before)
    with tracker.fork():
        b = torch.rand(3)
    assert not torch.equal(a, b)  # the forked stream advances


def test_config_errors():
    with pytest.raises(ConfigError, match="layer_spec"):
        ModelConfig(layer_spec="gpu")
    with pytest.raises(ConfigError, match="fp8"):
        ModelConfig(layer_spec="sdpa", fp8="hybrid")
    with pytest.raises(ConfigError, match="model_type"):
        arch_from_hf({**tiny_hf_config(), "model_type": "gpt2"})
    with pytest.raises(ConfigError, match="num_key_value_heads=2 is not divisible"):
        _arch().check_tp(4)
    assert padded_vocab_size(200, 128, 1) == 256 and padded_vocab_size(49152, 128, 2) == 49152
    assert _arch(model_type="llama").rope_theta == 10000.0


def test_packed_rows_thd_and_mask_layouts_give_the_same_losses(parallel):
    """The sdpa spec attends sequence by sequence in the THD layout (rotary positions restart per
    sequence there too); the block-diagonal mask layout must agree to float precision."""
    from mtr_hpc.models.gpt import build_gpt
    from mtr_hpc.train.batches import model_batch, uses_thd
    from mtr_hpc.train.packing import make_segment, pack
    from mtr_hpc.train.step import sft_forward_step

    arch = _arch(model_type="qwen2", tied=False)
    model = build_gpt(arch, ModelConfig(hf="", layer_spec="sdpa"), device="cpu").eval()
    g = torch.Generator().manual_seed(0)
    segs = [make_segment(torch.randint(1, 200, (n,), generator=g).tolist(), [1] * n) for n in (7, 11, 5)]
    rows, _ = pack(segs, seq_len=26)  # 23 real tokens (20 positions) and padding
    losses = {}
    for thd in (False, True):
        batch = model_batch(rows, thd=thd)
        with torch.no_grad():
            out, _ = sft_forward_step(iter([batch]), model)
        losses[thd] = out.reshape(-1)[batch["loss_mask"].reshape(-1) > 0]
    assert torch.allclose(losses[True], losses[False], atol=1e-5)
    assert uses_thd("sdpa", 1) and not uses_thd("sdpa", 2) and not uses_thd("local", 1) and uses_thd("te", 1)
