"""Evaluation (`mtr eval`): models x settings x benchmarks, EM/F1 and behaviour. A setting is `direct`
(no tools) or `tools/<env>`, one per tool environment of `envs` (`grounded`, `llm`, `retrieval`).

Modules, one concern each: `config` (EvalConfig), `plan` (up-front loading and validation), `models`
(which weights a path names; Megatron checkpoints converted on load), `modes` (direct / ReAct batches),
`environments` (the tool simulator of each environment of `tools` mode, from `mtr_hpc.sim`), `journal` (resumable predictions.jsonl), `report` (results.json, report.md), `plots`,
`outputs`, and `harness` (`run_eval`). Importing this package imports no torch.
"""

from .config import (
    BenchmarkSpec,
    EvalConfig,
    GenerationConfig,
    ModelSpec,
    RetrievalEnvConfig,
    validate_config,
)

__all__ = [
    "BenchmarkSpec",
    "EvalConfig",
    "GenerationConfig",
    "ModelSpec",
    "RetrievalEnvConfig",
    "run_eval",
    "validate_config",
]


def __getattr__(name: str):
    if name == "run_eval":
        from .harness import run_eval

        return run_eval
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
