"""SFT training throughput on CPU: the project's Megatron step against a plain transformers loop.

Rows: grounded traces synthesized from the shipped samples, rendered with compact tool listings and
packed into `--seq-len` rows exactly as `mtr sft` does (the demo's data). Three trainers run the same
rows side by side, SmolLM2-135M-Instruct in fp32 with AdamW, one row per step:

- `project`: the SFT step of `mtr sft` on the CPU seam (Megatron-Core GPT, THD packed attention, logits
  only at loss positions);
- `project_full_logits`: the same with Megatron's full-logits loss (the GPU seam's step);
- `project_bf16`: the project's step with `model.dtype: bf16` on the CPU seam (autocast over fp32
  weights, what `dtype: auto` picks on CPUs with AVX-512 BF16 or AMX), with `--bf16`; its loss on the same
  rows beside fp32's (`bf16_loss_rel_diff`);
- `transformers`: `AutoModelForCausalLM` + `torch.optim.AdamW`, a block-causal 4D mask per row, loss on
  the same positions; with `--bf16` also under `torch.autocast(bfloat16)` (worth it only on CPUs with
  AVX-512 BF16 or AMX; the flags are printed).

Prints tokens/s of each after `--warmup` steps, the ratios, and each trainer's achieved FLOP/s (6 x
parameters x tokens plus attention) against a dense fp32 (and bf16) matrix product measured in the
same run: the machine's practical peak.

    .venv/bin/python tools/bench_sft.py [--rows 4] [--seq-len 2048] [--warmup 1] [--bf16] [--json]

With `--bf16`, `bf16_vs_fp32` is the project's bf16 step against its fp32 step, measured side by side.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def cpu_flags() -> set[str]:
    from mtr_hpc.precision import cpu_flags as read

    return set(read())


def gemm_peak(dtype, n: int = 2048, reps: int = 5) -> float:
    """FLOP/s of an n x n x n matrix product (best of `reps`)."""
    import torch

    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    a @ b
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def demo_rows(tokenizer, n: int, seq_len: int):
    from mtr_hpc.data import load_sample
    from mtr_hpc.synth import SynthAgents, SynthConfig
    from mtr_hpc.synth.filtering import synthesize_example
    from mtr_hpc.trace.render import ChatRenderer
    from mtr_hpc.train.sft_data import build_rows

    renderer = ChatRenderer(tokenizer, tools_format="compact")
    agents = SynthAgents.build(SynthConfig())
    traces = []
    benches = ["hotpotqa", "musique", "2wiki", "bamboogle"]
    samples = {b: load_sample(b) for b in benches}
    i = 0
    while True:
        ex = samples[benches[i % 4]][i // 4]
        trace, _ = synthesize_example(ex, SynthConfig(), agents)
        if trace is not None:
            traces.append(trace)
        i += 1
        if len(traces) >= 4 * n:
            rows, _ = build_rows(traces, renderer, seq_len, tokenizer.pad_token_id or 0, "drop")
            if len(rows) > n:
                return rows[:n]


def flops(n_params: int, arch, rows) -> float:
    """Training FLOPs: 6 per parameter per token, plus attention (QK^T and AV, forward and backward)
    within each packed segment."""
    total = 0.0
    for row in rows:
        tokens = sum(1 for s in row.segment_ids if s >= 0)
        seg_lengths = [row.segment_ids.count(s) for s in set(row.segment_ids) if s >= 0]
        attn = sum(length * length for length in seg_lengths)  # causal halves, fwd+bwd x3 -> 2 x 2 x 3 / 2
        total += 6 * n_params * tokens + 6 * arch.num_layers * arch.hidden_size * attn
    return total


def run_project(rows, steps_warmup: int, full_logits: bool, dtype: str = "fp32") -> dict:

    from mtr_hpc.models.config import ModelConfig
    from mtr_hpc.models.parallel import init_parallel
    from mtr_hpc.train.batches import microbatches
    from mtr_hpc.train.model_io import build_policy, policy_source
    from mtr_hpc.train.seams import get_seam
    from mtr_hpc.train.seams.base import OptimConfig
    from mtr_hpc.train.step import sft_forward_step, sft_loss_positions_step

    init_parallel(1, 1, seed=0)
    cfg = ModelConfig(hf="smollm2-135m", layer_spec="sdpa", dtype="fp32", seq_length=len(rows[0].tokens))
    src = policy_source(cfg)
    seam = get_seam("cpu", dtype=dtype, use_distributed_optimizer=False)
    model = seam.wrap_model(build_policy(cfg, src, "pretrained", "cpu"))
    optimizer = seam.build_optimizer(model, OptimConfig(lr=1e-5))
    step_fn = sft_forward_step if full_logits else sft_loss_positions_step
    model.train()
    times, losses = [], []
    for row in rows:
        t0 = time.perf_counter()
        loss, tokens, _ = seam.forward_backward(model, step_fn, microbatches([row], 1, thd=True))
        seam.optimizer_step(model, optimizer, 1e-5, 1.0)
        times.append(time.perf_counter() - t0)
        losses.append(loss / max(tokens, 1))
    n_params = sum(p.numel() for p in model.parameters())
    del model, optimizer
    return {**_summary(rows, times, steps_warmup, n_params, src.arch), "losses": losses}


def run_transformers(rows, steps_warmup: int, bf16: bool) -> dict:
    import contextlib

    import torch
    from transformers import AutoModelForCausalLM

    from mtr_hpc.models.config import arch_from_hf
    from mtr_hpc.models.registry import resolve_model
    from mtr_hpc.train.packing import block_causal_mask

    path = resolve_model("smollm2-135m")
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="sdpa")
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, betas=(0.9, 0.95), foreach=False)
    times = []
    for row in rows:
        t0 = time.perf_counter()
        ids = torch.tensor([row.tokens])
        labels = torch.tensor([row.labels])
        mask = torch.tensor([row.loss_mask], dtype=torch.bool)
        blocked = block_causal_mask(torch.tensor([row.segment_ids]))  # True where attention is NOT allowed
        attn = torch.zeros(blocked.shape).masked_fill(blocked.bool(), torch.finfo(torch.float32).min)
        ctx = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        with ctx:
            logits = model(
                input_ids=ids, attention_mask=attn, position_ids=torch.tensor([row.position_ids])
            ).logits
        per_token = torch.nn.functional.cross_entropy(logits.float()[0], labels[0], reduction="none")
        loss = per_token[mask[0]].mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
    n_params = sum(p.numel() for p in model.parameters())
    arch = arch_from_hf(model.config.to_dict())
    return _summary(rows, times, steps_warmup, n_params, arch)


def _summary(rows, times, warmup: int, n_params: int, arch) -> dict:
    timed = rows[warmup:]
    wall = sum(times[warmup:])
    tokens = sum(sum(1 for s in r.segment_ids if s >= 0) for r in timed)
    return {
        "steps": len(timed),
        "tokens": tokens,
        "wall_s": wall,
        "tokens_per_s": tokens / wall,
        "flops_per_s": flops(n_params, arch, timed) / wall,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=4, help="steps per trainer (one packed row each)")
    ap.add_argument("--seq-len", type=int, default=2048)
    ap.add_argument("--warmup", type=int, default=1, help="first steps left out of the figures")
    ap.add_argument(
        "--bf16",
        action="store_true",
        help="also the project's bf16 step and transformers under bf16 autocast",
    )
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.rows <= args.warmup:
        ap.error("--rows must exceed --warmup")

    import torch

    from mtr_hpc.models.registry import load_tokenizer

    rows = demo_rows(load_tokenizer("smollm2-135m"), args.rows, args.seq_len)
    flags = cpu_flags()
    result = {
        "model": "smollm2-135m",
        "threads": torch.get_num_threads(),
        "seq_len": args.seq_len,
        "loss_fraction": sum(map(sum, (r.loss_mask for r in rows))) / sum(len(r.tokens) for r in rows),
        "cpu_bf16": sorted(f for f in flags if f in ("avx512_bf16", "amx_bf16", "avx512f")),
        "gemm_fp32_flops_per_s": gemm_peak(torch.float32),
        "runs": {
            "project": run_project(rows, args.warmup, full_logits=False),
            "project_full_logits": run_project(rows, args.warmup, full_logits=True),
            "transformers": run_transformers(rows, args.warmup, bf16=False),
        },
    }
    if args.bf16:
        result["gemm_bf16_flops_per_s"] = gemm_peak(torch.bfloat16)
        result["runs"]["transformers_bf16_autocast"] = run_transformers(rows, args.warmup, bf16=True)
        result["runs"]["project_bf16"] = run_project(rows, args.warmup, full_logits=False, dtype="bf16")
        runs = result["runs"]
        result["bf16_vs_fp32"] = runs["project_bf16"]["tokens_per_s"] / runs["project"]["tokens_per_s"]
        fp32, bf16 = runs["project"]["losses"], runs["project_bf16"]["losses"]
        result["bf16_loss_rel_diff"] = max(abs(b - a) / abs(a) for a, b in zip(fp32, bf16, strict=True))
    peak = max(result["gemm_fp32_flops_per_s"], result.get("gemm_bf16_flops_per_s", 0.0))
    runs = result["runs"]
    best_hf = max(r["tokens_per_s"] for k, r in runs.items() if k.startswith("transformers"))
    best = max(r["tokens_per_s"] for k, r in runs.items() if k.startswith("project"))
    result["project_vs_transformers"] = best / best_hf
    result["project_vs_full_logits"] = (
        runs["project"]["tokens_per_s"] / runs["project_full_logits"]["tokens_per_s"]
    )
    result["project_fraction_of_gemm_peak"] = runs["project"]["flops_per_s"] / peak
    if args.json:
        print(json.dumps(result))
        return 0
    print(
        f"SmolLM2-135M fp32 on CPU ({result['threads']} threads, flags: {', '.join(result['cpu_bf16']) or 'no AVX-512'}), "
        f"{len(rows) - args.warmup} rows of {args.seq_len} tokens after {args.warmup} warm-up, "
        f"{result['loss_fraction']:.0%} of positions with loss"
    )
    print(f"  dense matmul peak: fp32 {result['gemm_fp32_flops_per_s'] / 1e9:.0f} GFLOP/s", end="")
    if args.bf16:
        print(f", bf16 {result['gemm_bf16_flops_per_s'] / 1e9:.0f} GFLOP/s", end="")
    print()
    for name, r in runs.items():
        print(
            f"  {name:<28} {r['tokens']:>6} tokens in {r['wall_s']:6.1f} s = {r['tokens_per_s']:6.1f} tokens/s, "
            f"{r['flops_per_s'] / 1e9:5.1f} GFLOP/s"
        )
    if args.bf16:
        print(
            f"  project bf16 vs fp32: {result['bf16_vs_fp32']:.2f}x, losses within "
            f"{result['bf16_loss_rel_diff']:.1%} of fp32's on the same rows"
        )
    print(
        f"  best project vs best transformers: {result['project_vs_transformers']:.2f}x; fp32 vs full logits: "
        f"{result['project_vs_full_logits']:.2f}x; {result['project_fraction_of_gemm_peak']:.0%} of the matmul peak"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
