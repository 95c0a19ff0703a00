"""What the GRPO driver builds once: prompts, the rollout engine, the simulated tools, weight sync."""

from __future__ import annotations

import time
from pathlib import Path

from ..data import load_benchmark, load_sample
from ..data.splits import require_training_part, select_part
from ..errors import ConfigError, RunFailure
from ..precision import Precision, resolve_dtype, torch_dtype
from .grpo_config import GRPOConfig


def load_prompts(cfg: GRPOConfig) -> list:
    """Every training question of the configured benchmarks (a source may be `sample`)."""
    examples = []
    for i, src in enumerate(cfg.data):
        part = require_training_part(src.part, f"data[{i}].part")
        if src.source == "sample":
            got = load_sample(src.name)
            got = got[: src.limit] if src.limit else got
        else:
            got = load_benchmark(
                src.name, src.source, skip_bad=src.skip_bad, split=src.split, limit=src.limit
            ).examples
        examples += select_part(got, part, key=f"data[{i}].part")
    if not examples:
        raise ConfigError("data", "no training questions (empty benchmark sources)")
    return examples


def check_replicas(cfg: GRPOConfig) -> None:
    """Every rollout replica (every rank, `grpo_rollout.rollout_replica`) must get a prompt each step. A
    replica rolls out whole prompts (a group's G episodes share its simulated tools), so with fewer
    prompts than ranks some would idle every step, and a vLLM engine that is only woken for weight
    pushes would be woken and put back to sleep for nothing."""
    import torch.distributed as dist

    n, world = cfg.algo.prompts_per_step, dist.get_world_size()
    if n < world:
        raise ConfigError(
            "algo.prompts_per_step",
            f"{n} prompt(s) a step for {world} ranks: every rank rolls out whole prompts, so {world - n} "
            f"would get none; set algo.prompts_per_step to at least {world} (a multiple of {world} keeps "
            "the ranks equally busy)",
        )


def rollout_precision(cfg: GRPOConfig) -> Precision:
    """The rollout engine's precision: `rollout.dtype` on `rollout.device` (`auto` follows the machine)."""
    return resolve_dtype(cfg.rollout.dtype, rollout_device(cfg), key="rollout.dtype")


def rollout_device(cfg: GRPOConfig) -> str:
    import torch

    if cfg.rollout.device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return cfg.rollout.device


def build_engine(cfg: GRPOConfig, hf_config: dict, tokenizer, dtype: str | None = None):
    """This rank's rollout engine, with the policy's architecture; its weights come from the first sync.

    Every rank rolls out (`grpo_rollout`), each engine holding the whole model: vLLM at tensor-parallel
    size 1 with its external launcher, which builds vLLM's groups over the trainer's whole world
    (`initialize_model_parallel`: `arange(world).reshape(-1, dp, pp, tp)`, one group per rank at tp 1).
    A vLLM engine sharded over the trainer's tensor-parallel group would need the group's ranks to step
    in lockstep, every tool observation included; not supported, so a model whose weights do not fit
    one GPU's vLLM share is refused up front (`check_rollout_fits`).
    """
    import torch

    device = rollout_device(cfg)
    dtype = dtype or rollout_precision(cfg).dtype
    from ..rollout.choice import choose_engine

    if choose_engine(cfg.rollout.engine, cfg.model.hf) == "vllm":
        from ..rollout.vllm_engine import VLLMRolloutEngine

        if torch.cuda.is_available():
            check_rollout_fits(
                checkpoint_bytes(cfg.model.hf),
                torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory,
                cfg.rollout.gpu_memory_utilization,
            )
        from ..models.registry import resolve_model

        return VLLMRolloutEngine(
            cfg.model.hf,
            dtype=dtype,
            gpu_memory_utilization=cfg.rollout.gpu_memory_utilization,
            enable_sleep_mode=cfg.rollout.sleep_between_steps,
            sleep_level=cfg.rollout.sleep_level,
            seed=cfg.train.seed,
            bucket_bytes=cfg.rollout.sync_bucket_mb << 20,
            max_model_len=cfg.env.max_tokens,
            threads=cfg.rollout.threads,
            cpu_kv_cache_gib=cfg.rollout.cpu_kv_cache_gib,
            # The first sync pushes the policy's weights before any rollout: reading the checkpoint would
            # be wasted (and `init: random` has none to read).
            load_format="dummy",
            tokenizer=resolve_model(cfg.tokenizer or cfg.model.hf),
        )
    from transformers import AutoConfig, AutoModelForCausalLM

    from ..rollout.hf_engine import HFRolloutEngine

    config = AutoConfig.for_model(**{k: v for k, v in hf_config.items() if k != "quantization_config"})
    model = AutoModelForCausalLM.from_config(config, dtype=torch_dtype(dtype)).to(device)
    return HFRolloutEngine(model, batch_size=cfg.rollout.batch_size, tokenizer=tokenizer)


def checkpoint_bytes(hf_dir: str) -> int:
    """The size of a Hugging Face checkpoint's weight files (0 when it names no local directory)."""
    from ..models.registry import resolve_model

    path = Path(resolve_model(hf_dir))
    if not path.is_dir():
        return 0
    return sum(f.stat().st_size for pattern in ("*.safetensors", "*.bin") for f in path.glob(pattern))


# The share of vLLM's memory the weights may take: the rest holds the KV cache and activations.
ROLLOUT_WEIGHT_SHARE = 0.8


def check_rollout_fits(weight_bytes: int, device_bytes: int, utilization: float) -> None:
    """Refuse a vLLM rollout whose whole-model copy leaves no room for a KV cache on one GPU."""
    budget = device_bytes * utilization
    if weight_bytes > ROLLOUT_WEIGHT_SHARE * budget:
        raise ConfigError(
            "rollout.gpu_memory_utilization",
            f"the policy's weights ({weight_bytes / 2**30:.1f} GiB) leave no room for a KV cache in vLLM's "
            f"share of one GPU ({utilization} x {device_bytes / 2**30:.0f} GiB): every rank rolls out with "
            "a whole copy of the model (vLLM tensor-parallel rollout is not supported); raise "
            "rollout.gpu_memory_utilization, or train a model whose weights fit one GPU",
        )


def build_simulator(cfg: GRPOConfig, run_dir: Path, replica: int = 0):
    """The ToolMaker's tools answered by the ToolActor (grounded, or played by `cfg.tool_llm`), or by a
    real engine over a corpus (`tools: retrieval`). The ToolActor keeps a replay cache in the run dir:
    part of the run's state, so a resumed run replays the observations it has seen, whatever the tool
    model would answer now. Each rollout replica appends to its own file (`sim_cache.jsonl`,
    `sim_cache.r1.jsonl`, ...) and replays every replica's, so a resumed run replays them whatever its
    number of replicas."""
    from ..sim import ActorSimulator
    from ..sim.sim_cache import SimCache
    from ..sim.toolactor import ToolActor
    from ..sim.toolmaker import ToolMaker

    if cfg.tools == "retrieval":
        # A real engine needs no replay cache: the same call always gets the same passages.
        from ..retrievers import open_retriever
        from ..sim import RetrievalSimulator

        return RetrievalSimulator(open_retriever(cfg.retrieval), cfg.retrieval, ToolMaker(cfg.toolmaker))
    own = run_dir / ("sim_cache.jsonl" if replica == 0 else f"sim_cache.r{replica}.jsonl")
    cache = SimCache(own)
    for other in sorted(run_dir.glob("sim_cache*.jsonl")):
        if other != own:
            cache.absorb(other)
    llm = cfg.tool_llm.client() if cfg.toolactor.backend == "llm" else None
    actor = ToolActor(cfg.toolactor, llm=llm, cache=cache)
    return ActorSimulator(ToolMaker(cfg.toolmaker), actor)


def sync_weights(engine, named_tensors) -> dict:
    """Push (HF name, tensor) pairs into this rank's engine; every rank takes part in the gathers over
    tensor- and pipeline-parallel groups that produce the whole tensors."""
    t0 = time.perf_counter()
    info = engine.update_weights(named_tensors)
    seconds = time.perf_counter() - t0
    gb = info.get("bytes", 0) / 1e9
    return {"timing_s/weight_sync": seconds, "grpo/weight_sync_gb_per_s": gb / seconds if seconds else 0.0}


def check_finite_rewards(rewards: list[float], step: int) -> None:
    import math

    bad = [i for i, r in enumerate(rewards) if not math.isfinite(r)]
    if bad:
        raise RewardNaNError(f"reward of episode {bad[0]} at step {step} is {rewards[bad[0]]}")


class RewardNaNError(RunFailure):
    pass
