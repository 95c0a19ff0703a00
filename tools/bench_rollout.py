"""Rollout throughput of the transformers engine.

Single turn (default): loads SmolLM2-135M-Instruct (fp32, CPU by default), builds ChatML prompts of
different lengths, and for each batch size generates one batch of that many rollouts (temperature 1,
seeded) of exactly `--max-new-tokens` tokens (end-of-turn is not a stop here, so every size does the
same work per row). Prints tokens/s per batch size; one warm-up batch runs first.

`--multi-turn`: the work of tool-use episodes. Grounded traces are synthesized from the shipped samples
(compact tool listings, as the demo trains on); each episode starts from its trace's prompt, and every
turn generates greedily as many tokens as the trace's own turn has (at most `--max-new-tokens`), then
appends that trace's next observations, until they run out. Three drivers do the same turns side by
side: this engine with continuous batching (an episode's next turn joins the batch as soon as its
previous turn ends), this engine in rounds (one `generate` call per turn round, each waiting for its
longest turn; prefix cache on in both), and transformers `model.generate` re-prompted each round with
the whole contexts. `--slots` bounds the rows decoding at once (the engine's `batch_size`, the
transformers batch). Prints generated tokens/s of each, the ratios, and whether all three produced the
same tokens.

    .venv/bin/python tools/bench_rollout.py [--batch-sizes 1,4,16] [--max-new-tokens 32] [--device cpu]
        [--threads N] [--json]
    .venv/bin/python tools/bench_rollout.py --multi-turn [--episodes 16] [--slots 0] [--max-new-tokens 256]
        [--json]

`--data-parallel`: GRPO's rollout phase with one data-parallel rank against two, each rolling out its
share of the prompts with its own engine (`torchrun -m mtr_hpc.cli grpo`, gloo). The tiny random Llama
of `configs/grpo-tiny.yaml` rolls out `--prompts` prompts of 4 episodes a step for 3 steps; every rank
gets half the CPU's cores in both runs (on a CPU shared with other work, more threads per rank than it
gets cores make each op wait for descheduled threads, which would flatter the 2-rank run). Prints the
mean `timing_s/rollout` of the last two steps for each.

    .venv/bin/python tools/bench_rollout.py --data-parallel [--prompts 8] [--json]
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


def episodes(tokenizer, n: int) -> list[dict]:
    """`n` grounded traces (all benchmarks) as episodes to replay: the prompt ids, the observation ids
    after each assistant turn, and each assistant turn's length in tokens (end-of-turn included)."""
    from mtr_hpc.data import load_sample
    from mtr_hpc.synth import SynthAgents, SynthConfig
    from mtr_hpc.synth.filtering import synthesize_example
    from mtr_hpc.trace.render import ChatRenderer

    renderer = ChatRenderer(tokenizer, tools_format="compact")
    agents = SynthAgents.build(SynthConfig())
    out = []
    benches = ["hotpotqa", "musique", "2wiki", "bamboogle"]
    samples = {b: load_sample(b) for b in benches}
    for i in range(n):
        ex = samples[benches[i % 4]][i // 4]
        trace, _ = synthesize_example(ex, SynthConfig(), agents)
        msgs = trace.messages
        first = next(k for k, m in enumerate(msgs) if m["role"] == "assistant")
        obs, turns, k = [], [], first
        while k < len(msgs):
            text = renderer.assistant_turn_text(msgs[k])
            turns.append(len(tokenizer.encode(text, add_special_tokens=False)) + 1)
            j = k + 1
            while j < len(msgs) and msgs[j]["role"] == "tool":
                j += 1
            if j > k + 1:
                obs.append(renderer.render_observations(msgs[k + 1 : j]))
            k = j
        out.append({"prompt": renderer.render_prefix(msgs[:first], trace.tools), "obs": obs, "turns": turns})
    return out


def multi_turn(engine, eps, max_new: int) -> dict:
    """Replay every episode through `protocol.generate_continuous`: each turn greedy, as long as the
    trace's turn (at most `max_new`), then the trace's observations. Tokens/s and the final contexts."""
    from mtr_hpc.rollout.protocol import generate_continuous

    contexts = [list(e["prompt"]) for e in eps]
    turn = [0] * len(eps)
    tokens = 0

    def params(i: int) -> SamplingParams:
        return SamplingParams(max_new_tokens=min(max_new, eps[i]["turns"][turn[i]]), temperature=0)

    def follow_up(i: int, gen):
        nonlocal tokens
        tokens += len(gen.token_ids)
        obs = eps[i]["obs"]
        contexts[i] = contexts[i] + gen.token_ids + (obs[turn[i]] if turn[i] < len(obs) else [])
        turn[i] += 1
        return (contexts[i], params(i)) if turn[i] <= len(obs) else None

    t0 = time.perf_counter()
    generate_continuous(engine, [list(c) for c in contexts], [params(i) for i in range(len(eps))], follow_up)
    wall = time.perf_counter() - t0
    return {"tokens": tokens, "wall_s": wall, "tokens_per_s": tokens / wall, "contexts": contexts}


class InRounds:
    """An engine seen through `generate` only, so `generate_continuous` drives it in rounds."""

    def __init__(self, engine):
        self.generate = engine.generate


class TransformersGenerate:
    """transformers `model.generate`, greedy, re-prompted with the whole context every round; a round's
    batch runs as long as its longest turn (each row keeps its own turn's tokens)."""

    def __init__(self, model, pad_id: int, batch: int):
        self.model, self.pad_id, self.batch = model, pad_id, batch

    def generate(self, prompts, params):
        import torch

        from mtr_hpc.rollout import Generation

        out = []
        for s in range(0, len(prompts), self.batch):
            chunk, plist = prompts[s : s + self.batch], params[s : s + self.batch]
            longest = max(p.max_new_tokens for p in plist)
            width = max(len(p) for p in chunk)
            ids = torch.tensor([[self.pad_id] * (width - len(p)) + p for p in chunk])
            mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in chunk])
            with torch.inference_mode():
                gen = self.model.generate(
                    input_ids=ids, attention_mask=mask, max_new_tokens=longest, min_new_tokens=longest,
                    do_sample=False, pad_token_id=self.pad_id, eos_token_id=None,
                )  # fmt: skip
            for row, p in zip(gen[:, width:].tolist(), plist, strict=True):
                out.append(Generation(row[: p.max_new_tokens], [0.0] * p.max_new_tokens, "length"))
        return out


def bench_multi_turn(args) -> dict:
    import torch

    slots = args.slots or args.episodes
    engine = HFRolloutEngine("smollm2-135m", device=args.device, dtype=args.dtype, eos_token_ids=[],
                             batch_size=slots)  # fmt: skip
    eps = episodes(engine.tokenizer, args.episodes)
    engine.model.generation_config.eos_token_id = None
    runs = {
        "engine": multi_turn(engine, eps, args.max_new_tokens),
        "engine_in_rounds": multi_turn(InRounds(engine), eps, args.max_new_tokens),
        "transformers_generate": multi_turn(
            TransformersGenerate(engine.model, 0, slots), eps, args.max_new_tokens
        ),
    }
    same = len({str(r.pop("contexts")) for r in runs.values()}) == 1
    base = runs["transformers_generate"]["tokens_per_s"]
    turns = [min(t, args.max_new_tokens) for e in eps for t in e["turns"]]
    return {
        "model": "smollm2-135m",
        "device": args.device,
        "dtype": args.dtype,
        "threads": torch.get_num_threads(),
        "episodes": args.episodes,
        "slots": slots,
        "turns_per_episode": len(turns) / len(eps),
        "turn_tokens_min_mean_max": [min(turns), sum(turns) / len(turns), max(turns)],
        "context_tokens_at_end": sum(
            len(e["prompt"]) + sum(map(len, e["obs"])) + sum(min(t, args.max_new_tokens) for t in e["turns"])
            for e in eps
        )
        / len(eps),
        "max_new_tokens_per_turn": args.max_new_tokens,
        "runs": runs,
        "speedup_vs_transformers_generate": runs["engine"]["tokens_per_s"] / base,
        "speedup_vs_rounds": runs["engine"]["tokens_per_s"] / runs["engine_in_rounds"]["tokens_per_s"],
        "same_tokens": same,
    }


def bench_data_parallel(args) -> dict:
    import os
    import subprocess
    import tempfile

    from mtr_hpc.tracking import read_metrics

    threads = max(1, (os.cpu_count() or 1) // 2)
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for world in (1, 2):
            out = Path(tmp) / f"dp{world}"
            cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={world}"]
            cmd += [
                "-m",
                "mtr_hpc.cli",
                "grpo",
                "--config",
                str(REPO / "configs/grpo-tiny.yaml"),
                "--out",
                str(out),
            ]
            cmd += [f"model.hf={REPO / 'configs/models/tiny-llama'}", "export_hf=false", "train.steps=3"]
            cmd += [f"algo.prompts_per_step={args.prompts}", "algo.group_size=4", "env.max_turn_tokens=64"]
            cmd += ["rollout.batch_size=64", "train.save_every=3"]
            env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(REPO)}
            subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            rows = read_metrics(out)[1:]  # the first step warms up
            runs[f"dp{world}"] = {
                "ranks": world,
                "threads_per_rank": threads,
                "rollout_s": sum(r["timing_s/rollout"] for r in rows) / len(rows),
                "episodes_per_step": args.prompts * 4,
            }
    return {"runs": runs, "speedup": runs["dp1"]["rollout_s"] / runs["dp2"]["rollout_s"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch-sizes", default="1,4,16")
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="fp32")
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--multi-turn", action="store_true", help="tool-use episodes, vs transformers generate")
    ap.add_argument("--data-parallel", action="store_true", help="GRPO rollouts on 1 rank vs 2")
    ap.add_argument("--prompts", type=int, default=8, help="--data-parallel: prompts a step")
    ap.add_argument("--episodes", type=int, default=16, help="--multi-turn: episodes")
    ap.add_argument(
        "--slots", type=int, default=0, help="--multi-turn: rows decoding at once (0: all episodes)"
    )
    args = ap.parse_args()

    import torch

    if args.threads:
        # On a shared, oversubscribed CPU, OpenMP threads spin at barriers waiting for descheduled peers.
        torch.set_num_threads(args.threads)
    if args.data_parallel:
        result = bench_data_parallel(args)
        if args.json:
            print(json.dumps(result))
        else:
            for r in result["runs"].values():
                print(
                    f"  {r['ranks']} rank(s) x {r['threads_per_rank']} threads: rollout phase "
                    f"{r['rollout_s']:.2f} s for {r['episodes_per_step']} episodes"
                )
            print(f"  2 ranks vs 1: {result['speedup']:.2f}x")
        return 0
    if args.multi_turn:
        result = bench_multi_turn(args)
        if args.json:
            print(json.dumps(result))
        else:
            print(
                f"SmolLM2-135M {args.dtype} on {args.device} ({result['threads']} threads): {args.episodes} "
                f"episodes on {result['slots']} slots, {result['turns_per_episode']:.1f} turns each, {args.max_new_tokens} new tokens a "
                f"turn, {result['context_tokens_at_end']:.0f} context tokens at the end"
            )
            for name, r in result["runs"].items():
                print(
                    f"  {name:<24} {r['tokens']:>6} tokens in {r['wall_s']:7.1f} s = {r['tokens_per_s']:6.1f} tokens/s"
                )
            print(
                f"  engine vs transformers generate: {result['speedup_vs_transformers_generate']:.2f}x; "
                f"vs the engine in rounds: {result['speedup_vs_rounds']:.2f}x; "
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
