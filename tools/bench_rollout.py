"""Rollout throughput of the transformers engine.

Single turn (default): loads SmolLM2-135M-Instruct (fp32, CPU by default), builds ChatML prompts of
different lengths, and for each batch size generates one batch of that many rollouts (temperature 1,
seeded) of exactly `--max-new-tokens` tokens (end-of-turn is not a stop here, so every size does the
same work per row). Prints tokens/s per batch size; one warm-up batch runs first.

`--multi-turn`: the work of tool-use episodes. Grounded traces are synthesized from the shipped samples;
each episode starts from its trace's prompt, and every turn generates `--max-new-tokens` greedy tokens
and then appends that trace's next observations, until its observations run out. Three engines do the
same turns side by side: this engine (prefix cache: each episode's KV is kept from one turn to the
next), this engine with the prefix cache off (re-prefills the whole context every turn), and
transformers `model.generate` re-prompted each turn with the same contexts. Prints generated tokens/s
of each, the ratios, and whether all three produced the same tokens.

    .venv/bin/python tools/bench_rollout.py [--batch-sizes 1,4,16] [--max-new-tokens 32] [--device cpu]
        [--threads N] [--json]
    .venv/bin/python tools/bench_rollout.py --multi-turn [--episodes 16] [--max-new-tokens 48] [--json]
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


def episodes(tokenizer, n: int) -> list[tuple[list[int], list[list[int]]]]:
    """(prompt ids, observation ids after each assistant turn) of `n` grounded traces (all benchmarks)."""
    from mtr_hpc.data import load_sample
    from mtr_hpc.synth import SynthAgents, SynthConfig
    from mtr_hpc.synth.filtering import synthesize_example
    from mtr_hpc.trace.render import ChatRenderer

    renderer = ChatRenderer(tokenizer)
    agents = SynthAgents.build(SynthConfig())
    out = []
    benches = ["hotpotqa", "musique", "2wiki", "bamboogle"]
    samples = {b: load_sample(b) for b in benches}
    for i in range(n):
        ex = samples[benches[i % 4]][i // 4]
        trace, _ = synthesize_example(ex, SynthConfig(), agents)
        msgs = trace.messages
        first = next(k for k, m in enumerate(msgs) if m["role"] == "assistant")
        obs, k = [], first
        while k < len(msgs):
            j = k + 1
            while j < len(msgs) and msgs[j]["role"] == "tool":
                j += 1
            if j > k + 1:
                obs.append(renderer.render_observations(msgs[k + 1 : j]))
            k = j
        out.append((renderer.render_prefix(msgs[:first], trace.tools), obs))
    return out


def multi_turn(generate, eps, max_new: int) -> dict:
    """Run every episode's turns with `generate(contexts) -> token lists`; tokens/s and the contexts."""
    contexts = [p for p, _ in eps]
    tokens = 0
    t0 = time.perf_counter()
    for turn in range(max(len(o) for _, o in eps) + 1):
        active = [i for i, (_, o) in enumerate(eps) if turn <= len(o)]
        outs = generate([contexts[i] for i in active], max_new)
        for i, ids in zip(active, outs, strict=True):
            tokens += len(ids)
            contexts[i] = contexts[i] + ids + (eps[i][1][turn] if turn < len(eps[i][1]) else [])
    wall = time.perf_counter() - t0
    return {"tokens": tokens, "wall_s": wall, "tokens_per_s": tokens / wall, "contexts": contexts}


def hf_generate(model, pad_id: int, batch: int):
    """transformers `generate`, greedy, exactly `max_new` tokens, re-prompted with the whole context."""
    import torch

    def run(prompts, max_new):
        outs = []
        for s in range(0, len(prompts), batch):
            chunk = prompts[s : s + batch]
            width = max(len(p) for p in chunk)
            ids = torch.tensor([[pad_id] * (width - len(p)) + p for p in chunk])
            mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in chunk])
            with torch.inference_mode():
                gen = model.generate(
                    input_ids=ids, attention_mask=mask, max_new_tokens=max_new, min_new_tokens=max_new,
                    do_sample=False, pad_token_id=pad_id, eos_token_id=None,
                )  # fmt: skip
            outs += gen[:, width:].tolist()
        return outs

    return run


def bench_multi_turn(args) -> dict:
    import torch

    engine = HFRolloutEngine("smollm2-135m", device=args.device, dtype=args.dtype, eos_token_ids=[],
                             batch_size=args.episodes)  # fmt: skip
    bare = HFRolloutEngine(engine.model, tokenizer=engine.tokenizer, eos_token_ids=[], batch_size=args.episodes,
                           prefix_cache_gb=0)  # fmt: skip
    eps = episodes(engine.tokenizer, args.episodes)
    params = SamplingParams(max_new_tokens=args.max_new_tokens, temperature=0)

    def via(e):
        return lambda prompts, n: [g.token_ids for g in e.generate(prompts, params)]

    engine.model.generation_config.eos_token_id = None
    runs = {
        "engine": multi_turn(via(engine), eps, args.max_new_tokens),
        "engine_no_prefix_cache": multi_turn(via(bare), eps, args.max_new_tokens),
        "transformers_generate": multi_turn(
            hf_generate(engine.model, 0, args.episodes), eps, args.max_new_tokens
        ),
    }
    same = len({str(r.pop("contexts")) for r in runs.values()}) == 1
    base = runs["transformers_generate"]["tokens_per_s"]
    return {
        "model": "smollm2-135m",
        "device": args.device,
        "dtype": args.dtype,
        "threads": torch.get_num_threads(),
        "episodes": args.episodes,
        "turns_per_episode": sum(len(o) + 1 for _, o in eps) / len(eps),
        "context_tokens_at_end": sum(len(p) + sum(len(x) for x in o) for p, o in eps) / len(eps)
        + args.max_new_tokens * sum(len(o) + 1 for _, o in eps) / len(eps),
        "max_new_tokens_per_turn": args.max_new_tokens,
        "runs": runs,
        "speedup_vs_transformers_generate": runs["engine"]["tokens_per_s"] / base,
        "speedup_vs_no_prefix_cache": runs["engine"]["tokens_per_s"]
        / runs["engine_no_prefix_cache"]["tokens_per_s"],
        "same_tokens": same,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch-sizes", default="1,4,16")
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="fp32")
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--multi-turn", action="store_true", help="tool-use episodes, vs transformers generate")
    ap.add_argument("--episodes", type=int, default=16, help="--multi-turn: episodes, all in one batch")
    args = ap.parse_args()

    import torch

    if args.threads:
        # On a shared, oversubscribed CPU, OpenMP threads spin at barriers waiting for descheduled peers.
        torch.set_num_threads(args.threads)
    if args.multi_turn:
        result = bench_multi_turn(args)
        if args.json:
            print(json.dumps(result))
        else:
            print(
                f"SmolLM2-135M {args.dtype} on {args.device} ({result['threads']} threads): {args.episodes} "
                f"episodes, {result['turns_per_episode']:.1f} turns each, {args.max_new_tokens} new tokens a "
                f"turn, {result['context_tokens_at_end']:.0f} context tokens at the end"
            )
            for name, r in result["runs"].items():
                print(
                    f"  {name:<24} {r['tokens']:>6} tokens in {r['wall_s']:7.1f} s = {r['tokens_per_s']:6.1f} tokens/s"
                )
            print(
                f"  engine vs transformers generate: {result['speedup_vs_transformers_generate']:.2f}x; "
                f"vs no prefix cache: {result['speedup_vs_no_prefix_cache']:.2f}x; "
                f"same tokens: {result['same_tokens']}"
            )
        return 0
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
