"""Stage 2: GRPO against simulated tools (`mtr grpo`).

One step, as the algorithm reads:
1. roll out G episodes per prompt in the multi-turn environment and score them with the composite
   reward, each rank its share of the prompts;
2. turn rewards into group advantages;
3. recompute the old (and reference) log-probs with the trainer;
4. take `minibatches` clipped-policy updates;
5. push the new weights into the engine.
Setup, resume, logging, checkpoints and the export are the shared loop's (`train.loop`).

Every rank rolls out its share of the prompts with its own engine, and the scored episodes are gathered
on every rank (`grpo_rollout`); every data-parallel rank trains on its slice of the episodes, and every
rank gathers the whole weights for its engine's sync.
"""

from __future__ import annotations

import sys
from functools import partial

import torch

from ..data.example import example_key
from ..trace.chat_format import read_tools_format
from ..trace.render import ChatRenderer
from .grpo_batch import sample_of
from .grpo_config import GRPOConfig
from .grpo_loss import drop_uniform_groups, group_advantages
from .grpo_rollout import gather_rollouts, rollout_replica, rollout_share
from .grpo_setup import (
    RewardNaNError,
    build_engine,
    build_simulator,
    check_finite_rewards,
    check_replicas,
    load_prompts,
    rollout_precision,
    sync_weights,
)
from .grpo_update import policy_update
from .loop import TrainRun
from .model_io import hf_named_tensors
from .sft_data import RowSampler


def run_grpo(cfg: GRPOConfig) -> dict:
    from megatron.core import parallel_state as ps

    run = TrainRun.setup("grpo", cfg, check=partial(check_replicas, cfg))
    tp_group = ps.get_tensor_model_parallel_group() if cfg.model.tp > 1 else None
    renderer = ChatRenderer(run.tokenizer, tools_format=read_tools_format(run.src.hf_dir))
    pad_id = run.pad_id(renderer)
    questions = load_prompts(cfg)
    run.record_trained_on(example_key(ex.benchmark, ex.id) for ex in questions)
    simulator = build_simulator(cfg, run.run_dir, rollout_replica()[0])
    precision = rollout_precision(cfg)
    if run.rank0:
        print(f"grpo: rollout {precision.describe()}", file=sys.stderr)
    engine = build_engine(cfg, run.src.hf_config, run.tokenizer, precision.dtype)

    reference = run.start(with_reference=cfg.algo.kl_coef > 0)
    # The engine starts from the policy's weights, whatever it loaded on its own.
    sync_weights(engine, hf_named_tensors(run.policy, run.src))

    def step_fn(step: int, examples) -> dict:
        timings: dict = {}
        # 1. Every rank rolls out and scores its share of the prompts, and receives the whole step's
        # scored episodes.
        payload = gather_rollouts(rollout_share(engine, renderer, examples, simulator, cfg, step))
        # A rollout can take most of a step: stop here, before the update, when the job must stop.
        run.check_stop()
        rewards = payload["rewards"]
        try:
            check_finite_rewards(rewards, step)
        except RewardNaNError:
            run.save_failed_step(step)
            raise

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
        timings.update(sync_weights(engine, hf_named_tensors(run.policy, run.src)))
        return {**payload["metrics"], **train_metrics, **timings, "grpo/kept_samples": len(samples)}

    batches = RowSampler(questions, cfg.algo.prompts_per_step, cfg.train.seed).batches(run.position)
    try:
        metrics, preempted = run.loop(batches, step_fn, _postfix)
    finally:
        getattr(engine, "close", lambda: None)()  # vLLM: its engine core and process groups
    return run.finish(metrics, preempted, renderer.tools_format, rollout_precision=precision.to_dict())


def _postfix(m: dict) -> dict[str, str]:
    phases = {"t_" + k.split("/")[-1]: f"{v:.1f}s" for k, v in m.items() if k.startswith("timing_s/")}
    return {"reward": f"{m.get('grpo/reward/total', 0.0):.3f}", **phases}
