"""Small, valid traces built from real benchmark questions, for tests that train on traces."""

from __future__ import annotations

import json
import random

from mtr_hpc.io import read_json
from mtr_hpc.trace.model import Trace

LOOKUP = {
    "type": "function",
    "function": {
        "name": "lookup",
        "description": "Look up a fact about an entity.",
        "parameters": {
            "type": "object",
            "properties": {"query": {"type": "string", "description": "What to look up."}},
            "required": ["query"],
        },
    },
    "x-returns": {
        "type": "object",
        "properties": {"fact": {"type": "string"}},
        "required": ["fact"],
    },
}


def make_trace(i: int, question: str, answer: str, hops: int = 1) -> Trace:
    messages = [
        {"role": "system", "content": "Answer with tools."},
        {"role": "user", "content": question},
    ]
    for h in range(hops):
        call_id = f"call_{h}"
        messages.append(
            {
                "role": "assistant",
                "content": f"<think>Step {h + 1}: I should look this up.</think>",
                "tool_calls": [
                    {
                        "id": call_id,
                        "type": "function",
                        "function": {"name": "lookup", "arguments": json.dumps({"query": question[:60]})},
                    }
                ],
            }
        )
        messages.append({"role": "tool", "tool_call_id": call_id, "content": json.dumps({"fact": answer})})
    messages.append(
        {"role": "assistant", "content": f"<think>The lookup says {answer}.</think><answer>{answer}</answer>"}
    )
    return Trace(
        id=f"t{i}",
        example_id=f"hotpotqa-{i}",
        benchmark="hotpotqa",
        tools=[LOOKUP],
        messages=messages,
        answer=answer,
        meta={"source": "tests"},
    )


def hotpot_traces(shared_data, n: int, seed: int = 0) -> list[Trace]:
    records = read_json(shared_data / "hotpotqa" / "hotpot_dev_qa_full.json")
    rng = random.Random(seed)
    picked = rng.sample(range(len(records)), n)
    return [
        make_trace(i, records[k]["question"], records[k]["answer"], hops=1 + i % 3)
        for i, k in enumerate(picked)
    ]
