"""A stand-in `vllm` module with the offline API the project calls; real vLLM needs a GPU.

Names and signatures follow vLLM's `entrypoints/llm.py` (`LLM.generate`, `sleep`, `wake_up`,
`apply_model`, `reset_prefix_cache`), `engine/arg_utils.py` (`EngineArgs`), `inputs` (`TokensPrompt`)
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


def install_fake_vllm(monkeypatch, log: list, reply: Callable[[list[int]], list[int]] | None = None) -> None:
    """Put the fake in `sys.modules`. `reply(prompt_ids)` gives a completion's ids, which end with
    the end-of-sequence token (finish "stop"); without it every completion is one token, cut by length."""

    class LLM:
        def __init__(self, **kwargs):
            log.append(("LLM", kwargs))
            self.sleeping_tags: set[str] = set()
            self.llm_engine = types.SimpleNamespace(
                model_config=types.SimpleNamespace(get_vocab_size=lambda: 49152)
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
            class Model:
                def load_weights(self, weights):
                    log.append(("load_weights", [n for n, _ in weights]))

            return [fn(Model())]

        def reset_prefix_cache(self):
            log.append(("reset_prefix_cache",))

        def generate(self, requests, params, use_tqdm=False):
            log.append(("generate", len(requests)))
            log.append(("requests", [r["prompt_token_ids"] for r in requests], list(params)))
            return [
                types.SimpleNamespace(request_id=str(i), outputs=[_completion(r["prompt_token_ids"])])
                for i, r in enumerate(requests)
            ]

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
    vllm.SamplingParams = lambda **kw: kw
    inputs = types.ModuleType("vllm.inputs")
    inputs.TokensPrompt = lambda prompt_token_ids: {"prompt_token_ids": prompt_token_ids}
    sampling = types.ModuleType("vllm.sampling_params")
    sampling.StructuredOutputsParams = StructuredOutputsParams
    vllm.inputs, vllm.sampling_params = inputs, sampling
    for name, mod in (("vllm", vllm), ("vllm.inputs", inputs), ("vllm.sampling_params", sampling)):
        monkeypatch.setitem(sys.modules, name, mod)
