"""Stage 2: GRPO against simulated tools (`mtr grpo`).

One step, as the algorithm reads:
1. roll out G episodes per prompt with the rollout engine in the multi-turn environment;
2. score them with the composite reward, and turn rewards into group advantages;
3. recompute the old (and reference) log-probs with the trainer;
4. take `minibatches` clipped-policy updates;
5. push the new weights into the engine.
Setup, resume, logging, checkpoints and the export are the shared loop's (`train.loop`).

Rollouts run on global rank 0 (the engine lives there) and are broadcast; every data-parallel rank
trains on its slice of the episodes, every tensor-parallel rank joins the weight gather for the sync.
"""

from __future__ import annotations

import time

import torch

from ..data.example import example_key
from ..reward import score_episode
from ..rollout.env import run_episodes
from ..rollout.episode import drift_metrics
from ..rollout.protocol import SamplingParams
from ..sim import open_groups
from ..sim.simulators import toolsim_metrics
from ..trace.chat_format import read_tools_format
from ..trace.render import ChatRenderer
from .grpo_batch import sample_of
from .grpo_config import GRPOConfig
from .grpo_loss import drop_uniform_groups, group_advantages
from .grpo_setup import (
    RewardNaNError,
    build_engine,
    build_simulator,
    check_finite_rewards,
    load_prompts,
    sync_weights,
)
from .grpo_update import policy_update
from .loop import TrainRun
from .model_io import hf_named_tensors
from .sft_data import RowSampler


def run_grpo(cfg: GRPOConfig) -> dict:
    import torch.distributed as dist
    from megatron.core import parallel_state as ps

    run = TrainRun.setup("grpo", cfg)
    tp_group = ps.get_tensor_model_parallel_group() if cfg.model.tp > 1 else None
    renderer = ChatRenderer(run.tokenizer, tools_format=read_tools_format(run.src.hf_dir))
    pad_id = run.pad_id(renderer)
    questions = load_prompts(cfg)
    run.record_trained_on(example_key(ex.benchmark, ex.id) for ex in questions)
    simulator = build_simulator(cfg, run.run_dir)
    engine = build_engine(cfg, run.src.hf_config, run.tokenizer, dist.get_rank())

    reference = run.start(with_reference=cfg.algo.kl_coef > 0)
    # The engine starts from the policy's weights, whatever it loaded on its own.
    sync_weights(engine, hf_named_tensors(run.policy, run.src), run.rank0)

    def step_fn(step: int, examples) -> dict:
        timings: dict = {}
        # 1. Roll out (rank 0) and score; every rank receives the scored episodes.
        t = time.perf_counter()
        payload = None
        if run.rank0:
            payload = rollout_and_score(engine, renderer, examples, simulator, cfg, step, timings)
        payload = _broadcast(payload)
        rewards = payload["rewards"]
        try:
            check_finite_rewards(rewards, step)
        except RewardNaNError:
            run.save(step)
            raise
        timings.setdefault("timing_s/rollout", time.perf_counter() - t)

        # 2. Group advantages; optionally drop groups without signal.
        r = torch.tensor(rewards, dtype=torch.float32)
        adv = group_advantages(r, cfg.algo.group_size, cfg.algo.scale_std, cfg.algo.adv_eps)
        keep = (
            drop_uniform_groups(r, cfg.algo.group_size)
            if cfg.algo.drop_uniform_groups
            else torch.ones_like(r, dtype=torch.bool)
        )
        episodes = zip(payload["episodes"], adv.tolist(), keep.tolist(), strict=True)
        samples = [sample_of(ep, float(a)) for ep, a, k in episodes if k]

        # 3-4. Old (and reference) log-probs by the trainer, then the clipped-policy updates. `samples`
        # is the same on every rank, so either all ranks train or none does.
        train_metrics = {}
        if samples:
            train_metrics = policy_update(
                run.seam, run.model, reference, run.optimizer, samples, cfg, tp_group, pad_id, step, timings
            )

        # 5. New weights into the engine.
        timings.update(sync_weights(engine, hf_named_tensors(run.policy, run.src), run.rank0))
        return {**payload["metrics"], **train_metrics, **timings, "grpo/kept_samples": len(samples)}

    batches = RowSampler(questions, cfg.algo.prompts_per_step, cfg.train.seed).batches(run.position)
    metrics, preempted = run.loop(batches, step_fn, _postfix)
    return run.finish(metrics, preempted, renderer.tools_format)


def rollout_and_score(
    engine, renderer, examples, simulator, cfg: GRPOConfig, step: int, timings: dict
) -> dict:
    t = time.perf_counter()
    sim_before = simulator.metrics()
    setups = open_groups(simulator, examples, cfg.algo.group_size, seed=cfg.train.seed)
    params = SamplingParams(
        temperature=cfg.algo.temperature,
        top_p=cfg.algo.top_p,
        top_k=cfg.algo.top_k,
        seed=cfg.train.seed * 100_003 + step,
    )
    episodes = run_episodes(engine, renderer, setups, params, cfg.env)
    engine.sleep()  # the trainer's turn; the next weight push wakes the engine
    timings["timing_s/rollout"] = time.perf_counter() - t
    t = time.perf_counter()
    scores = [
        score_episode(ep.messages, ep.tools, ep.example, cfg.reward, n_tokens=ep.n_tokens) for ep in episodes
    ]
    timings["timing_s/reward"] = time.perf_counter() - t
    return {
        "episodes": [_slim(ep) for ep in episodes],
        "rewards": [s.total for s in scores],
        "metrics": {
            **episode_metrics(episodes, scores, renderer),
            **toolsim_metrics(sim_before, simulator.metrics(), "grpo/"),
        },
    }


def episode_metrics(episodes, scores, renderer) -> dict:
    n = max(len(episodes), 1)
    out = {}
    for s in scores:
        for k, v in s.metrics(prefix="grpo/reward/").items():
            out[k] = out.get(k, 0.0) + v / n
    out["grpo/em"] = out.pop("grpo/reward/em", 0.0)
    out["grpo/f1"] = out.pop("grpo/reward/f1", 0.0)
    out["grpo/response_length"] = sum(ep.n_generated for ep in episodes) / n
    out["grpo/turns"] = sum(ep.turns for ep in episodes) / n
    out["grpo/tool_calls"] = sum(ep.tool_calls for ep in episodes) / n
    out["grpo/invalid_calls"] = sum(ep.invalid_calls for ep in episodes) / n
    for reason in sorted({ep.finish for ep in episodes}):
        out[f"grpo/finish/{reason}"] = sum(ep.finish == reason for ep in episodes) / n
    out.update(drift_metrics(episodes, renderer))
    return out


def _slim(ep):
    """What the trainer needs of an episode (no example evidence to broadcast)."""
    from types import SimpleNamespace

    return SimpleNamespace(token_ids=ep.token_ids, loss_mask=ep.loss_mask, engine_logprobs=ep.engine_logprobs)


def _broadcast(obj):
    import torch.distributed as dist

    if dist.get_world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _postfix(m: dict) -> dict[str, str]:
    phases = {"t_" + k.split("/")[-1]: f"{v:.1f}s" for k, v in m.items() if k.startswith("timing_s/")}
    return {"reward": f"{m.get('grpo/reward/total', 0.0):.3f}", **phases}
