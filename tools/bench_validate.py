"""Throughput of trace validation and of the turn parser (single process).

Builds realistic traces in memory (3-4 assistant turns, 2-4 tools with `x-returns`, one or two calls a
turn) and reports traces validated per second and assistant turns parsed per second. Two trace
populations are timed: tool sets shared across traces (as when one ToolMaker interface serves a task
family; schema checks hit the cache) and a fresh tool set per trace (every schema is new).

    python tools/bench_validate.py [--traces 2000] [--seed 0] [--json]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mtr_hpc.trace import Trace, parse_turn, validate_trace  # noqa: E402

_TOOL_KINDS = [
    ("search", {"query": {"type": "string", "description": "Search query."}}, ["query"],
     {"results": {"type": "array", "items": {"type": "object", "properties": {
         "title": {"type": "string"}, "snippet": {"type": "string"}}, "required": ["title", "snippet"]}}}),
    ("open_page", {"title": {"type": "string", "minLength": 1, "description": "Exact page title."}}, ["title"],
     {"title": {"type": "string"}, "paragraph": {"type": "string"}}),
    ("lookup_attribute", {"entity": {"type": "string", "description": "Entity name."},
                          "attribute": {"type": "string", "enum": ["birth_date", "nationality", "location"],
                                        "description": "Which attribute."}}, ["entity", "attribute"],
     {"entity": {"type": "string"}, "value": {"type": "string"}}),
    ("compare", {"a": {"type": "string", "description": "First value."},
                 "b": {"type": "string", "description": "Second value."}}, ["a", "b"],
     {"same": {"type": "boolean"}, "explanation": {"type": "string"}}),
]  # fmt: skip

_ARGS = {
    "search": lambda r: {"query": f"entity {r.randrange(10**6)} film director"},
    "open_page": lambda r: {"title": f"Page {r.randrange(10**6)}"},
    "lookup_attribute": lambda r: {"entity": f"Person {r.randrange(999)}", "attribute": "nationality"},
    "compare": lambda r: {"a": "American", "b": r.choice(["American", "British"])},
}
_OBS = {
    "search": lambda r: {"results": [{"title": f"T{i}", "snippet": "A sentence. " * 6} for i in range(3)]},
    "open_page": lambda r: {"title": "Page", "paragraph": "Some paragraph text. " * 20},
    "lookup_attribute": lambda r: {"entity": "Person", "value": "American"},
    "compare": lambda r: {"same": r.random() < 0.5, "explanation": "compared"},
}


def make_tools(rng: random.Random, tag: str) -> list[dict]:
    kinds = rng.sample(_TOOL_KINDS, rng.randint(2, 4))
    tools = []
    for name, props, required, returns in kinds:
        # A per-task tag in every description makes each fresh tool set's schemas new to the caches.
        props = {k: {**v, "description": f"{v['description']} {tag}".strip()} for k, v in props.items()}
        tools.append({
            "type": "function",
            "function": {"name": f"{name}{tag}", "description": f"Tool {name} for task {tag or 'shared'}.",
                         "parameters": {"type": "object", "properties": props, "required": required}},
            "x-returns": {"type": "object", "properties": returns, "required": list(returns)},
        })  # fmt: skip
    return tools


def make_trace(rng: random.Random, i: int, tools: list[dict]) -> Trace:
    msgs = [
        {"role": "system", "content": "You answer with tools."},
        {"role": "user", "content": f"Question {i}?"},
    ]
    n_call_turns = rng.randint(2, 3)
    for t in range(n_call_turns):
        calls = []
        for k in range(rng.randint(1, 2)):
            name = rng.choice(tools)["function"]["name"]
            kind = name.rstrip("0123456789_")
            calls.append({"id": f"call_{t}_{k}", "type": "function",
                          "function": {"name": name, "arguments": json.dumps(_ARGS[kind](rng))}})  # fmt: skip
        msgs.append({"role": "assistant", "content": f"<think>Step {t}: I should look this up.</think>",
                     "tool_calls": calls})  # fmt: skip
        for c in calls:
            kind = c["function"]["name"].rstrip("0123456789_")
            msgs.append({"role": "tool", "tool_call_id": c["id"], "content": json.dumps(_OBS[kind](rng))})
    msgs.append({"role": "assistant", "content": "<think>Done.</think><answer>American</answer>"})
    return Trace(f"t{i}", f"ex{i}", "hotpotqa", tools, msgs, "American", {})


def hermes_text(msg: dict) -> str:
    """The assistant turn as the model emits it (content followed by its calls)."""
    calls = "".join(
        f'<tool_call>{{"name": "{c["function"]["name"]}", "arguments": {c["function"]["arguments"]}}}</tool_call>'
        for c in msg.get("tool_calls") or []
    )
    return msg["content"] + calls


def bench(n: int, seed: int) -> dict:
    rng = random.Random(seed)
    shared = [make_tools(rng, "") for _ in range(8)]
    populations = {
        "shared_tools": [make_trace(rng, i, rng.choice(shared)) for i in range(n)],
        "fresh_tools": [make_trace(rng, i, make_tools(rng, f"_{i}")) for i in range(n)],
    }
    out: dict = {"traces": n}
    for label, traces in populations.items():
        with _Timer() as timer:
            bad = sum(bool(validate_trace(t)) for t in traces)
        if bad:
            raise SystemExit(f"{bad} generated traces are invalid; the benchmark is broken")
        out.update(timer.rates(f"traces_per_s_{label}", n))
    turns = [
        hermes_text(m) for t in populations["shared_tools"] for m in t.messages if m["role"] == "assistant"
    ]
    with _Timer() as timer:
        if not all(parse_turn(text).ok for text in turns):
            raise SystemExit("a generated turn does not parse; the benchmark is broken")
    out["turns"] = len(turns)
    out.update(timer.rates("turns_per_s", len(turns)))
    return out


class _Timer:
    """Wall and process CPU time: on a shared machine the CPU-time rate is the stable figure."""

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu

    def rates(self, key: str, count: int) -> dict[str, float]:
        return {key: round(count / self.wall, 1), f"{key}_cpu": round(count / self.cpu, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--traces", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    result = bench(args.traces, args.seed)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>28}: {value}")


if __name__ == "__main__":
    main()
