"""What the GRPO driver builds once: prompts, the rollout engine, the simulated tools, weight sync."""

from __future__ import annotations

import time
from pathlib import Path

from ..data import load_benchmark, load_sample
from ..data.splits import require_training_part, select_part
from ..errors import ConfigError, RunFailure
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


def build_engine(cfg: GRPOConfig, hf_config: dict, tokenizer, rolls_out: bool):
    """The rollout engine of a rollout rank (`grpo_rollout.rollout_rank`), with the policy's
    architecture; its weights come from the first sync. Other ranks get None, except with vLLM (below).

    vLLM's external launcher creates its process groups over the whole world, so with vLLM every rank
    builds an engine (one GPU each, `tensor_parallel_size=1`). The engines of ranks that do not roll
    out go to sleep at once, discarding their weights (level 2), and are never woken.
    """
    import torch

    device = cfg.rollout.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if cfg.rollout.engine == "vllm":
        from ..rollout.vllm_engine import VLLMRolloutEngine

        engine = VLLMRolloutEngine(
            cfg.model.hf,
            dtype=cfg.rollout.dtype,
            gpu_memory_utilization=cfg.rollout.gpu_memory_utilization,
            enable_sleep_mode=cfg.rollout.sleep_between_steps or not rolls_out,
            sleep_level=cfg.rollout.sleep_level if rolls_out else 2,
            seed=cfg.train.seed,
            bucket_bytes=cfg.rollout.sync_bucket_mb << 20,
        )
        if not rolls_out:
            engine.sleep()
        return engine
    if not rolls_out:
        return None
    from transformers import AutoConfig, AutoModelForCausalLM

    from ..rollout.hf_engine import DTYPES, HFRolloutEngine

    config = AutoConfig.for_model(**{k: v for k, v in hf_config.items() if k != "quantization_config"})
    model = AutoModelForCausalLM.from_config(config, dtype=DTYPES[cfg.rollout.dtype]).to(device)
    return HFRolloutEngine(model, batch_size=cfg.rollout.batch_size, tokenizer=tokenizer)


def build_simulator(cfg: GRPOConfig, run_dir: Path, dp_rank: int = 0):
    """The ToolMaker's tools answered by the ToolActor (grounded, or played by `cfg.tool_llm`), or by a
    real engine over a corpus (`tools: retrieval`). The ToolActor keeps a replay cache in the run dir: part of the run's state, so a resumed run replays the observations it
    has seen, whatever the tool model would answer now. Each data-parallel replica appends to its own
    file (`sim_cache.jsonl`, `sim_cache.dp1.jsonl`, ...) and replays every replica's, so a resumed run
    replays them whatever its number of replicas."""
    from ..sim import ActorSimulator
    from ..sim.sim_cache import SimCache
    from ..sim.toolactor import ToolActor
    from ..sim.toolmaker import ToolMaker

    if cfg.tools == "retrieval":
        # A real engine needs no replay cache: the same call always gets the same passages.
        from ..sim import RetrievalSimulator
        from ..sim.retrieval_env import CorpusIndex, corpus_path

        index = CorpusIndex.load(corpus_path(cfg.retrieval.corpus), skip_bad=cfg.retrieval.skip_bad)
        return RetrievalSimulator(index, cfg.retrieval, ToolMaker(cfg.toolmaker))
    own = run_dir / ("sim_cache.jsonl" if dp_rank == 0 else f"sim_cache.dp{dp_rank}.jsonl")
    cache = SimCache(own)
    for other in sorted(run_dir.glob("sim_cache*.jsonl")):
        if other != own:
            cache.absorb(other)
    llm = cfg.tool_llm.client() if cfg.toolactor.backend == "llm" else None
    actor = ToolActor(cfg.toolactor, llm=llm, cache=cache)
    return ActorSimulator(ToolMaker(cfg.toolmaker), actor)


def sync_weights(engine, named_tensors, rolls_out: bool) -> dict:
    """Push (HF name, tensor) pairs into this rank's engine; every rank iterates (the tensors are
    gathered over tensor- and pipeline-parallel groups), ranks without an engine drop what they get."""
    t0 = time.perf_counter()
    if rolls_out:
        info = engine.update_weights(named_tensors)
    else:
        info = {"bytes": 0}
        for _ in named_tensors:
            pass
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
