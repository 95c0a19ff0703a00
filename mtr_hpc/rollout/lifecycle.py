"""The memory lifecycle every rollout engine follows, owned by the engine rather than by its callers.

A rollout engine colocated with a trainer gives its GPU memory back while the trainer steps and takes it
again to generate. The order of those moves is where colocated RL goes wrong: vLLM's level-1 sleep copies
the weights to host memory and unmaps them, and `wake_up` copies that backup back, so weights pushed into
a sleeping engine either fault (the memory is unmapped) or are silently overwritten by the stale backup.
`ManagedEngine` fixes the order once, for every engine:

    update_weights:  wake the weights  ->  load the new weights
    generate:        wake the weights (if asleep)  ->  wake the KV cache  ->  generate
    sleep:           release weights and KV cache (the weights kept or discarded, by the engine's level)
                     -- an engine that sleeps only when fully awake first wakes what is still asleep

so a caller only ever says `update_weights`, `generate` and `sleep`. An engine whose sleep discards its
weights (vLLM level 2) refuses to generate until new weights were pushed, instead of sampling from
uninitialized memory. Engines implement the five `_hooks`; the state machine here is shared.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from ..errors import MtrError
from .protocol import Generation, SamplingParams, check_prompts, per_request_params

if TYPE_CHECKING:
    import torch


class ManagedEngine:
    """Base of the rollout engines: public `generate` / `update_weights` / `sleep`, private hooks."""

    vocab_size: int
    # True when `_sleep` throws the weights away (then only `update_weights` makes them valid again).
    sleep_discards_weights: bool = False
    # True when the engine can constrain decoding to `SamplingParams.json_schema`.
    supports_json_schema: bool = False
    # True when the engine's sleep is a no-op unless everything is awake (vLLM 0.10.2: a wake of the
    # weights alone leaves the executor "sleeping", and its `sleep` then returns at once), so `sleep`
    # after a bare `update_weights` wakes the KV cache first instead of leaving the weights on the device.
    sleeps_only_fully_awake: bool = False

    def __init__(self) -> None:
        self._weights_awake = True
        self._cache_awake = True
        self._weights_valid = True

    # -- the contract ---------------------------------------------------------------------------------

    @property
    def asleep(self) -> bool:
        return not (self._weights_awake or self._cache_awake)

    def update_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> dict:
        """Load `(HF name, tensor)` pairs; wakes the weights first, leaves the KV cache as it is."""
        self._ensure_weights()
        info = self._load_weights(named_tensors)
        self._weights_valid = True
        return info

    def generate(
        self, prompts: list[list[int]], params: SamplingParams | list[SamplingParams]
    ) -> list[Generation]:
        return self._generate(prompts, self._ready(prompts, params))

    def _ready(
        self, prompts: list[list[int]], params: SamplingParams | list[SamplingParams]
    ) -> list[SamplingParams]:
        """Check the request, wake what is asleep; the validated per-prompt settings."""
        check_prompts(prompts, self.vocab_size)
        plist = per_request_params(params, len(prompts))
        if not self.supports_json_schema and any(p.json_schema is not None for p in plist):
            raise MtrError(
                f"{type(self).__name__} cannot constrain decoding to a JSON Schema; put the schema in "
                "the prompt and validate the answer (as the transformers chat client does)"
            )
        self._ensure_weights()
        if not self._weights_valid:
            raise MtrError(
                "the rollout engine's weights were discarded when it slept (sleep level 2); "
                "push weights with update_weights() before generating"
            )
        if not self._cache_awake:
            self._wake_cache()
            self._cache_awake = True
        return plist

    def sleep(self) -> None:
        """Give the device memory back until the next `update_weights` or `generate`."""
        if self.asleep:
            return
        if self.sleeps_only_fully_awake and not self._cache_awake:  # the weights are awake (not asleep)
            self._wake_cache()
            self._cache_awake = True
        self._sleep()
        self._weights_awake = self._cache_awake = False
        if self.sleep_discards_weights:
            self._weights_valid = False

    def close(self) -> None:
        """Release what the engine holds beyond its Python objects (vLLM: its engine core and groups)."""

    def _ensure_weights(self) -> None:
        if not self._weights_awake:
            self._wake_weights()
            self._weights_awake = True

    # -- what each engine implements --------------------------------------------------------------------

    def _wake_weights(self) -> None:
        raise NotImplementedError

    def _load_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> dict:
        raise NotImplementedError

    def _wake_cache(self) -> None:
        raise NotImplementedError

    def _generate(self, prompts: list[list[int]], params: list[SamplingParams]) -> list[Generation]:
        raise NotImplementedError

    def _sleep(self) -> None:
        raise NotImplementedError
