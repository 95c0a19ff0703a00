"""Configs of the GRPO stage: one dataclass per component, nested in `GRPOConfig`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..config import check_min
from ..errors import ConfigError
from ..llm.config import LLMConfig
from ..models.config import ModelConfig
from ..reward import RewardConfig
from ..rollout.env import EnvConfig
from ..sim.config import RetrievalEnvConfig, ToolActorConfig, ToolMakerConfig
from ..tracking import WandbConfig
from .seams.base import OptimConfig


@dataclass
class BenchmarkSource:
    name: str = "hotpotqa"
    source: str = "sample"  # `sample` (shipped with the package), a file, or `hf://owner/name[:config]`
    split: str | None = None  # hub datasets: e.g. `train`
    limit: int | None = None
    skip_bad: bool = False
    # The project's train / held-out split (mtr_hpc.data.splits): all | train | heldout. Required (see
    # `require_training_part`): GRPO must never train on the questions evaluation holds out.
    part: str | None = None


@dataclass
class GRPOAlgoConfig:
    group_size: int = 4  # G samples per prompt
    prompts_per_step: int = 2
    scale_std: bool = True  # False: Dr. GRPO (mean-centred advantages)
    adv_eps: float = 1e-6
    clip_low: float = 0.2
    clip_high: float = 0.28
    kl_coef: float = 0.0  # > 0 builds a frozen reference policy and adds the k3 KL penalty
    aggregation: Literal["token_mean", "seq_mean_token_mean"] = "token_mean"
    minibatches: int = 1  # optimizer updates per rollout batch
    drop_uniform_groups: bool = False  # drop groups whose rewards are all equal (no signal)
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    # Off-policy correction: weight each token's policy gradient by min(trainer/engine probability,
    # tis_cap), truncated importance sampling on the engine's log-probs (`grpo_loss`).
    tis: bool = False
    tis_cap: float = 2.0

    def __post_init__(self) -> None:
        check_min("algo.", self, group_size=2, prompts_per_step=1, minibatches=1, top_k=0)
        if not self.tis_cap > 0:
            raise ConfigError("algo.tis_cap", f"must be > 0, got {self.tis_cap}")
        check_min("algo.", self, adv_eps=0.0, clip_low=0.0, clip_high=0.0, kl_coef=0.0, temperature=1e-6)
        if not 0.0 < self.top_p <= 1.0:
            raise ConfigError("algo.top_p", f"must be in (0, 1], got {self.top_p}")
        if self.minibatches > self.group_size * self.prompts_per_step:
            raise ConfigError(
                "algo.minibatches",
                f"{self.minibatches} updates for {self.group_size * self.prompts_per_step} episodes a step",
            )


@dataclass
class RolloutConfig:
    # hf: transformers; vllm: vLLM in process; auto: vLLM where it can serve the model, else hf (printed).
    engine: Literal["auto", "hf", "vllm"] = "hf"
    dtype: Literal["auto", "fp32", "bf16", "fp16"] = "fp32"  # auto: the machine's (`mtr_hpc.precision`)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    batch_size: int = 16  # HF engine: sequences decoded together
    gpu_memory_utilization: float = 0.4  # vLLM, colocated with the trainer
    sleep_between_steps: bool = True  # vLLM sleep mode frees its memory while the trainer runs
    sleep_level: int = 1  # vLLM: 1 keeps a host copy of the weights while asleep, 2 discards them
    sync_bucket_mb: int = 512  # vLLM before 0.16: weights pushed per load_weights call
    threads: int | None = None  # CPU: torch threads for the process, engine and trainer (None: all cores)
    cpu_kv_cache_gib: int = 2  # vLLM on a CPU: the KV cache's size

    def __post_init__(self) -> None:
        check_min("rollout.", self, batch_size=1, sync_bucket_mb=1, cpu_kv_cache_gib=1)
        if self.threads is not None:
            check_min("rollout.", self, threads=1)
        if not 0.0 < self.gpu_memory_utilization <= 1.0:
            raise ConfigError(
                "rollout.gpu_memory_utilization", f"must be in (0, 1], got {self.gpu_memory_utilization}"
            )
        if self.sleep_level not in (1, 2):
            raise ConfigError("rollout.sleep_level", f"must be 1 or 2, got {self.sleep_level}")


@dataclass
class GRPOTrainConfig:
    steps: int = 10
    micro_batch_rows: int = 2
    save_every: int = 5
    keep_last: int = 2
    seed: int = 1234
    # How long a collective may wait before the job fails; the other ranks wait in one while rank 0
    # rolls out, so this bounds a step's rollout time.
    dist_timeout_min: float = 120.0
    # Under Slurm, stop and save when the next step, a save and this margin would run past the job's time
    # limit (0: only signals stop the run). Cover what the measured times miss: the exit and a requeue.
    time_limit_margin_s: float = 60.0

    def __post_init__(self) -> None:
        check_min(
            "train.",
            self,
            steps=1,
            micro_batch_rows=1,
            save_every=1,
            keep_last=0,
            dist_timeout_min=1e-3,
            time_limit_margin_s=0.0,
        )


@dataclass
class GRPOConfig:
    out: str = "runs/grpo"
    device: Literal["auto", "cpu", "gpu"] = "auto"
    init: Literal["pretrained", "random"] = "pretrained"
    tokenizer: str | None = None  # defaults to model.hf
    resume: bool = True
    export_hf: bool = True
    model: ModelConfig = field(
        default_factory=ModelConfig
    )  # model.hf: the policy to start from (an SFT run's hf/)
    data: list[BenchmarkSource] = field(default_factory=lambda: [BenchmarkSource(part="train")])
    algo: GRPOAlgoConfig = field(default_factory=GRPOAlgoConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    env: EnvConfig = field(default_factory=EnvConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    toolmaker: ToolMakerConfig = field(default_factory=ToolMakerConfig)
    # What answers the policy's calls: `simulated`, the ToolActor (MTR); `retrieval`, a real search
    # engine over `retrieval.corpus` (the live-tool baseline ZeroSearch compares against).
    tools: Literal["simulated", "retrieval"] = "simulated"
    toolactor: ToolActorConfig = field(default_factory=ToolActorConfig)
    retrieval: RetrievalEnvConfig = field(default_factory=RetrievalEnvConfig)
    # The model that plays the tools when `toolactor.backend` is `llm`: in process by default (SmolLM2
    # on a CPU), or an OpenAI-compatible endpoint (`mtr serve`, `vllm serve`).
    tool_llm: LLMConfig = field(
        default_factory=lambda: LLMConfig(backend="transformers", model="smollm2-135m")
    )
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: GRPOTrainConfig = field(default_factory=GRPOTrainConfig)
    wandb: WandbConfig = field(default_factory=WandbConfig)

    def __post_init__(self) -> None:
        if not self.data:
            raise ConfigError("data", "name at least one benchmark source ({name, source, part})")
        self.env.validate()
        self.reward.validate()
        if self.tool_llm.backend == "vllm":
            # A second in-process vLLM would join the trainer's torch world through vLLM's external
            # launcher, beside the policy's own engine.
            raise ConfigError(
                "tool_llm.backend",
                "GRPO runs its tool model in process with transformers, or behind an endpoint: serve it "
                "with `vllm serve` and set tool_llm.backend=openai and tool_llm.base_url",
            )
        if (
            self.toolactor.backend == "llm"
            and self.tool_llm.backend == "openai"
            and not self.tool_llm.base_url
        ):
            raise ConfigError(
                "tool_llm.base_url", "the openai backend of the tool model needs the endpoint's URL"
            )
