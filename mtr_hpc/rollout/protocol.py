"""The contract between GRPO / eval and a rollout engine: sampling settings, one generation, the engine.

The loop talks to engines only through `RolloutEngine`; it never imports vLLM or knows which engine
it holds. Prompts and completions are token ids (token-in, token-out, design §3): an engine never
decodes and re-encodes a prefix, so what the trainer scores is exactly what the engine sampled.

Logprob convention (both engines, and the trainer must compute its own the same way): the logprob of a
sampled token is its log-softmax under the temperature-scaled logits, `log_softmax(logits / T)`, taken
BEFORE top-k / top-p truncation. With `T == 0` (greedy) it is the log-softmax of the raw logits. With
the GRPO defaults (`top_p=1, top_k=0`) this is the exact log-probability of the sampling policy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from ..errors import ConfigError, MtrError, RunFailure

if TYPE_CHECKING:
    import torch


@dataclass
class SamplingParams:
    """Per-request sampling settings. `temperature == 0` is greedy; `top_k == 0` disables top-k.

    `json_schema` constrains the output to instances of that JSON Schema; only an engine with
    `supports_json_schema` (vLLM's structured outputs) accepts it.
    """

    max_new_tokens: int = 512
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None
    stop_strings: list[str] = field(default_factory=list)
    stop_token_ids: list[int] = field(default_factory=list)
    json_schema: dict | None = None

    def validate(self) -> SamplingParams:
        """`self`, or a `ConfigError` naming the bad field."""
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise ConfigError("max_new_tokens", f"must be an integer >= 1, got {self.max_new_tokens!r}")
        if not self.temperature >= 0:
            raise ConfigError("temperature", f"must be >= 0, got {self.temperature!r}")
        if not 0 < self.top_p <= 1:
            raise ConfigError("top_p", f"must be in (0, 1], got {self.top_p!r}")
        if not isinstance(self.top_k, int) or self.top_k < 0:
            raise ConfigError("top_k", f"must be an integer >= 0 (0 disables it), got {self.top_k!r}")
        if self.seed is not None and not isinstance(self.seed, int):
            raise ConfigError("seed", f"must be an integer or None, got {self.seed!r}")
        for s in self.stop_strings:
            if not isinstance(s, str) or not s:
                raise ConfigError("stop_strings", f"entries must be non-empty strings, got {s!r}")
        for t in self.stop_token_ids:
            if not isinstance(t, int) or t < 0:
                raise ConfigError("stop_token_ids", f"entries must be token ids >= 0, got {t!r}")
        if self.json_schema is not None and not isinstance(self.json_schema, dict):
            raise ConfigError(
                "json_schema", f"must be a JSON Schema object, got {type(self.json_schema).__name__}"
            )
        return self


@dataclass
class Generation:
    """One completion: sampled ids (stop string / stop token included) and their logprobs."""

    token_ids: list[int]
    logprobs: list[float]
    finish_reason: str  # "stop" | "length"
    stop: str | int | None = None  # the stop string or token id that ended it; None for "length"


# Told that request `i` finished with a generation, returns the request's next prompt (its whole token
# sequence) and sampling settings, or None when the request is done.
FollowUp = Callable[[int, Generation], "tuple[list[int], SamplingParams] | None"]


@runtime_checkable
class RolloutEngine(Protocol):
    """What GRPO and eval need from a generator of rollouts.

    The engine owns its device memory (`lifecycle.ManagedEngine`): `sleep()` gives it back, and the next
    `update_weights` or `generate` takes it again in the right order; there is no `wake()` to call.
    """

    vocab_size: int

    def generate(
        self, prompts: list[list[int]], params: SamplingParams | list[SamplingParams]
    ) -> list[Generation]: ...

    def update_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> dict: ...

    def sleep(self) -> None: ...


def generate_continuous(
    engine, prompts: list[list[int]], params: SamplingParams | list[SamplingParams], follow_up: FollowUp
) -> None:
    """Generate for every prompt, then for every follow-up prompt `follow_up` returns, until none is left.

    This is how a multi-turn environment drives an engine. An engine with its own
    `generate_continuous` (the transformers engine) starts a follow-up as soon as its request's turn
    ends, while other requests are still decoding; any other engine is driven in rounds, one `generate`
    call per round over every request that has a prompt pending, so a round waits for its longest turn.
    """
    own = getattr(engine, "generate_continuous", None)
    if own is not None:
        return own(prompts, params, follow_up)
    ids = list(range(len(prompts)))
    plist = per_request_params(params, len(prompts))
    prompts = list(prompts)
    while ids:
        gens = engine.generate(prompts, plist)
        if len(gens) != len(ids):
            raise RunFailure(f"engine returned {len(gens)} generations for {len(ids)} prompts")
        nxt = [(i, follow_up(i, g)) for i, g in zip(ids, gens, strict=True)]
        nxt = [(i, f) for i, f in nxt if f is not None]
        ids = [i for i, _ in nxt]
        prompts = [list(f[0]) for _, f in nxt]
        plist = [f[1] for _, f in nxt]


def per_request_params(params: SamplingParams | Sequence[SamplingParams], n: int) -> list[SamplingParams]:
    """One validated `SamplingParams` per prompt (a single one is shared by all)."""
    if isinstance(params, SamplingParams):
        return [params.validate()] * n
    plist = list(params)
    if len(plist) != n:
        raise MtrError(f"got {len(plist)} SamplingParams for {n} prompts; pass one, or one per prompt")
    for i, p in enumerate(plist):
        if not isinstance(p, SamplingParams):
            raise MtrError(f"params[{i}] is {type(p).__name__}, not SamplingParams")
        p.validate()
    return plist


def check_prompts(prompts: Sequence[Sequence[int]], vocab_size: int) -> None:
    """`MtrError` naming the first prompt that is empty or holds an id outside the vocabulary."""
    if isinstance(prompts, (str, bytes)) or not isinstance(prompts, Sequence):
        raise MtrError("prompts must be a list of token-id lists")
    for i, p in enumerate(prompts):
        if isinstance(p, (str, bytes)) or not isinstance(p, Sequence):
            raise MtrError(f"prompt {i} is {type(p).__name__}, not a list of token ids")
        if not p:
            raise MtrError(f"prompt {i} is empty; a prompt needs at least one token")
        bad = next((t for t in p if not isinstance(t, int) or not 0 <= t < vocab_size), None)
        if bad is not None:
            raise MtrError(f"prompt {i} holds token id {bad!r}, outside the vocabulary [0, {vocab_size})")
