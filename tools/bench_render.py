"""Benchmark of trace rendering: tokens rendered per second on realistic 4-turn traces.

Each trace has a system prompt, three task-specific tools, a multi-hop question, three assistant turns
with a think and one or two tool calls, encyclopedia-length observations, and a final
think/answer turn, which is the shape the synthesizer writes. Texts are drawn with a fixed seed.

    python tools/bench_render.py [--tokenizer smollm2-135m] [--traces 500] [--repeat 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

# Runnable from a checkout without an install.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mtr_hpc.models.tokenizers import load_tokenizer  # noqa: E402
from mtr_hpc.trace.model import Trace  # noqa: E402
from mtr_hpc.trace.render import ChatRenderer  # noqa: E402

SENTENCES = [
    "Arthur's Magazine (1844-1846) was an American literary periodical published in Philadelphia.",
    "First for Women is a woman's magazine published by Bauer Media Group in the USA.",
    "The magazine was started in 1989 and is based in Englewood Cliffs, New Jersey.",
    "He studied law at the University of Vienna before turning to composition in 1874.",
    "The river rises in the Alps and flows north for 1,233 kilometres to the North Sea.",
    "Her debut album, released in 2003, reached number two on the Billboard 200 chart.",
    "The film was directed by Jean Renoir and premiered at the Venice Film Festival in 1937.",
    "Zürich is the largest city in Switzerland and the capital of the canton of Zürich.",
    "The company was founded by two engineers in a garage in Palo Alto, California.",
    "During the war the building served as a military hospital and was badly damaged.",
]
QUESTIONS = [
    "Which magazine was started first, Arthur's Magazine or First for Women?",
    "Who directed the film that premiered at the festival founded in the director's birth year?",
    "Are the founders of both companies from the same country?",
    "In which city was the composer of the opera that premiered in 1874 born?",
]
TOOL_NAMES = ["search_encyclopedia", "lookup_founding_year", "compare_dates", "find_birthplace"]


def make_tool(name: str, rng: random.Random) -> dict:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": rng.choice(SENTENCES),
            "parameters": {
                "type": "object",
                "properties": {
                    "entity": {"type": "string", "description": "The entity to look up."},
                    "aspect": {"type": "string", "enum": ["date", "place", "person", "summary"]},
                },
                "required": ["entity"],
            },
        },
        "x-returns": {"type": "object", "properties": {"result": {"type": "string"}}},
    }


def make_trace(i: int, rng: random.Random) -> Trace:
    tools = [make_tool(n, rng) for n in rng.sample(TOOL_NAMES, 3)]
    messages = [
        {"role": "system", "content": "You answer multi-hop questions by calling tools."},
        {"role": "user", "content": rng.choice(QUESTIONS)},
    ]
    n_call = 0
    for _turn in range(3):
        calls = []
        for _ in range(rng.choice([1, 1, 2])):
            n_call += 1
            args = {"entity": " ".join(rng.choice(SENTENCES).split()[:3]), "aspect": "summary"}
            fn = {"name": rng.choice(tools)["function"]["name"], "arguments": json.dumps(args)}
            calls.append({"id": f"call_{n_call}", "type": "function", "function": fn})
        think = " ".join(rng.sample(SENTENCES, 2))
        messages.append({"role": "assistant", "content": f"<think>{think}</think>", "tool_calls": calls})
        for c in calls:
            obs = {"result": " ".join(rng.sample(SENTENCES, 5))}
            messages.append({"role": "tool", "tool_call_id": c["id"], "content": json.dumps(obs)})
    final = f"<think>{rng.choice(SENTENCES)}</think><answer>Arthur's Magazine</answer>"
    messages.append({"role": "assistant", "content": final})
    return Trace(f"bench-{i}", f"ex-{i}", "hotpotqa", tools, messages, "Arthur's Magazine")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokenizer", default="smollm2-135m", help="a model name, path, or test-bpe")
    ap.add_argument("--traces", type=int, default=500)
    ap.add_argument("--repeat", type=int, default=3, help="timed passes; the best is reported")
    ap.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    args = ap.parse_args(argv)

    renderer = ChatRenderer(load_tokenizer(args.tokenizer))
    rng = random.Random(0)
    traces = [make_trace(i, rng) for i in range(args.traces)]
    renderer.render(traces[0])  # warm-up
    best, tokens, masked = float("inf"), 0, 0
    for _ in range(max(1, args.repeat)):
        t0 = time.perf_counter()
        outs = [renderer.render(t) for t in traces]
        best = min(best, time.perf_counter() - t0)
        tokens = sum(len(o.input_ids) for o in outs)
        masked = sum(sum(o.loss_mask) for o in outs)
    result = {
        "tokenizer": args.tokenizer,
        "traces": len(traces),
        "tokens": tokens,
        "mean_tokens_per_trace": tokens / len(traces),
        "masked_fraction": masked / tokens,
        "seconds": best,
        "tokens_per_s": tokens / best,
        "traces_per_s": len(traces) / best,
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"{result['tokens_per_s']:,.0f} tokens/s, {result['traces_per_s']:,.0f} traces/s "
            f"({len(traces)} traces, {result['mean_tokens_per_trace']:.0f} tokens each, "
            f"{result['masked_fraction']:.1%} under the loss mask; tokenizer {args.tokenizer})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
