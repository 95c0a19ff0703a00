"""Run-level config of `mtr synth`: which benchmark sources, how sharded, which LLM endpoint, logging.

`SynthRunConfig` composes the agents' `SynthConfig` (key `agents`) instead of extending it: the agents
see one example at a time and know nothing of sources, shards or endpoints. The key is `agents`, not
`synth`, so a multi-stage file with a `synth:` section (read with `section="synth"`) is never mistaken
for this config's own key.

Keys that do not change results (`out`, `shard_index`, `concurrency`, `log_every`, `progress`,
`example_delay_s`, `llm.base_url`, `wandb`) are left out of the run-directory identity (`IDENTITY_IGNORE`),
so every shard of an array job, each with its own endpoint, shares one run directory.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..data.splits import require_training_part
from ..errors import ConfigError
from ..llm.config import LLMConfig
from ..tracking import WandbConfig
from .config import SynthConfig

SAMPLE_SOURCE = "sample"

IDENTITY_IGNORE = (
    "out",
    "shard_index",
    "concurrency",
    "log_every",
    "progress",
    "example_delay_s",
    "llm.base_url",
    "llm.api_key_env",
    "llm.timeout_s",
    "wandb",
)


@dataclass
class SourceConfig:
    """One benchmark input: `path` is a file, a hub name (`hf://owner/name[:config]`) or `sample`."""

    benchmark: str
    path: str = SAMPLE_SOURCE
    split: str | None = None
    # Examples read from this source; 0 takes the run's `limit` (0 there too: all).
    limit: int = 0
    # The project's train / held-out split (mtr_hpc.data.splits): all | train | heldout. Required: traces
    # are training data, and a source that left it out would train on the questions eval holds out.
    part: str | None = None


@dataclass
class SynthRunConfig:
    out: str = "runs/synth"
    sources: list[SourceConfig] = field(default_factory=list)
    limit: int = 0
    skip_bad: bool = False
    num_shards: int = 1
    # Which shard this process runs; None: all shards in turn (or the Slurm array task's shard).
    shard_index: int | None = None
    # Examples synthesized concurrently (llm backends; grounded backends never suspend, so run one by one).
    concurrency: int = 1
    log_every: int = 50
    progress: bool = True
    # Seconds slept after each example before it is recorded: makes a run slow enough to interrupt in tests.
    example_delay_s: float = 0.0
    agents: SynthConfig = field(default_factory=SynthConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    wandb: WandbConfig = field(default_factory=WandbConfig)

    def __post_init__(self) -> None:
        if not self.sources:
            raise ConfigError("sources", "name at least one benchmark source ({benchmark, path})")
        if self.num_shards < 1:
            raise ConfigError("num_shards", f"must be >= 1, got {self.num_shards}")
        if self.shard_index is not None and not 0 <= self.shard_index < self.num_shards:
            raise ConfigError(
                "shard_index", f"must be in [0, {self.num_shards - 1}] for num_shards={self.num_shards}"
            )
        for key in ("limit", "log_every", "concurrency"):
            if getattr(self, key) < (0 if key == "limit" else 1):
                raise ConfigError(key, f"out of range: {getattr(self, key)}")
        if self.example_delay_s < 0:
            raise ConfigError("example_delay_s", "must be >= 0")
        for i, src in enumerate(self.sources):
            if src.limit < 0:
                raise ConfigError(f"sources[{i}].limit", "must be >= 0")
            require_training_part(src.part, f"sources[{i}].part")

    @property
    def uses_llm(self) -> bool:
        a = self.agents
        return "llm" in (a.toolmaker.backend, a.toolactor.backend, a.autoagent.backend) or (
            a.toolmaker.classifier == "llm"
        )

    def source_limit(self, src: SourceConfig) -> int | None:
        n = src.limit or self.limit
        return n or None
