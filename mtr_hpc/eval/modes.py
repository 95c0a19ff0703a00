"""The two evaluation modes, run over a list of questions; each returns one journal record per question
(and reports each to a callback as it finishes).

- `direct`: no tools, one turn. The system prompt asks for the answer inside `<answer></answer>`, and
  one worked exchange shows it (a question and its tagged answer), so an instruct model that was never
  trained on the format gets a fair chance: the baseline beside the trained models. A completion
  without that tag is format-invalid and predicts "" (strict, like the reward's validity test, rather
  than guessing an answer from free text).
- `tools`: the ReAct loop of `mtr_hpc.rollout.env.run_episodes` against an environment (simulated or
  retrieval), with the system prompt of the synthesized training traces: it spells out the grammar, so
  an untrained model can try it zero-shot, and trained models see the prompt they were trained with.

Records hold what `report` aggregates: prediction, messages, turns, tool calls, invalid calls, finish
("answer" | "parse_error" | "engine_length" | "max_turns" | "max_tokens") and `format_valid`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..data.example import QAExample
from ..rollout.protocol import RolloutEngine, SamplingParams, generate_continuous
from ..synth.autoagent import SYSTEM_PROMPT
from .config import GenerationConfig

DIRECT_SYSTEM_PROMPT = (
    "You are a helpful assistant that answers multi-hop questions. Think briefly if you need to, then "
    "give only the final short answer (an entity, a date, a number, or yes/no) inside "
    "<answer></answer>, for example <answer>Paris</answer>."
)
# The one-shot demonstration of direct mode: a two-hop question none of the benchmarks asks.
DIRECT_EXAMPLE = [
    {"role": "user", "content": "In which country was the composer of the opera Carmen born?"},
    {"role": "assistant", "content": "<answer>France</answer>"},
]
# The synthesized traces' own system prompt: it spells out the grammar (so an untrained model can try it
# zero-shot) and is exactly what SFT/GRPO checkpoints were trained with.
TOOLS_SYSTEM_PROMPT = SYSTEM_PROMPT
_ANSWER_RE = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


@dataclass
class Job:
    """One question of one (model, mode, environment, benchmark) cell; `env` is "" in direct mode."""

    model: str
    mode: str
    env: str
    benchmark: str
    example: QAExample


def base_record(job: Job) -> dict[str, Any]:
    return {
        "model": job.model,
        "mode": job.mode,
        "env": job.env,
        "benchmark": job.benchmark,
        "id": job.example.id,
        "question": job.example.question,
        "qtype": job.example.qtype,
    }


def sampling_params(gen: GenerationConfig, stop_token_ids: list[int], stop_strings=()) -> SamplingParams:
    return SamplingParams(
        max_new_tokens=gen.max_new_tokens,
        temperature=gen.temperature,
        top_p=gen.top_p,
        seed=gen.seed,
        stop_strings=list(stop_strings),
        stop_token_ids=list(stop_token_ids),
    ).validate()


def extract_answer(text: str) -> tuple[str, bool]:
    """(answer, format_valid): the text of the one `<answer>` element; ("", False) without exactly one."""
    found = _ANSWER_RE.findall(text)
    if len(found) != 1 or not found[0].strip():
        return "", False
    return found[0].strip(), True


def decode_turn(tokenizer, token_ids: list[int], end_of_turn: str) -> str:
    text = tokenizer.decode(token_ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
    return text[: -len(end_of_turn)] if text.endswith(end_of_turn) else text


def run_direct(
    engine: RolloutEngine,
    renderer,
    jobs: list[Job],
    gen: GenerationConfig,
    on_record: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """One generation per question, all in one engine call; `on_record` hears of each record as its
    question finishes. Returns the records in job order."""
    from ..trace.render import IM_END

    convs = [
        [
            {"role": "system", "content": DIRECT_SYSTEM_PROMPT},
            *DIRECT_EXAMPLE,
            {"role": "user", "content": j.example.question},
        ]
        for j in jobs
    ]
    prompts = [renderer.render_prefix(c, None) for c in convs]
    params = sampling_params(gen, [renderer.end_of_turn_id], ["</answer>"])
    records: list[dict[str, Any]] = [{} for _ in jobs]

    def finished(i: int, out) -> None:
        text = decode_turn(renderer.tokenizer, out.token_ids, IM_END)
        answer, valid = extract_answer(text)
        finish = "answer" if valid else ("engine_length" if out.finish_reason == "length" else "parse_error")
        rec = base_record(jobs[i])
        rec.update(
            prediction=answer,
            messages=[*convs[i], {"role": "assistant", "content": text}],
            turns=1,
            tool_calls=0,
            invalid_calls=0,
            finish=finish,
            format_valid=valid,
            n_generated=len(out.token_ids),
        )
        records[i] = rec
        if on_record is not None:
            on_record(rec)

    generate_continuous(engine, prompts, params, finished)
    return records


def run_tools(
    engine: RolloutEngine,
    renderer,
    jobs: list[Job],
    setups: list[Any],
    gen: GenerationConfig,
    env_cfg: Any,
    on_record: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """One ReAct episode per question through the shared multi-turn environment; `on_record` hears of
    each record as its episode ends. Returns the records in job order."""
    from ..rollout.env import run_episodes
    from ..sim.evidence import build_kb
    from ..sim.fidelity import observation_stats

    params = sampling_params(gen, [renderer.end_of_turn_id])

    def count_tokens(text: str) -> int:
        return len(renderer.tokenizer.encode(text, add_special_tokens=False))

    records: list[dict[str, Any]] = [{} for _ in jobs]

    def finished(i: int, ep) -> None:
        answer = ep.answer if isinstance(ep.answer, str) else ""
        rec = base_record(jobs[i])
        rec.update(
            prediction=answer,
            messages=list(ep.messages),
            tools=[t["function"]["name"] for t in (ep.tools or [])],
            error=ep.error,
            turns=ep.turns,
            tool_calls=ep.tool_calls,
            invalid_calls=ep.invalid_calls,
            finish=ep.finish,
            format_valid=ep.finish == "answer" and bool(answer),
            n_generated=ep.n_generated,
            fidelity=observation_stats(
                ep.messages,
                list(jobs[i].example.answers),
                build_kb(jobs[i].example).gold_titles(),
                count_tokens,
            ),
        )
        records[i] = rec
        if on_record is not None:
            on_record(rec)

    run_episodes(engine, renderer, setups, params, env_cfg, finished)
    return records
