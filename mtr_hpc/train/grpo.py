"""Stage 2: GRPO against simulated tools (`mtr grpo`).

One step, as the algorithm reads: roll out G episodes per prompt with the rollout engine in the
multi-turn environment, score them with the composite reward, turn rewards into group advantages,
recompute old (and reference) log-probs with the trainer, take `minibatches` clipped-policy updates,
push the new weights into the engine, log, checkpoint.

Rollouts run on global rank 0 (the engine lives there) and are broadcast; every data-parallel rank
trains on its slice of the episodes, every tensor-parallel rank joins the weight gather for the sync.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from ..config import to_dict
from ..data.example import example_key
from ..data.trained_on import write_trained_on
from ..models.parallel import init_parallel
from ..models.registry import load_tokenizer
from ..reward import score_episode
from ..rollout.env import run_episodes
from ..rollout.episode import drift_metrics, open_setups
from ..rollout.protocol import SamplingParams
from ..rundir import prepare_run_dir, write_manifest
from ..trace.chat_format import read_tools_format
from ..trace.render import ChatRenderer
from ..tracking import MetricsLogger
from . import checkpoint as ckpt
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
from .model_io import build_policy, export_hf, hf_named_tensors, policy_source
from .preempt import PreemptionFlag
from .seams import get_seam
from .sft_data import DataPosition, RowSampler


def run_grpo(cfg: GRPOConfig) -> dict:
    import torch.distributed as dist
    from megatron.core import parallel_state as ps

    init_parallel(cfg.model.tp, cfg.model.pp, seed=cfg.train.seed, timeout_min=cfg.train.dist_timeout_min)
    rank0 = dist.get_rank() == 0
    dp_size = ps.get_data_parallel_world_size()
    tp_group = ps.get_tensor_model_parallel_group() if cfg.model.tp > 1 else None
    seam = get_seam(
        cfg.device, dtype=cfg.model.dtype, use_distributed_optimizer=cfg.optim.use_distributed_optimizer
    )
    run_dir = Path(cfg.out)
    if rank0:
        prepare_run_dir(
            run_dir,
            cfg,
            ignore_keys=("train.steps", "train.dist_timeout_min", "resume", "export_hf", "wandb"),
        )
    dist.barrier()

    src = policy_source(cfg.model)
    tokenizer = load_tokenizer(cfg.tokenizer or cfg.model.hf)
    renderer = ChatRenderer(tokenizer, tools_format=read_tools_format(src.hf_dir))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else renderer.end_of_turn_id
    questions = load_prompts(cfg)
    if rank0:
        keys = (example_key(ex.benchmark, ex.id) for ex in questions)
        write_trained_on(run_dir, "grpo", keys, cfg.model.hf)
    prompts = RowSampler(questions, cfg.algo.prompts_per_step, cfg.train.seed)
    toolmaker, actor = build_simulator(cfg, run_dir)
    engine = build_engine(cfg, src.hf_config, tokenizer, dist.get_rank())

    model = seam.wrap_model(build_policy(cfg.model, src, cfg.init, seam.device))
    optimizer = seam.build_optimizer(model, cfg.optim)
    reference = None
    if cfg.algo.kl_coef > 0:
        # The frozen initial policy. Checkpoints do not hold it: a resumed run builds the same initial
        # weights (the same source, or the same seeds for `init=random`) before loading its checkpoint.
        reference = build_policy(cfg.model, src, cfg.init, seam.device).eval()
        reference.load_state_dict(seam.unwrap(model).state_dict())
    ckpt_root = run_dir / "checkpoints"
    topo = ckpt.topology(cfg.model, dp_size)
    start_step, pos, _ = ckpt.resume(seam, model, optimizer, ckpt_root, topo, cfg.resume)
    position = DataPosition(**pos) if pos else DataPosition()
    # The engine starts from the policy's weights, whatever it loaded on its own.
    sync_weights(engine, hf_named_tensors(seam.unwrap(model), src), rank0)

    logger = (
        MetricsLogger(run_dir, "grpo", cfg.wandb, to_dict(cfg), resume_step=start_step - 1) if rank0 else None
    )
    batches = prompts.batches(position)

    def save(step_done: int) -> None:
        ckpt.save_step(seam, model, optimizer, ckpt_root, step_done, position, topo, cfg.train.keep_last)

    bar = ckpt.progress_bar(rank0, start_step, cfg.train.steps, "grpo")
    preempt = PreemptionFlag()
    metrics: dict = {}
    preempted = False
    for step in range(start_step, cfg.train.steps):
        timings: dict = {}
        examples, position = next(batches)

        # 1. Roll out (rank 0) and score; every rank receives the scored episodes.
        t = time.perf_counter()
        payload = None
        if rank0:
            payload = rollout_and_score(engine, renderer, examples, toolmaker, actor, cfg, step, timings)
        payload = _broadcast(payload)
        rewards = payload["rewards"]
        try:
            check_finite_rewards(rewards, step)
        except RewardNaNError:
            save(step)
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
        samples = [
            sample_of(ep, float(a))
            for ep, a, k in zip(payload["episodes"], adv.tolist(), keep.tolist(), strict=True)
            if k
        ]

        # 3-4. Old (and reference) log-probs by the trainer, then the clipped-policy updates. `samples`
        # is the same on every rank, so either all ranks train or none does.
        train_metrics = {}
        if samples:
            train_metrics = policy_update(
                seam, model, reference, optimizer, samples, cfg, tp_group, pad_id, step, timings
            )

        # 5. New weights into the engine.
        timings.update(sync_weights(engine, hf_named_tensors(seam.unwrap(model), src), rank0))

        metrics = {**payload["metrics"], **train_metrics, **timings, "grpo/kept_samples": len(samples)}
        if logger is not None:
            logger.log(step, metrics)
        done = step + 1
        preempted = preempt.agreed()
        if done % cfg.train.save_every == 0 or done == cfg.train.steps or preempted:
            save(done)
        _tick(bar, metrics)
        if preempted:
            break

    if bar is not None:
        bar.close()
    preempt.restore()
    export = cfg.export_hf and not preempted
    hf_dir = (
        export_hf(seam.unwrap(model), src, tokenizer, run_dir / "hf", renderer.tools_format)
        if export
        else None
    )
    summary = {
        "steps": cfg.train.steps,
        "final": metrics,
        "hf_dir": str(hf_dir) if hf_dir else None,
        "preempted": preempted,
    }
    if logger is not None:
        logger.summary(metrics)
        logger.close()
        write_manifest(run_dir, "grpo", **summary)
    return summary


def rollout_and_score(
    engine, renderer, examples, toolmaker, actor, cfg: GRPOConfig, step: int, timings: dict
) -> dict:
    t = time.perf_counter()
    setups = open_setups(examples, toolmaker, actor, cfg.algo.group_size, seed=cfg.train.seed)
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
        "metrics": episode_metrics(episodes, scores, renderer),
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


def _tick(bar, m: dict) -> None:
    if bar is None:
        return
    phases = {"t_" + k.split("/")[-1]: f"{v:.1f}s" for k, v in m.items() if k.startswith("timing_s/")}
    bar.set_postfix(reward=f"{m.get('grpo/reward/total', 0.0):.3f}", **phases, refresh=False)
    bar.update(1)
