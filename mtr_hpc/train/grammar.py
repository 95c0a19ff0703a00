""" "Trace grammar learned": the fraction of sampled assistant turns that parse as valid turns.

For held-out traces, every assistant turn position gives a prompt (the conversation up to that turn,
rendered exactly as in training); the model samples one turn there, and `parse_turn` decides whether it
is a well-formed `<think>…</think>` + `<tool_call>` / `<answer>` turn. SFT reports the rate before and
after training.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from ..rollout.protocol import SamplingParams
from ..trace.parser import parse_turn


@dataclass
class GrammarConfig:
    prompts: int = 0  # turn prompts sampled from held-out traces; 0 disables the measurement
    max_new_tokens: int = 256  # synthesized turns run to ~220 tokens; shorter caps cut valid turns
    temperature: float = 0.0
    seed: int = 0


def turn_prompts(traces, renderer, limit: int) -> list[list[int]]:
    prompts = []
    for trace in traces:
        for i, msg in enumerate(trace.messages):
            if msg.get("role") == "assistant":
                prompts.append(renderer.render_prefix(trace.messages[:i], trace.tools))
                if len(prompts) >= limit:
                    return prompts
    return prompts


def grammar_rate(engine, renderer, prompts: list[list[int]], cfg: GrammarConfig) -> dict:
    if not prompts:
        return {"turns": 0, "valid": 0, "rate": 0.0, "errors": {}}
    params = SamplingParams(
        max_new_tokens=cfg.max_new_tokens,
        temperature=cfg.temperature,
        seed=cfg.seed,
        stop_token_ids=[renderer.end_of_turn_id],
    )
    gens = engine.generate(prompts, params)
    errors: Counter = Counter()
    valid = 0
    for gen in gens:
        ids = gen.token_ids
        closed = bool(ids) and ids[-1] == renderer.end_of_turn_id
        text = renderer.tokenizer.decode(ids[:-1] if closed else ids, skip_special_tokens=False)
        parsed = parse_turn(text)
        if parsed.ok and closed:
            valid += 1
        else:
            errors[parsed.errors[0].code if parsed.errors else "no_end_of_turn"] += 1
    return {"turns": len(gens), "valid": valid, "rate": valid / len(gens), "errors": dict(errors)}


def measure(model_dir: str, renderer, prompts, cfg: GrammarConfig, device: str = "cpu") -> dict:
    from ..rollout.hf_engine import HFRolloutEngine

    engine = HFRolloutEngine(model_dir, device=device, tokenizer=renderer.tokenizer)
    return grammar_rate(engine, renderer, prompts, cfg)
