"""A stand-in `vllm` module with the GPU build's offline API, for what a CPU cannot run: sleep and wake.

Names and signatures follow vLLM's `entrypoints/llm.py` (`LLM.generate`, `sleep`, `wake_up`,
`apply_model`, `collective_rpc`, `reset_prefix_cache`), `engine/arg_utils.py` (`EngineArgs`), `inputs` (`TokensPrompt`)
and `sampling_params.py` (`SamplingParams`, `StructuredOutputsParams`). Every call is logged. Sleep
follows vLLM 0.10.2's `Executor.sleep` / `wake_up` (`executor/executor_base.py`): sleeping puts both tags to sleep
unless the executor is sleeping already (any tag asleep), when it does nothing; a wake of a tag that is
not asleep does nothing either.
"""

from __future__ import annotations

import dataclasses
import sys
import types
from collections.abc import Callable

# The fake model's parameters: three one-tensor layers.
PARAMS = ("l0.a", "l1.b", "l2.c")


def install_fake_vllm(
    monkeypatch,
    log: list,
    reply: Callable[[list[int]], list[int]] | None = None,
    reload_in_place: bool = False,
) -> None:
    """Put the fake in `sys.modules`. `reply(prompt_ids)` gives a completion's ids, which end with
    the end-of-sequence token (finish "stop"); without it every completion is one token, cut by length.
    `reload_in_place`: the worker's `reload_weights` takes `weights_iterator` (vLLM >= 0.16); without
    it, pushes go through `apply_model` and the model's `load_weights` (0.10.2 to 0.15)."""

    class LLM:
        def __init__(self, **kwargs):
            log.append(("LLM", kwargs))
            self.sleeping_tags: set[str] = set()
            self.llm_engine = types.SimpleNamespace(
                model_config=types.SimpleNamespace(
                    get_vocab_size=lambda: 49152, hf_config=types.SimpleNamespace(tie_word_embeddings=False)
                )
            )

        def sleep(self, level):
            if self.sleeping_tags:  # "Executor is already sleeping."
                log.append(("sleep ignored", level))
                return
            log.append(("sleep", level))
            self.sleeping_tags = {"weights", "kv_cache"}

        def wake_up(self, tags=None):
            tags = list(tags) if tags else ["weights", "kv_cache"]
            if not set(tags) <= self.sleeping_tags:  # "Executor is not sleeping." / "Tag ... is not in"
                log.append(("wake_up ignored", tuple(tags)))
                return
            log.append(("wake_up", tuple(tags)))
            self.sleeping_tags -= set(tags)

        def apply_model(self, fn):
            return [fn(Model())]

        def collective_rpc(self, method, timeout=None, args=(), kwargs=None):
            return [method(Worker(), *args, **(kwargs or {}))]

        def reset_prefix_cache(self):
            log.append(("reset_prefix_cache",))

        def generate(self, requests, params, use_tqdm=False):
            log.append(("generate", len(requests)))
            log.append(("requests", [r["prompt_token_ids"] for r in requests], list(params)))
            return [
                types.SimpleNamespace(request_id=str(i), outputs=[_completion(r["prompt_token_ids"])])
                for i, r in enumerate(requests)
            ]

    class Model:
        packed_modules_mapping: dict = {}

        def named_parameters(self):
            return [(name, None) for name in PARAMS]

        def load_weights(self, weights):
            log.append(("load_weights", [n for n, _ in weights]))

    class Worker:
        if reload_in_place:

            def reload_weights(self, weights_iterator=None, weights_path=None, is_checkpoint_format=True):
                log.append(("reload_weights", [n for n, _ in weights_iterator]))

        else:

            def reload_weights(self):  # 0.10.2 to 0.15: reloads from disk, takes no tensors
                log.append(("reload_weights from disk",))

    def _completion(prompt: list[int]):
        ids = reply(prompt) if reply is not None else [7]
        return types.SimpleNamespace(
            token_ids=ids,
            logprobs=[{t: types.SimpleNamespace(logprob=-0.5)} for t in ids],
            finish_reason="stop" if reply is not None else "length",
            stop_reason=None,  # vLLM names no reason when the end-of-sequence token ends a request
        )

    @dataclasses.dataclass
    class EngineArgs:
        logprobs_mode: str = "raw_logprobs"

    @dataclasses.dataclass
    class StructuredOutputsParams:
        json: dict | None = None

    vllm = types.ModuleType("vllm")
    vllm.LLM, vllm.EngineArgs = LLM, EngineArgs
    # A CUDA platform: sleep mode available.
    platform = types.SimpleNamespace(is_cpu=lambda: False, is_sleep_mode_available=lambda: True)
    vllm.platforms = types.SimpleNamespace(current_platform=platform)
    vllm.SamplingParams = lambda **kw: kw
    inputs = types.ModuleType("vllm.inputs")
    inputs.TokensPrompt = lambda prompt_token_ids: {"prompt_token_ids": prompt_token_ids}
    sampling = types.ModuleType("vllm.sampling_params")
    sampling.StructuredOutputsParams = StructuredOutputsParams
    vllm.inputs, vllm.sampling_params = inputs, sampling
    for name, mod in (("vllm", vllm), ("vllm.inputs", inputs), ("vllm.sampling_params", sampling)):
        monkeypatch.setitem(sys.modules, name, mod)
