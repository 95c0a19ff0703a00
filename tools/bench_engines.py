"""The rollout engines side by side: transformers (the project's own) against vLLM, on the same
multi-turn episodes at the same precision, and a weight sync of each.

Episodes are `bench_rollout.episodes`: grounded traces of the shipped samples replayed turn by turn
(greedy, each turn at most as long as the trace's, then the trace's observations), driven through
`protocol.generate_continuous` as GRPO and eval drive them. Both engines stop a turn at the model's end
of turn, so they do the same work wherever they sample the same tokens (the share of episodes whose
final contexts are equal is printed). One engine is built at a time, in this order, each given all the
machine's cores; `--repeats` passes over the episodes each (vLLM's later passes reuse its prefix cache:
the first pass is the cold figure). The sync pushes every weight of the model (`update_weights`, as
GRPO's step ends) `--syncs` times; GB/s is bytes over the median time.

    .venv/bin/python tools/bench_engines.py [--dtype fp32] [--episodes 16] [--max-new-tokens 128]
        [--engines hf,vllm] [--repeats 1] [--syncs 3] [--threads 0] [--json]
    .venv/bin/python tools/bench_rollout.py --engines hf,vllm ...   (the same, from the rollout bench)
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tools"))

MODEL = "smollm2-135m"


def build(name: str, dtype: str, slots: int, threads: int):
    import torch

    from mtr_hpc.rollout import HFRolloutEngine
    from mtr_hpc.rollout.vllm_cpu import machine_threads

    if name == "hf":
        torch.set_num_threads(threads or machine_threads())
        return HFRolloutEngine(MODEL, dtype=dtype, batch_size=slots)
    from mtr_hpc.rollout.vllm_engine import VLLMRolloutEngine

    return VLLMRolloutEngine(
        MODEL, dtype=dtype, max_model_len=4096, enable_sleep_mode=False, threads=threads or None
    )


def sync_figures(engine, weights: list, syncs: int) -> dict:
    times, info = [], {}
    for _ in range(syncs):
        t0 = time.perf_counter()
        info = engine.update_weights(weights)
        times.append(time.perf_counter() - t0)
    median = statistics.median(times)
    return {"sync_s": median, "sync_gb": info["bytes"] / 1e9, "sync_gb_per_s": info["bytes"] / 1e9 / median}


def bench(args) -> dict:
    import torch
    from bench_rollout import episodes, multi_turn

    from mtr_hpc.models.registry import load_tokenizer
    from mtr_hpc.precision import resolve_dtype, torch_dtype

    dtype = resolve_dtype(args.dtype, "cpu").dtype
    eps = episodes(load_tokenizer(MODEL), args.episodes)
    from transformers import AutoModelForCausalLM

    from mtr_hpc.models.registry import resolve_model

    trainer = AutoModelForCausalLM.from_pretrained(resolve_model(MODEL), dtype=torch_dtype(dtype))
    weights = [(n, p.detach()) for n, p in trainer.named_parameters()]
    runs, contexts = {}, {}
    for name in args.engines.split(","):
        t0 = time.perf_counter()
        engine = build(name, dtype, args.episodes, args.threads)
        build_s = time.perf_counter() - t0
        passes = [multi_turn(engine, eps, args.max_new_tokens) for _ in range(args.repeats)]
        contexts[name] = passes[0]["contexts"]
        runs[name] = {
            "build_s": build_s,
            "tokens": passes[0]["tokens"],
            "tokens_per_s": [p["tokens_per_s"] for p in passes],
            "threads": torch.get_num_threads(),
            **sync_figures(engine, weights, args.syncs),
        }
        engine.close()
        del engine
    names = list(runs)
    base = names[0]
    return {
        "model": MODEL,
        "dtype": dtype,
        "episodes": args.episodes,
        "max_new_tokens_per_turn": args.max_new_tokens,
        "runs": runs,
        "speedup_vs_" + base: {n: runs[n]["tokens_per_s"][0] / runs[base]["tokens_per_s"][0] for n in names},
        "same_episodes_as_" + base: {
            n: sum(a == b for a, b in zip(contexts[base], contexts[n], strict=True)) / len(eps) for n in names
        },
    }


def report(result: dict) -> None:
    names = list(result["runs"])
    base = names[0]
    print(
        f"SmolLM2-135M {result['dtype']}: {result['episodes']} episodes, at most "
        f"{result['max_new_tokens_per_turn']} new tokens a turn"
    )
    for n in names:
        r = result["runs"][n]
        passes = " / ".join(f"{t:.1f}" for t in r["tokens_per_s"])
        print(
            f"  {n:<5} build {r['build_s']:5.1f} s, {r['tokens']:>5} tokens, {passes} tokens/s "
            f"({r['threads']} threads); sync of {r['sync_gb']:.2f} GB in {r['sync_s']:.3f} s = "
            f"{r['sync_gb_per_s']:.2f} GB/s"
        )
    for n in names[1:]:
        print(
            f"  {n} vs {base}: {result['speedup_vs_' + base][n]:.2f}x tokens/s (first pass), same episodes "
            f"{result['same_episodes_as_' + base][n]:.0%}"
        )


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engines", default="hf,vllm")
    ap.add_argument("--dtype", default="fp32", help="fp32, bf16 or auto (this CPU's choice)")
    ap.add_argument("--episodes", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=1, help="passes over the episodes per engine")
    ap.add_argument("--syncs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads of each engine (0: every core)")
    ap.add_argument("--json", action="store_true")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    result = bench(args)
    print(json.dumps(result)) if args.json else report(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
