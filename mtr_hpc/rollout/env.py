"""The multi-turn environment of GRPO: a batch of episodes against the simulated tools, token in / token out.

Every episode's whole token sequence goes to the engine, and its next turn as soon as the previous one
is consumed (continuous batching; an engine without it is driven in rounds). The policy's turn ends at
the end-of-turn token `<|im_end|>` (the renderer's `end_of_turn_id`) or at the length limit, and
nowhere else: stopping at `</tool_call>` or `</answer>` would leave a turn without the `<|im_end|>` the
policy never sampled, and inventing it would put a token into the sequence that the policy did not
choose. So stop strings other than "<|im_end|>" itself are rejected.

Then the environment decodes the sampled ids (less `<|im_end|>`), parses the text with `parse_turn`,
and ends the episode at:

- an answer (`answer`);
- a parse error, a sampled special token, a turn closed by another stop token, or (with
  `end_on_invalid_call`, the default) a call to an undeclared tool or with schema-invalid arguments
  (`parse_error`; `Episode.error` says which);
- a turn cut by `max_turn_tokens` (`engine_length`) or by the episode budget (`max_tokens`);
- `max_turns` assistant turns without an answer (`max_turns`); the last turn's calls are not run;
- with `max_repeats` set, a turn that only repeats calls the episode already made (same tool, same
  arguments) after `max_repeats` such turns were answered (`repeated_call`): against deterministic tools
  it would read the same observations again, and a policy that loops so runs to `max_turns` otherwise;
- observations that would leave no room for another sampled token (`max_tokens`; not appended).

Otherwise each call goes to the episode's simulator and `render_observations(tool messages)` is
appended with loss mask 0. When a simulator batches its answers (a model playing the tools,
`EpisodeSetup.batch`), episodes run in turn rounds instead of continuously, and each round's calls are
answered together. An episode always ends right after one of its sampled turns, so its token
ids are the renderer's layout of its messages (see `episode.check_drift`). `max_tokens` bounds the
whole sequence, prompt included: the length the trainer sees.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError, RunFailure
from ..sim.protocol import EpisodeSetup, answer_round
from ..synth.autoagent import SYSTEM_PROMPT
from ..trace.parser import ToolCall, parse_turn
from ..trace.render import IM_END
from ..trace.validator import registry_for
from .episode import Episode
from .protocol import Generation, SamplingParams, generate_continuous


@dataclass
class EnvConfig:
    max_turns: int = 8
    max_tokens: int = 4096  # whole episode, prompt included
    max_turn_tokens: int = 512
    # None: the system prompt of the synthesized traces, so GRPO prompts look like the SFT data.
    system_prompt: str | None = None
    end_on_invalid_call: bool = True
    # Turns that only repeat earlier calls answered before the next one ends the episode (None: never).
    max_repeats: int | None = None

    def validate(self) -> EnvConfig:
        for key in ("max_turns", "max_tokens", "max_turn_tokens"):
            value = getattr(self, key)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"env.{key}", f"must be an integer >= 1, got {value!r}")
        if self.max_repeats is not None and (not isinstance(self.max_repeats, int) or self.max_repeats < 0):
            raise ConfigError("env.max_repeats", f"must be null or an integer >= 0, got {self.max_repeats!r}")
        return self


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False)


def _special_ids(renderer) -> frozenset[int]:
    """Ids of every special / added-special token (ChatML markers included, whether or not the
    tokenizer lists them among `all_special_ids`)."""
    tok = renderer.tokenizer
    ids = set(getattr(tok, "all_special_ids", None) or [])
    decoder = getattr(tok, "added_tokens_decoder", None) or {}
    ids |= {int(i) for i, t in decoder.items() if getattr(t, "special", False)}
    return frozenset(ids | {renderer.im_start_id, renderer.end_of_turn_id})


class _Runner:
    """The state of one episode while it runs."""

    def __init__(self, index: int, setup: EpisodeSetup, renderer, cfg: EnvConfig, seed_id: int):
        self.index, self.setup, self.renderer, self.cfg = index, setup, renderer, cfg
        self.seed_id = seed_id
        self.registry = registry_for(setup.tools)
        self.special_ids = _special_ids(renderer)
        system = cfg.system_prompt if cfg.system_prompt is not None else SYSTEM_PROMPT
        messages = [
            {"role": "system", "content": system},
            {"role": "user", "content": setup.example.question},
        ]
        prompt = renderer.render_prefix(messages, setup.tools)
        self.ep = Episode(
            setup.example,
            list(setup.tools),
            messages,
            list(prompt),
            [0] * len(prompt),
            [0.0] * len(prompt),
            len(prompt),
        )
        self._pending: list[tuple[str, ToolCall]] = []  # the current turn's calls to answer
        self._made: set[str] = set()  # every call made so far, as `_call_key`
        self._repeats = 0  # answered turns that only repeated earlier calls
        if self.room() < 1:
            self.ep.finish = "max_tokens"

    def room(self) -> int:
        return min(self.cfg.max_turn_tokens, self.cfg.max_tokens - len(self.ep.token_ids))

    def end(self, finish: str, error: str | None = None) -> None:
        self.ep.finish, self.ep.error = finish, error

    # ---- one sampled turn ---------------------------------------------------------------------------
    def consume(self, gen: Generation) -> list[tuple[str, ToolCall]]:
        """Take one sampled turn; the calls to answer (`observe`) before the next turn, or [] when the
        episode ended."""
        self._pending = []  # set by a turn that makes calls and goes on
        self._turn(gen)
        return self._pending if self.ep.finish is None else []

    def observe(self, calls: list[tuple[str, ToolCall]], observations: list[Any]) -> None:
        """Append the observations of the calls `consume` returned (or end at the token budget)."""
        ep = self.ep
        tool_msgs = [
            {"role": "tool", "tool_call_id": i, "content": _dumps(obs)}
            for (i, _), obs in zip(calls, observations, strict=True)
        ]
        obs_ids = self.renderer.render_observations(tool_msgs)
        if len(ep.token_ids) + len(obs_ids) >= self.cfg.max_tokens:
            return self.end("max_tokens")
        ep.messages += tool_msgs
        ep.token_ids += obs_ids
        ep.loss_mask += [0] * len(obs_ids)
        ep.engine_logprobs += [0.0] * len(obs_ids)

    def _turn(self, gen: Generation) -> None:
        ep, eot = self.ep, self.renderer.end_of_turn_id
        ids, lps = list(gen.token_ids), [float(x) for x in gen.logprobs]
        if len(ids) != len(lps) or not ids:
            raise RunFailure(
                f"engine returned {len(ids)} tokens and {len(lps)} logprobs for episode {self.index}"
            )
        start = len(ep.token_ids)
        ep.token_ids += ids
        ep.loss_mask += [1] * len(ids)
        ep.engine_logprobs += lps
        ep.n_generated += len(ids)
        ep.turns += 1
        ep.turn_spans.append((start, len(ep.token_ids)))
        closed = ids[-1] == eot
        ep.turn_closed.append(closed)
        body = ids[:-1] if closed else ids
        text = self.renderer.tokenizer.decode(
            body, skip_special_tokens=False, clean_up_tokenization_spaces=False
        )
        if not closed:
            ep.messages.append({"role": "assistant", "content": text})
            if gen.finish_reason == "stop":
                return self.end("parse_error", f"no_end_of_turn: the turn stopped at {gen.stop!r}")
            return self.end("max_tokens" if len(ep.token_ids) >= self.cfg.max_tokens else "engine_length")
        if self.special_ids.intersection(body):
            ep.messages.append({"role": "assistant", "content": text})
            return self.end("parse_error", "special_token: the turn holds a special token before its end")
        parsed = parse_turn(text)
        if not parsed.ok:
            ep.messages.append({"role": "assistant", "content": text})
            return self.end("parse_error", str(parsed.errors[0]))
        if parsed.answer is not None:
            ep.messages.append({"role": "assistant", "content": text})
            ep.answer = parsed.answer
            return self.end("answer")
        self._call_turn(text, parsed.tool_calls)

    def _call_turn(self, text: str, calls: list[ToolCall]) -> None:
        ep = self.ep
        content = text[: text.find("<tool_call>")]
        # The renderer joins content and calls with "\n": drop exactly that one.
        content = content[:-1] if content.endswith("\n") else content
        ids = [f"call_{ep.tool_calls + k}" for k in range(len(calls))]
        ep.messages.append(
            {
                "role": "assistant",
                "content": content,
                "tool_calls": [
                    {
                        "id": i,
                        "type": "function",
                        "function": {"name": c.name, "arguments": _dumps(c.arguments)},
                    }
                    for i, c in zip(ids, calls, strict=True)
                ],
            }
        )
        ep.tool_calls += len(calls)
        problems = [p for c in calls if (p := self._call_problem(c))]
        ep.invalid_calls += len(problems)
        if problems and self.cfg.end_on_invalid_call:
            return self.end("parse_error", problems[0])
        if ep.turns >= self.cfg.max_turns:
            return self.end("max_turns")
        keys = {_call_key(c) for c in calls}
        if keys <= self._made and self.cfg.max_repeats is not None:
            if self._repeats >= self.cfg.max_repeats:
                return self.end("repeated_call")
            self._repeats += 1
        self._made |= keys
        self._pending = list(zip(ids, calls, strict=True))

    def _call_problem(self, call: ToolCall) -> str | None:
        if call.name not in self.registry:
            return f"undeclared_tool: '{call.name:.80}' is not one of the episode's tools"
        errors = self.registry.validate_arguments(call.name, call.arguments)
        return f"invalid_arguments: {call.name}: {errors[0]}" if errors else None


def _call_key(call: ToolCall) -> str:
    return json.dumps([call.name, call.arguments], sort_keys=True, ensure_ascii=False)


def _turn_params(base: SamplingParams, runner: _Runner, eot: int) -> SamplingParams:
    seed = None
    if base.seed is not None:
        # Distinct, reproducible streams per episode and turn (members of a group must differ).
        seed = (base.seed * 1_000_003 + runner.seed_id * 10_007 + runner.ep.turns) % (2**31 - 1)
    return dataclasses.replace(
        base,
        max_new_tokens=runner.room(),
        seed=seed,
        stop_strings=[],
        stop_token_ids=sorted(set(base.stop_token_ids) | {eot}),
    )


def run_episodes(
    engine,
    renderer,
    setups: list[EpisodeSetup],
    params: SamplingParams,
    cfg: EnvConfig | None = None,
    on_finished: Callable[[int, Episode], None] | None = None,
    seed_ids: list[int] | None = None,
) -> list[Episode]:
    """Roll out every setup to the end, all episodes at once: each episode's next turn goes to the
    engine as soon as its previous turn is consumed (`protocol.generate_continuous`).

    `params` gives temperature / top-p / top-k / seed; `max_new_tokens` and the stop conditions are
    set per turn by the environment (see the module docstring). Episodes come back in setup order.
    `on_finished(i, episode)` is told as soon as episode `i` ends (for journals and progress bars).
    `seed_ids[i]` names episode `i` in its sampling seeds (default `i`): a share of a larger batch,
    rolled out elsewhere, passes the episodes' indices in the whole batch, so it samples as the whole
    batch would.
    """
    cfg = (cfg or EnvConfig()).validate()
    bad = [s for s in params.stop_strings if s != IM_END]
    if bad:
        raise ConfigError("stop_strings", f"turns end only at {IM_END!r}; got {bad!r} (see rollout.env)")
    eot = renderer.end_of_turn_id
    seed_ids = list(range(len(setups))) if seed_ids is None else list(seed_ids)
    if len(seed_ids) != len(setups):
        raise ConfigError("seed_ids", f"{len(seed_ids)} seed ids for {len(setups)} episodes")
    runners = [_Runner(i, s, renderer, cfg, seed_ids[i]) for i, s in enumerate(setups)]
    active = [r for r in runners if r.ep.finish is None]
    if on_finished is not None:
        for r in runners:
            if r.ep.finish is not None:  # a prompt already over the budget
                on_finished(r.index, r.ep)

    def finished(runner: _Runner) -> bool:
        if runner.ep.finish is not None and on_finished is not None:
            on_finished(runner.index, runner.ep)
        return runner.ep.finish is not None

    def follow_up(i: int, gen: Generation) -> tuple[list[int], SamplingParams] | None:
        runner = active[i]
        calls = runner.consume(gen)
        if calls:
            runner.observe(calls, [runner.setup.call(c.name, c.arguments) for _, c in calls])
        if finished(runner):
            return None
        return runner.ep.token_ids, _turn_params(params, runner, eot)

    if active and any(s.batch is not None for s in setups):
        _run_rounds(engine, active, params, eot, finished)
    elif active:
        generate_continuous(
            engine,
            [r.ep.token_ids for r in active],
            [_turn_params(params, r, eot) for r in active],
            follow_up,
        )
    return [r.ep for r in runners]


def _run_rounds(
    engine, active: list[_Runner], params: SamplingParams, eot: int, finished: Callable[[_Runner], bool]
) -> None:
    """Turn rounds: every active episode samples its next turn, then the calls of the whole round are
    answered together (`sim.answer_round`), for simulators that batch their answers (a model playing
    the tools). Continuous batching would instead ask the simulator one episode at a time."""
    while active:
        gens = engine.generate(
            [r.ep.token_ids for r in active], [_turn_params(params, r, eot) for r in active]
        )
        if len(gens) != len(active):
            raise RunFailure(f"engine returned {len(gens)} generations for {len(active)} prompts")
        pending = [(r, r.consume(g)) for r, g in zip(active, gens, strict=True)]
        requests = [(r.setup, c.name, c.arguments) for r, calls in pending for _, c in calls]
        answers = iter(answer_round(requests))
        for r, calls in pending:
            if calls:
                r.observe(calls, [next(answers) for _ in calls])
        active = [r for r in active if not finished(r)]
