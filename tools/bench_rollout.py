"""Rollout throughput of the transformers engine: generated tokens/s at batch sizes 1, 4 and 16.

Loads SmolLM2-135M-Instruct (fp32, CPU by default), builds ChatML prompts of different lengths, and
for each batch size generates one batch of that many rollouts (temperature 1, seeded) of exactly
`--max-new-tokens` tokens (end-of-turn is not a stop here, so every size does the same work per row).
Prints tokens/s per batch size; one warm-up batch runs first.

    .venv/bin/python tools/bench_rollout.py [--batch-sizes 1,4,16] [--max-new-tokens 32] [--device cpu]
        [--threads N] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mtr_hpc.rollout import HFRolloutEngine, SamplingParams  # noqa: E402

QUESTIONS = [
    "Who wrote the novel that the film Blade Runner is based on?",
    "Which river flows through the capital of Hungary?",
    "Were Scott Derrickson and Ed Wood of the same nationality?",
    "What is the population of the town where the Eiffel Tower's designer was born?",
]


def prompts(tokenizer, n: int) -> list[list[int]]:
    out = []
    for i in range(n):
        q = QUESTIONS[i % len(QUESTIONS)] + " Think step by step." * (i % 3)
        ids = tokenizer.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True)
        out.append(list(ids["input_ids"] if hasattr(ids, "keys") else ids))
    return out


def measure(engine: HFRolloutEngine, batch: int, max_new: int) -> dict:
    engine.batch_size = batch
    reqs = prompts(engine.tokenizer, batch)
    params = [SamplingParams(max_new_tokens=max_new, temperature=1.0, seed=i) for i in range(batch)]
    t0 = time.perf_counter()
    outs = engine.generate(reqs, params)
    wall = time.perf_counter() - t0
    tokens = sum(len(o.token_ids) for o in outs)
    return {"batch": batch, "tokens": tokens, "wall_s": wall, "tokens_per_s": tokens / wall}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch-sizes", default="1,4,16")
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="fp32")
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    import torch

    if args.threads:
        # On a shared, oversubscribed CPU, OpenMP threads spin at barriers waiting for descheduled peers.
        torch.set_num_threads(args.threads)
    engine = HFRolloutEngine("smollm2-135m", device=args.device, dtype=args.dtype, eos_token_ids=[])
    measure(engine, 2, 4)  # warm-up: first-call allocations and kernel selection
    rows = [measure(engine, int(b), args.max_new_tokens) for b in args.batch_sizes.split(",")]
    result = {
        "model": "smollm2-135m",
        "device": args.device,
        "dtype": args.dtype,
        "threads": torch.get_num_threads(),
        "max_new_tokens": args.max_new_tokens,
        "runs": rows,
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"SmolLM2-135M {args.dtype} on {args.device} ({result['threads']} threads), "
            f"{args.max_new_tokens} new tokens per rollout"
        )
        for r in rows:
            print(
                f"  batch {r['batch']:>3}: {r['tokens']:>5} tokens in {r['wall_s']:6.2f} s = "
                f"{r['tokens_per_s']:7.1f} tokens/s"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
