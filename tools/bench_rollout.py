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

`--dtypes fp32,auto` (with `--multi-turn`): the engine alone at each precision on the same episodes,
side by side (`auto` is what `dtype: auto` picks on this CPU), with each run's roofline: the time the
forward passes it made would take at this machine's measured matrix-product peak (per dtype) and memory
bandwidth, each pass bound by the slower of the two (decode steps read every weight). Prints tokens/s,
the speedup over the first dtype, the share of episodes with the same tokens, and measured / roofline.
`--ctranslate2` adds CTranslate2 (an optional install, skipped without it) on the episodes' first
turns: their prompts, greedy, `--max-new-tokens` each, batch `--slots`, float32 and int8, against this
engine at each dtype on the same token ids.

    .venv/bin/python tools/bench_rollout.py --multi-turn --dtypes fp32,auto [--ctranslate2] [--json]

`--data-parallel`: GRPO's rollout phase with one data-parallel rank against two, each rolling out its
share of the prompts with its own engine (`torchrun -m mtr_hpc.cli grpo`, gloo). The tiny random Llama
of `configs/grpo-tiny.yaml` rolls out `--prompts` prompts of 4 episodes a step for 3 steps; every rank
gets half the CPU's cores in both runs (on a CPU shared with other work, more threads per rank than it
gets cores make each op wait for descheduled threads, which would flatter the 2-rank run). Prints the
mean `timing_s/rollout` of the last two steps for each.

    .venv/bin/python tools/bench_rollout.py --data-parallel [--prompts 8] [--json]

`--engines hf,vllm`: this engine against vLLM on the same episodes and precision, and a weight sync of
each (`tools/bench_engines.py`, which takes the same flags).
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


class PassCounter:
    """Counts the forward passes of a transformers model: tokens fed and KV positions read per pass."""

    def __init__(self, model):
        self.passes: list[tuple[int, int, int]] = []  # (rows, new tokens a row, KV length)
        model.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs):
        ids = kwargs.get("input_ids")
        if ids is None:
            return
        pos = kwargs.get("position_ids")
        kv = int(pos.max()) + 1 if pos is not None else ids.shape[1]
        self.passes.append((int(ids.shape[0]), int(ids.shape[1]), kv))


def machine_limits(dtype) -> dict:
    """This machine's dense matrix-product peak in `dtype` (FLOP/s) and memory bandwidth (bytes/s, a
    large copy), measured now."""
    import torch

    n = 2048
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(5))
    src = torch.empty(256 * 2**20 // 4, dtype=torch.float32).fill_(1.0)
    dst = torch.empty_like(src)
    copy = min(_timed(lambda: dst.copy_(src)) for _ in range(5))
    return {"flops_per_s": 2 * n**3 / best, "bytes_per_s": 2 * src.numel() * 4 / copy}


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def roofline_s(passes, model, limits: dict) -> float:
    """The least time the counted passes take: each bound by its FLOPs at the matmul peak or by the bytes
    it must read (every weight, and each row's KV) at the memory bandwidth, whichever is slower. Prefill
    computes logits for its last position only (`logits_to_keep=1`); a decode step for every row."""
    cfg = model.config
    el = next(model.parameters()).element_size()
    n_params = sum(p.numel() for p in model.parameters())
    head = cfg.vocab_size * cfg.hidden_size
    body = n_params - head * (1 if cfg.tie_word_embeddings else 2)
    kv_per_pos = (
        2 * cfg.num_hidden_layers * cfg.num_key_value_heads * (cfg.hidden_size // cfg.num_attention_heads)
    )
    total = 0.0
    for rows, new, kv in passes:
        tokens = rows * new
        attn = 4 * cfg.num_hidden_layers * cfg.hidden_size * rows * new * kv  # QK^T and AV
        flops = 2 * body * tokens + 2 * head * rows + attn
        reads = (n_params - (head if cfg.tie_word_embeddings else 0)) * el + rows * kv * kv_per_pos * el
        total += max(flops / limits["flops_per_s"], reads / limits["bytes_per_s"])
    return total


def bench_dtypes(args) -> dict:
    """The engine alone at each of `--dtypes` on the same episodes (see the module docstring)."""
    import torch

    from mtr_hpc.precision import resolve_dtype, torch_dtype

    slots = args.slots or args.episodes
    runs, contexts = {}, {}
    eps = None
    for name in args.dtypes.split(","):
        chosen = resolve_dtype(name, args.device)
        engine = HFRolloutEngine("smollm2-135m", device=args.device, dtype=name, eos_token_ids=[],
                                 batch_size=slots)  # fmt: skip
        eps = eps or episodes(engine.tokenizer, args.episodes)
        counter = PassCounter(engine.model)
        r = multi_turn(engine, eps, args.max_new_tokens)
        contexts[name] = r.pop("contexts")
        limits = machine_limits(torch_dtype(chosen.dtype))
        r.update(dtype=chosen.dtype, reason=chosen.reason, passes=len(counter.passes),
                 roofline_s=roofline_s(counter.passes, engine.model, limits),
                 gemm_flops_per_s=limits["flops_per_s"], copy_bytes_per_s=limits["bytes_per_s"])  # fmt: skip
        r["wall_vs_roofline"] = r["wall_s"] / r["roofline_s"]
        if args.ctranslate2:
            r["first_turns"] = first_turns(engine, eps, args.max_new_tokens, slots)
        runs[name] = r
        del engine
    names = list(runs)
    base = names[0]
    result = {
        "model": "smollm2-135m",
        "threads": torch.get_num_threads(),
        "episodes": args.episodes,
        "slots": slots,
        "max_new_tokens_per_turn": args.max_new_tokens,
        "runs": runs,
        "speedup_vs_" + base: {n: runs[n]["tokens_per_s"] / runs[base]["tokens_per_s"] for n in names},
        "same_episodes_as_" + base: {
            n: sum(a == b for a, b in zip(contexts[base], contexts[n], strict=True)) / len(eps) for n in names
        },
    }
    if args.ctranslate2:
        result["ctranslate2"] = bench_ctranslate2(eps, args.max_new_tokens, slots)
    return result


def first_turns(engine, eps, max_new: int, batch: int) -> dict:
    """The episodes' first prompts, greedy, exactly `max_new` tokens each (no stop), `batch` at once."""
    engine.batch_size = batch
    params = [SamplingParams(max_new_tokens=max_new, temperature=0) for _ in eps]
    t0 = time.perf_counter()
    outs = engine.generate([list(e["prompt"]) for e in eps], params)
    wall = time.perf_counter() - t0
    tokens = sum(len(o.token_ids) for o in outs)
    return {"tokens": tokens, "wall_s": wall, "tokens_per_s": tokens / wall,
            "token_ids": [o.token_ids for o in outs]}  # fmt: skip


def bench_ctranslate2(eps, max_new: int, batch: int) -> dict:
    """CTranslate2's `Generator` on the same first prompts (token ids in, greedy, no end token), in
    float32 and int8; None when CTranslate2 is not installed."""
    try:
        import ctranslate2
        from ctranslate2.converters import TransformersConverter
    except ImportError:
        return {"skipped": "ctranslate2 is not installed (pip install ctranslate2)"}
    import tempfile

    from transformers import AutoTokenizer

    from mtr_hpc.models.registry import resolve_model

    path = resolve_model("smollm2-135m")
    tok = AutoTokenizer.from_pretrained(path)
    out = {"version": ctranslate2.__version__}
    with tempfile.TemporaryDirectory() as tmp:
        TransformersConverter(str(path)).convert(tmp, quantization="float32", force=True)
        for compute in ("float32", "int8"):
            gen = ctranslate2.Generator(tmp, device="cpu", compute_type=compute)
            prompts = [tok.convert_ids_to_tokens(list(e["prompt"])) for e in eps]
            t0 = time.perf_counter()
            res = gen.generate_batch(prompts, max_batch_size=batch, max_length=max_new, min_length=max_new,
                                     sampling_topk=1, include_prompt_in_result=False, end_token=[])  # fmt: skip
            wall = time.perf_counter() - t0
            ids = [r.sequences_ids[0] for r in res]
            tokens = sum(map(len, ids))
            out[compute] = {"tokens": tokens, "wall_s": wall, "tokens_per_s": tokens / wall, "token_ids": ids}
            del gen
    return out


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
    if any(a.startswith("--engines") for a in sys.argv[1:]):  # transformers vs vLLM: bench_engines.py
        sys.path.insert(0, str(REPO / "tools"))
        from bench_engines import main as engines_main

        return engines_main(sys.argv[1:])
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
    ap.add_argument("--dtypes", default="", help="--multi-turn: the engine alone at each, e.g. fp32,auto")
    ap.add_argument("--ctranslate2", action="store_true", help="--dtypes: also CTranslate2 (if installed)")
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
    if args.multi_turn and args.dtypes:
        result = bench_dtypes(args)
        if args.json:
            print(json.dumps(_without_ids(result)))
        else:
            print_dtypes(result, args)
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


def _without_ids(result: dict) -> dict:
    """The result without token ids (compared, not printed)."""
    out = json.loads(json.dumps(result))
    for r in out["runs"].values():
        r.get("first_turns", {}).pop("token_ids", None)
    for r in out.get("ctranslate2", {}).values():
        if isinstance(r, dict):
            r.pop("token_ids", None)
    return out


def print_dtypes(result: dict, args) -> None:
    runs = result["runs"]
    base = next(iter(runs))
    print(
        f"SmolLM2-135M on {args.device} ({result['threads']} threads): {result['episodes']} episodes on "
        f"{result['slots']} slots, up to {result['max_new_tokens_per_turn']} new tokens a turn"
    )
    for name, r in runs.items():
        print(
            f"  engine {name:<5} ({r['dtype']}: {r['reason']})\n"
            f"    {r['tokens']:>6} tokens in {r['wall_s']:7.1f} s = {r['tokens_per_s']:6.1f} tokens/s, "
            f"{result['speedup_vs_' + base][name]:.2f}x {base}; same episodes as {base}: "
            f"{result['same_episodes_as_' + base][name]:.0%}\n"
            f"    roofline {r['roofline_s']:.1f} s over {r['passes']} passes (matmul "
            f"{r['gemm_flops_per_s'] / 1e9:.0f} GFLOP/s, copy {r['copy_bytes_per_s'] / 1e9:.1f} GB/s): "
            f"measured / roofline {r['wall_vs_roofline']:.2f}"
        )
    ct2 = result.get("ctranslate2")
    if ct2 is None:
        return
    print(f"  first turns, batch {result['slots']}, {args.max_new_tokens} greedy tokens each:")
    for name, r in runs.items():
        ft = r["first_turns"]
        print(f"    engine {name:<12} {ft['tokens_per_s']:6.1f} tokens/s")
    if "skipped" in ct2:
        print(f"    CTranslate2: {ct2['skipped']}")
        return
    ref = runs[base]["first_turns"]["token_ids"]
    for compute in ("float32", "int8"):
        r = ct2[compute]
        same = sum(a == b for a, b in zip(ref, r["token_ids"], strict=True)) / len(ref)
        print(
            f"    CTranslate2 {ct2['version']} {compute:<7} {r['tokens_per_s']:6.1f} tokens/s "
            f"(same tokens as engine {base}: {same:.0%})"
        )


if __name__ == "__main__":
    raise SystemExit(main())
