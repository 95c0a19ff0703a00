"""`dtype: auto` follows the machine: each choice under mocked CPU flags, and what bf16 means on a CPU
(autocast over fp32 weights for training, bf16 weights for inference), recorded in the manifest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from _paths import REPO
from _traces import hotpot_traces

from mtr_hpc import precision
from mtr_hpc.config import load_config
from mtr_hpc.errors import ConfigError
from mtr_hpc.precision import cpu_flags, resolve_dtype
from mtr_hpc.trace.io import write_traces
from mtr_hpc.train.sft_config import SFTConfig

AVX512_BF16 = {"avx2", "avx512f", "avx512_bf16"}
AMX = {"avx2", "avx512f", "amx_bf16", "amx_tile"}
AVX2 = {"avx2", "fma"}


@pytest.mark.parametrize(
    ("flags", "want"), [(AVX512_BF16, "bf16"), (AMX, "bf16"), (AVX2, "fp32"), (set(), "fp32")]
)
def test_auto_on_a_cpu_follows_its_flags(flags, want):
    got = resolve_dtype("auto", "cpu", flags=flags)
    assert (got.dtype, got.device, got.requested) == (want, "cpu", "auto")
    if want == "bf16":
        assert any(f in got.reason for f in ("avx512_bf16", "amx_bf16"))
    else:
        assert "emulated" in got.reason


def test_a_named_dtype_is_kept_and_bf16_without_native_support_says_so():
    for flags in (AVX512_BF16, AVX2):
        assert resolve_dtype("fp32", "cpu", flags=flags).dtype == "fp32"
    slow = resolve_dtype("bf16", "cpu", flags=AVX2)
    assert slow.dtype == "bf16" and "slower" in slow.reason
    assert resolve_dtype("bf16", "cpu", flags=AVX512_BF16).reason == "configured"


def test_auto_on_a_gpu_follows_its_bf16_support():
    assert resolve_dtype("auto", "gpu", cuda_bf16=True).dtype == "bf16"
    assert resolve_dtype("auto", "cuda", cuda_bf16=False).dtype == "fp32"
    assert resolve_dtype("fp16", "cuda", cuda_bf16=True).dtype == "fp16"


def test_a_bad_dtype_names_its_key():
    with pytest.raises(ConfigError, match="model.dtype.*'bf8'"):
        resolve_dtype("bf8", "cpu", key="model.dtype", flags=AVX2)


def test_dtype_names_and_torch_dtypes_round_trip():
    for name in precision.DTYPE_NAMES:
        assert precision.dtype_name(precision.torch_dtype(name)) == name
    assert precision.dtype_name(torch.int8) == "fp32"  # not a floating dtype the project names
    assert precision.dtype_name(torch.float64, default="?") == "?"


def test_flags_are_read_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512_bf16\n\nprocessor\t: 1\nflags\t\t: fpu\n")
    assert cpu_flags(str(info)) == {"fpu", "avx2", "avx512_bf16"}
    assert cpu_flags(str(tmp_path / "absent")) == frozenset()


def test_cpu_training_in_bf16_is_autocast_over_fp32_master_weights():
    """The same Megatron model and batch under the fp32 and the bf16 CPU seam: bf16 products, fp32
    weights, gradients and optimizer state, and a loss and gradient close to fp32's."""
    from mtr_hpc.models.config import ModelConfig, arch_from_hf
    from mtr_hpc.models.gpt import build_gpt
    from mtr_hpc.models.parallel import init_parallel
    from mtr_hpc.models.tiny import tiny_hf_config
    from mtr_hpc.train.batches import microbatches
    from mtr_hpc.train.packing import make_segment, pack
    from mtr_hpc.train.seams import OptimConfig, get_seam
    from mtr_hpc.train.step import sft_forward_step

    init_parallel(1, 1, seed=5)
    arch = arch_from_hf(tiny_hf_config(model_type="qwen2", tied=False))
    g = torch.Generator().manual_seed(3)
    segs = [
        make_segment(torch.randint(1, 200, (n,), generator=g).tolist(), [0] * 3 + [1] * (n - 3))
        for n in (9, 14)
    ]
    batch = microbatches(pack(segs, seq_len=24)[0], 1, thd=True)
    runs = {}
    for dtype in ("fp32", "bf16"):
        seam = get_seam("cpu", dtype=dtype)
        assert seam.params_dtype == "fp32"
        torch.manual_seed(0)
        model = seam.wrap_model(build_gpt(arch, ModelConfig(hf="", layer_spec="sdpa"), device="cpu"))
        seen = []
        hook = model.output_layer.register_forward_hook(lambda m, i, o, seen=seen: seen.append(o[0].dtype))
        loss, tokens, _ = seam.forward_backward(model, sft_forward_step, batch)
        hook.remove()
        grads = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
        assert grads.dtype == torch.float32
        opt = seam.build_optimizer(model, OptimConfig(lr=1e-3))
        seam.optimizer_step(model, opt, 1e-3, 1.0)
        assert all(p.dtype == torch.float32 for p in model.parameters())
        assert all(s["exp_avg"].dtype == torch.float32 for s in opt.state.values())
        runs[dtype] = (loss / tokens, grads, seen[0])
    assert (runs["fp32"][2], runs["bf16"][2]) == (torch.float32, torch.bfloat16)  # the products' dtype
    assert runs["bf16"][0] == pytest.approx(runs["fp32"][0], rel=2e-2)
    assert runs["bf16"][0] != runs["fp32"][0]  # it did compute in another precision
    cos = torch.nn.functional.cosine_similarity(runs["fp32"][1], runs["bf16"][1], dim=0)
    assert cos > 0.99
    with pytest.raises(ConfigError, match="fp16 needs a GPU"):
        get_seam("cpu", dtype="fp16")


@pytest.mark.parametrize(("flags", "want"), [(AVX512_BF16, "bf16"), (AVX2, "fp32")])
def test_the_engine_holds_the_weights_auto_picks(monkeypatch, tmp_path, flags, want):
    from mtr_hpc.models.tiny import save_tiny_hf_model
    from mtr_hpc.rollout.hf_engine import HFRolloutEngine

    monkeypatch.setattr(precision, "cpu_flags", lambda path="/proc/cpuinfo": frozenset(flags))
    path = save_tiny_hf_model(tmp_path / "tiny")
    engine = HFRolloutEngine(path, dtype="auto", tokenizer=object())
    assert engine.precision.dtype == want
    assert next(engine.model.parameters()).dtype == precision.torch_dtype(want)


@pytest.mark.parametrize(("flags", "want"), [(AVX512_BF16, "bf16"), (AVX2, "fp32")])
def test_sft_with_auto_records_its_choice_and_trains_fp32_weights(
    monkeypatch, tmp_path, shared_data, flags, want
):
    from mtr_hpc.train.sft import run_sft

    monkeypatch.setattr(precision, "cpu_flags", lambda path="/proc/cpuinfo": frozenset(flags))
    traces = tmp_path / "traces.jsonl"
    write_traces(traces, hotpot_traces(shared_data, 6))
    cfg = load_config(
        SFTConfig,
        REPO / "configs" / "sft-tiny.yaml",
        [f"out={tmp_path / 'run'}", f"data.traces=[{traces}]", "model.hf=" + str(REPO / "configs/models/tiny-llama"),
         "model.dtype=auto", "train.steps=1", "train.save_every=1", "train.eval_every=1"],
    )  # fmt: skip
    summary = run_sft(cfg)
    manifest = json.loads(Path(tmp_path / "run" / "manifest.json").read_text())
    assert manifest["precision"]["dtype"] == want == summary["precision"]["dtype"]
    assert manifest["precision"]["requested"] == "auto"
    hf = json.loads((tmp_path / "run" / "hf" / "config.json").read_text())
    assert hf.get("torch_dtype", hf.get("dtype")) == "float32"  # master weights, in both cases


@pytest.mark.parametrize(("flags", "want"), [(AVX512_BF16, torch.bfloat16), (AVX2, torch.float32)])
def test_grpo_rollout_engine_auto_holds_the_weights_it_picks_and_syncs_into_them(monkeypatch, flags, want):
    from mtr_hpc.models.parallel import init_parallel
    from mtr_hpc.models.registry import load_tokenizer
    from mtr_hpc.train.grpo_config import GRPOConfig
    from mtr_hpc.train.grpo_setup import build_engine, rollout_precision, sync_weights
    from mtr_hpc.train.model_io import build_policy, hf_named_tensors, policy_source

    monkeypatch.setattr(precision, "cpu_flags", lambda path="/proc/cpuinfo": frozenset(flags))
    cfg = load_config(
        GRPOConfig,
        REPO / "configs" / "grpo-tiny.yaml",
        ["out=unused", f"model.hf={REPO / 'configs/models/tiny-llama'}", "rollout.dtype=auto"],
    )
    chosen = rollout_precision(cfg)
    assert (chosen.requested, precision.torch_dtype(chosen.dtype)) == ("auto", want)
    init_parallel(1, 1, seed=3)
    src = policy_source(cfg.model)
    model = build_policy(cfg.model, src, "random")
    engine = build_engine(cfg, src.hf_config, load_tokenizer("smollm2-135m"), chosen.dtype)
    sync_weights(engine, hf_named_tensors(model, src))  # fp32 trainer weights cast into the engine's
    assert {p.dtype for p in engine.model.parameters()} == {want}
    ids = [1, 520, 9531, 198, 44, 17400]
    from mtr_hpc.models.gpt import forward_logits

    with torch.no_grad():
        trainer = forward_logits(model.eval(), torch.tensor([ids]), vocab_size=src.arch.vocab_size)[0]
    diff = (trainer - engine.logits(ids).to(trainer.dtype)).abs().max().item()
    assert diff < (0.5 if want == torch.bfloat16 else 1e-4)
