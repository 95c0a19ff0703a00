"""GRPO's rollout phase on every rank: each rolls out its share of the step's prompts with its own engine
and tool simulator, then the scored episodes are gathered on every rank.

Every rank is a rollout replica: its engine holds the whole model (vLLM at tensor-parallel size 1, see
`grpo_setup.build_engine`), so the tensor- and pipeline-parallel peers of a data-parallel replica roll out
prompts of their own instead of waiting for one of them. Prompt `i` of the step goes to rank
`i mod world`, and its G episodes stay together. Each episode keeps its index in the whole step, both in
its sampling seeds (`run_episodes(seed_ids=...)`) and in the gathered order, so the episodes, rewards
and advantages are those of a single-rank run with the same seeds. Metrics are computed from the
gathered per-episode records, so they are the whole step's, whatever the number of replicas.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from ..reward import score_episode
from ..rollout.env import run_episodes
from ..rollout.episode import check_drift, drift_counts
from ..rollout.protocol import SamplingParams
from ..sim import open_groups
from ..sim.evidence import build_kb
from ..sim.fidelity import observation_stats, pool
from ..sim.simulators import toolsim_metrics
from .grpo_config import GRPOConfig


@dataclass
class EpisodeRecord:
    """What the trainer and the metrics need of one episode, small enough to gather."""

    index: int  # in the whole step: prompt * G + member
    episode: SimpleNamespace  # token_ids, loss_mask, engine_logprobs
    reward: float
    row: dict[str, Any]  # the episode's reward components and behaviour, for the step's means


def rollout_replica() -> tuple[int, int]:
    """This rank's index among the rollout replicas, and their number: every rank of the world."""
    import torch.distributed as dist

    if not dist.is_initialized():
        return 0, 1
    return dist.get_rank(), dist.get_world_size()


def rollout_share(engine, renderer, examples: list, simulator, cfg: GRPOConfig, step: int) -> dict:
    """Roll out and score this rank's prompts of the step (`examples[rank::world]`)."""
    replica, replicas = rollout_replica()
    g = cfg.algo.group_size
    prompts = list(range(replica, len(examples), replicas))
    seed_ids = [i * g + k for i in prompts for k in range(g)]
    t = time.perf_counter()
    actor = getattr(simulator, "actor", None)
    noise = actor.set_step(step) if hasattr(actor, "set_step") else 0.0  # the noise curriculum
    before = simulator.metrics()
    setups = open_groups(simulator, [examples[i] for i in prompts], g, seed=cfg.train.seed)
    params = SamplingParams(
        temperature=cfg.algo.temperature,
        top_p=cfg.algo.top_p,
        top_k=cfg.algo.top_k,
        seed=cfg.train.seed * 100_003 + step,
    )
    episodes = run_episodes(engine, renderer, setups, params, cfg.env, seed_ids=seed_ids)
    engine.sleep()  # the trainer's turn; the next weight push wakes the engine
    rollout_s = time.perf_counter() - t
    t = time.perf_counter()
    records = [_record(i, ep, renderer, cfg) for i, ep in zip(seed_ids, episodes, strict=True)]
    return {
        "records": records,
        "toolsim": toolsim_metrics(before, simulator.metrics(), "grpo/"),
        "gauges": {"grpo/toolsim/noise": noise},
        "timings": {"timing_s/rollout": rollout_s, "timing_s/reward": time.perf_counter() - t},
    }


def _record(index: int, ep, renderer, cfg: GRPOConfig) -> EpisodeRecord:
    score = score_episode(ep.messages, ep.tools, ep.example, cfg.reward, n_tokens=ep.n_tokens)
    row = {
        **score.metrics(prefix="grpo/reward/"),
        "response_length": ep.n_generated,
        "turns": ep.turns,
        "tool_calls": ep.tool_calls,
        "invalid_calls": ep.invalid_calls,
        "finish": ep.finish,
        "drift": check_drift(ep, renderer).kind,
        "fidelity": observation_stats(
            ep.messages, list(ep.example.answers), build_kb(ep.example).gold_titles()
        ),
    }
    slim = SimpleNamespace(token_ids=ep.token_ids, loss_mask=ep.loss_mask, engine_logprobs=ep.engine_logprobs)
    return EpisodeRecord(index, slim, score.total, row)


def gather_rollouts(share: dict) -> dict:
    """Every rank's share, on every rank: the step's episodes and rewards in step order, and its metrics
    (counts summed, phase times the slowest replica's)."""
    import torch.distributed as dist

    shares = [share]
    if dist.get_world_size() > 1:
        shares = [None] * dist.get_world_size()
        dist.all_gather_object(shares, share)
    records = sorted((r for s in shares for r in s["records"]), key=lambda r: r.index)
    metrics = episode_metrics([r.row for r in records])
    for s in shares:
        for k, v in s["toolsim"].items():
            metrics[k] = metrics.get(k, 0) + v
        for k, v in [*s["timings"].items(), *s.get("gauges", {}).items()]:
            metrics[k] = max(metrics.get(k, 0.0), v)
    return {
        "episodes": [r.episode for r in records],
        "rewards": [r.reward for r in records],
        "metrics": metrics,
    }


def episode_metrics(rows: list[dict]) -> dict:
    """The step's means over episodes (reward components, EM / F1, length, turns, calls, how episodes
    ended) and its retokenization-drift counts."""
    n = max(len(rows), 1)
    out: dict[str, float] = {}
    for row in rows:
        for k, v in row.items():
            if k.startswith("grpo/reward/"):
                out[k] = out.get(k, 0.0) + v / n
    out["grpo/em"] = out.pop("grpo/reward/em", 0.0)
    out["grpo/f1"] = out.pop("grpo/reward/f1", 0.0)
    for key in ("response_length", "turns", "tool_calls", "invalid_calls"):
        out[f"grpo/{key}"] = sum(r[key] for r in rows) / n
    for reason in sorted({r["finish"] for r in rows}):
        out[f"grpo/finish/{reason}"] = sum(r["finish"] == reason for r in rows) / n
    out.update(drift_counts([r["drift"] for r in rows]))
    fid = pool([r["fidelity"] for r in rows if "fidelity" in r])
    for key in ("answer_present", "answer_seen", "empty", "obs_tokens", "recall_hop1", "recall_hop2"):
        if fid[key] is not None:
            out[f"grpo/fidelity/{key}"] = fid[key]
    return out
