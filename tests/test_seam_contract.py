"""The device-seam contract (`mtr_hpc.train.seams.base`), checked on every seam this machine can run.

Loss functions return (loss sum, token count, report); the seam returns the sums over microbatches and
data-parallel ranks and the caller's reports untouched, leaves gradients of sum / tokens, builds no
graph in forward-only passes, and copes with a rank that holds no microbatches. The SFT and the three
GRPO passes (old log-probs, reference log-probs, clipped update) all go through it.
"""

from __future__ import annotations

import pytest
import torch
from _dist import run_distributed

SEAMS = ["cpu"] + (["gpu"] if torch.cuda.is_available() else [])


def _model(seam_name: str):
    from mtr_hpc.models.config import ModelConfig, arch_from_hf
    from mtr_hpc.models.gpt import build_gpt
    from mtr_hpc.models.parallel import init_parallel
    from mtr_hpc.models.tiny import tiny_hf_config
    from mtr_hpc.train.seams import get_seam

    init_parallel(1, 1, seed=5)
    arch = arch_from_hf(tiny_hf_config(model_type="qwen2", tied=False))
    seam = get_seam(seam_name, dtype="fp32", use_distributed_optimizer=False)
    torch.manual_seed(0)
    model = build_gpt(arch, ModelConfig(hf="", layer_spec="sdpa"), device=seam.device)
    return seam, seam.wrap_model(model), arch


def _sft_batches(seed: int, n: int = 2, rows_per_batch: int = 1):
    from mtr_hpc.train.batches import microbatches
    from mtr_hpc.train.packing import make_segment, pack

    g = torch.Generator().manual_seed(seed)
    segs = []
    for _ in range(2 * n):
        length = int(torch.randint(5, 12, (1,), generator=g))
        ids = torch.randint(1, 200, (length,), generator=g).tolist()
        segs.append(make_segment(ids, [0] * 3 + [1] * (length - 3)))
    rows, _ = pack(segs, seq_len=24)
    return microbatches(rows, rows_per_batch)


def _grpo_batches(seed: int):
    from mtr_hpc.train.grpo_batch import Sample, microbatches

    g = torch.Generator().manual_seed(seed)
    samples = []
    for _ in range(3):
        length = int(torch.randint(6, 14, (1,), generator=g))
        ids = torch.randint(1, 200, (length,), generator=g).tolist()
        mask = [0] * 3 + [1] * (length - 3)
        samples.append(
            Sample(ids[:-1], ids[1:], mask[1:], [-1.0] * (length - 1), float(torch.randn(1, generator=g)))
        )
    return microbatches(samples, 2, pad_id=0)


def _grads(model) -> dict[str, torch.Tensor]:
    out = {}
    for name, p in model.named_parameters():
        g = getattr(p, "main_grad", None)
        g = p.grad if g is None else g
        out[name] = torch.zeros_like(p).cpu() if g is None else g.detach().float().cpu().clone()
    return out


def _zero_grads(model):
    for p in model.parameters():
        p.grad = None
        if getattr(p, "main_grad", None) is not None:
            p.main_grad.zero_()


def _reference_sft(model, mbs) -> tuple[float, int, dict]:
    """Plain autograd of sum(loss) / tokens over all microbatches."""
    from mtr_hpc.train.step import sft_forward_step

    _zero_grads(model)
    it, total, tokens = iter(mbs), 0.0, 0
    losses = []
    for _ in mbs:
        out, loss_func = sft_forward_step(it, model)
        s, n, _ = loss_func(out)
        losses.append(s)
        tokens += int(n)
    (torch.stack(losses).sum() / tokens).backward()
    total = float(torch.stack(losses).sum().detach())
    grads = _grads(model)
    _zero_grads(model)
    return total, tokens, grads


@pytest.mark.parametrize("seam_name", SEAMS)
def test_sft_pass_sums_and_normalizes_like_plain_autograd(seam_name):
    from mtr_hpc.train.step import sft_forward_step

    seam, model, _ = _model(seam_name)
    mbs = [seam.to_device(b) for b in _sft_batches(1)]
    ref_loss, ref_tokens, ref_grads = _reference_sft(model, mbs)
    loss, tokens, reports = seam.forward_backward(model, sft_forward_step, mbs)
    assert tokens == ref_tokens and loss == pytest.approx(ref_loss, rel=1e-6)
    assert reports == [{}] * len(mbs)  # the caller's reports, untouched
    got = _grads(model)
    for name, g in ref_grads.items():
        assert torch.allclose(got[name], g, atol=1e-6, rtol=1e-5), name


@pytest.mark.parametrize("tied", [False, True])
def test_logits_at_loss_positions_only_give_the_full_steps_loss_and_gradients(tied):
    from mtr_hpc.models.config import ModelConfig, arch_from_hf
    from mtr_hpc.models.gpt import build_gpt
    from mtr_hpc.models.parallel import init_parallel
    from mtr_hpc.models.tiny import tiny_hf_config
    from mtr_hpc.train.seams import get_seam
    from mtr_hpc.train.step import sft_forward_step, sft_loss_positions_step

    init_parallel(1, 1, seed=5)
    seam = get_seam("cpu", dtype="fp32", use_distributed_optimizer=False)
    torch.manual_seed(0)
    arch = arch_from_hf(tiny_hf_config(model_type="qwen2", tied=tied))
    model = seam.wrap_model(build_gpt(arch, ModelConfig(hf="", layer_spec="sdpa"), device="cpu"))
    mbs = _sft_batches(6, n=3, rows_per_batch=2) + _sft_batches(7, n=1)
    assert mbs[0]["tokens"].shape[0] == 2  # [B, S] and Megatron's [S, B] orders differ
    mbs[-1]["loss_mask"] = torch.zeros_like(mbs[-1]["loss_mask"])  # a microbatch without loss tokens
    results = []
    for step in (sft_forward_step, sft_loss_positions_step):
        _zero_grads(model)
        loss, tokens, _ = seam.forward_backward(model, step, mbs)
        results.append((loss, tokens, _grads(model)))
    (loss, tokens, grads), (loss2, tokens2, grads2) = results
    assert tokens2 == tokens > 0 and loss2 == pytest.approx(loss, rel=1e-6)
    for name, g in grads.items():
        assert float(g.abs().sum()) > 0 or "bias" in name, name
        assert torch.allclose(grads2[name], g, atol=1e-6, rtol=1e-5), name
    assert not model.output_layer._forward_pre_hooks  # the hook does not outlive its step


@pytest.mark.parametrize("seam_name", SEAMS)
def test_forward_only_passes_build_no_graph(seam_name):
    from mtr_hpc.train.step import sft_forward_step

    seam, model, _ = _model(seam_name)
    mbs = [seam.to_device(b) for b in _sft_batches(2)]
    seen = []

    def step(it, m):
        seen.append(torch.is_grad_enabled())
        out, loss_func = sft_forward_step(it, m)
        seen.append(out.requires_grad)
        return out, loss_func

    _zero_grads(model)
    loss, tokens, _ = seam.forward_backward(model, step, mbs, forward_only=True)
    assert seen == [False, False] * len(mbs)
    assert tokens > 0 and loss > 0
    assert all(float(g.abs().sum()) == 0 for g in _grads(model).values())


@pytest.mark.parametrize("seam_name", SEAMS)
def test_grpo_logprob_and_train_passes(seam_name):
    from mtr_hpc.train.grpo_batch import make_forward_step
    from mtr_hpc.train.grpo_config import GRPOAlgoConfig
    from mtr_hpc.train.grpo_loss import policy_loss, token_logprobs

    seam, model, arch = _model(seam_name)
    mbs = [seam.to_device(b) for b in _grpo_batches(3)]
    settings = GRPOAlgoConfig(temperature=1.0)
    _, tokens, reports = seam.forward_backward(
        model, make_forward_step("logprobs", settings), mbs, forward_only=True
    )
    assert tokens == int(sum(float(mb["mask"].sum()) for mb in mbs))
    with torch.no_grad():
        for mb, rep in zip(mbs, reports, strict=True):
            logits = model(mb["tokens"], mb["position_ids"], None)
            expected = token_logprobs(logits, mb["labels"])
            assert torch.allclose(rep["logprobs"], expected, atol=1e-5)
            mb["old_logprobs"] = rep["logprobs"] - 0.05 * mb["mask"]  # a policy that moved a little
    _zero_grads(model)
    loss, count, reports = seam.forward_backward(model, make_forward_step("train", settings), mbs)
    assert [sorted(r) for r in reports] == [["stats"]] * len(mbs)
    # The same objective by hand: one batch of everything, normalized once.
    got = _grads(model)
    _zero_grads(model)
    total = 0.0
    for mb in mbs:
        logits = model(mb["tokens"], mb["position_ids"], None)
        lp = token_logprobs(logits, mb["labels"])
        part, _ = policy_loss(lp, mb["old_logprobs"], mb["advantages"], mb["mask"])
        total = total + part * mb["mask"].sum()
    (total / count).backward()
    assert loss / count == pytest.approx(float(total / count), rel=1e-5)
    for name, g in _grads(model).items():
        assert torch.allclose(got[name], g, atol=1e-6, rtol=1e-4), name


def test_grpo_passes_with_logits_at_sampled_tokens_only_match_the_full_passes():
    from mtr_hpc.train.grpo_batch import make_forward_step
    from mtr_hpc.train.grpo_config import GRPOAlgoConfig

    seam, model, _ = _model("cpu")
    settings = GRPOAlgoConfig(temperature=0.7)
    runs = []
    for positions_only in (False, True):
        mbs = [seam.to_device(b) for b in _grpo_batches(4)]
        assert mbs[0]["tokens"].shape[0] == 2  # [B, S] and Megatron's [S, B] orders differ
        _, tokens, reports = seam.forward_backward(
            model, make_forward_step("logprobs", settings, None, positions_only), mbs, forward_only=True
        )
        for mb, rep in zip(mbs, reports, strict=True):
            mb["old_logprobs"] = rep["logprobs"] - 0.05 * mb["mask"]
        _zero_grads(model)
        loss, count, _ = seam.forward_backward(
            model, make_forward_step("train", settings, None, positions_only), mbs
        )
        runs.append((reports, tokens, loss, count, _grads(model), mbs))
    (rep_a, tok_a, loss_a, count_a, grads_a, mbs_a), (rep_b, tok_b, loss_b, count_b, grads_b, _) = runs
    assert tok_a == tok_b and count_a == count_b and loss_b == pytest.approx(loss_a, rel=1e-5)
    for ra, rb, mb in zip(rep_a, rep_b, mbs_a, strict=True):
        on = mb["mask"].bool()
        assert torch.allclose(ra["logprobs"][on], rb["logprobs"][on], atol=1e-5)
        assert float(rb["logprobs"][~on].abs().sum()) == 0
        assert float(rb["entropy_sum"]) == pytest.approx(float(ra["entropy_sum"]), rel=1e-5)
    for name, g in grads_a.items():
        assert torch.allclose(grads_b[name], g, atol=1e-6, rtol=1e-4), name


@pytest.mark.parametrize("seam_name", SEAMS)
def test_an_empty_slice_is_zero_loss_zero_tokens_zero_grads(seam_name):
    from mtr_hpc.train.step import sft_forward_step

    seam, model, _ = _model(seam_name)
    _zero_grads(model)
    assert seam.forward_backward(model, sft_forward_step, []) == (0.0, 0, [])
    assert seam.forward_backward(model, sft_forward_step, [], forward_only=True) == (0.0, 0, [])
    assert all(float(g.abs().sum()) == 0 for g in _grads(model).values())


def _dp_worker(rank, world):
    """Rank 0 holds every microbatch, rank 1 none (an empty data-parallel slice)."""
    from mtr_hpc.train.step import sft_forward_step

    seam, model, _ = _model("cpu")
    mine = _sft_batches(4, n=2) if rank == 0 else []
    _zero_grads(model)
    loss, tokens, reports = seam.forward_backward(model, sft_forward_step, mine)
    return loss, tokens, len(reports), {k: v.numpy() for k, v in _grads(model).items()}


@pytest.mark.slow
def test_a_data_parallel_rank_with_an_empty_slice_joins_the_step():
    import numpy as np

    (alone,) = run_distributed(_dp_worker, 1, timeout=120)
    split = run_distributed(_dp_worker, 2, timeout=120)
    assert [r[2] for r in split] == [alone[2], 0]
    for loss, tokens, _, grads in split:  # every rank: the one-rank step's totals and gradients
        assert tokens == alone[1] and loss == pytest.approx(alone[0], rel=1e-9)
        for name, g in alone[3].items():
            assert np.allclose(grads[name], g, atol=1e-7), name


def test_gpu_seam_decays_exactly_what_the_cpu_seam_decays():
    """Megatron tags biases and norm weights `wd_mult=0`; only its scheduler applies the tag, so the GPU
    seam sets each group's decay itself. Built from Megatron's own param groups (the GPU optimizer
    needs CUDA), one AdamW step matches the CPU seam's bit for bit."""
    from megatron.core.optimizer import OptimizerConfig, _get_param_groups, get_standard_config_overrides

    from mtr_hpc.train.seams import OptimConfig
    from mtr_hpc.train.seams.cpu import CpuSeam
    from mtr_hpc.train.seams.gpu import GpuSeam

    seam, model, _ = _model("cpu")
    cfg = OptimConfig(lr=1e-2, weight_decay=0.5)
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    ocfg = OptimizerConfig(optimizer="adam", lr=cfg.lr, weight_decay=0.5)
    # The overrides get_megatron_optimizer applies by default (0.16 inside _get_param_groups, 0.19 before).
    groups = _get_param_groups([model], ocfg, get_standard_config_overrides(ocfg))
    megatron_like = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.95))
    assert {g["weight_decay"] for g in megatron_like.param_groups} == {0.5}  # the untagged default
    gpu = GpuSeam(dtype="fp32")
    gpu.weight_decay = cfg.weight_decay
    gpu._set_hyperparams(megatron_like, cfg.lr)
    names = {id(p): n for n, p in model.named_parameters()}
    undecayed = {
        names[id(p)] for g in megatron_like.param_groups if g["weight_decay"] == 0 for p in g["params"]
    }
    assert any("layernorm" in n for n in undecayed) and any("linear_qkv.bias" in n for n in undecayed)

    def one_step(optimizer):
        with torch.no_grad():
            for n, p in model.named_parameters():
                p.copy_(start[n])
                p.grad = torch.ones_like(p) * 1e-3
        optimizer.step()
        return {n: p.detach().clone() for n, p in model.named_parameters()}

    via_gpu_groups = one_step(megatron_like)
    via_cpu_seam = one_step(CpuSeam().build_optimizer(model, cfg))
    for k, v in via_cpu_seam.items():
        assert torch.equal(via_gpu_groups[k], v), k


@pytest.mark.parametrize("seam_name", SEAMS)
def test_a_frozen_model_is_evaluated_only_and_gives_the_trained_models_outputs(seam_name):
    from mtr_hpc.models.config import ModelConfig
    from mtr_hpc.models.gpt import build_gpt
    from mtr_hpc.train.step import sft_forward_step

    seam, model, arch = _model(seam_name)
    frozen = seam.wrap_frozen(build_gpt(arch, ModelConfig(hf="", layer_spec="sdpa"), device=seam.device))
    seam.unwrap(frozen).load_state_dict(seam.unwrap(model).state_dict())
    assert not frozen.training and not any(p.requires_grad for p in frozen.parameters())
    mbs = [seam.to_device(b) for b in _sft_batches(3)]
    model.eval()
    want = seam.forward_backward(model, sft_forward_step, mbs, forward_only=True)[:2]
    assert seam.forward_backward(frozen, sft_forward_step, mbs, forward_only=True)[:2] == want
