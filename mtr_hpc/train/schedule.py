"""Learning-rate schedule: linear warmup, then cosine decay to `min_lr`.

Stateless by design: the rate is a pure function of the step, so a resumed run needs nothing but the
step counter to continue on the same curve. Steps are optimizer steps in SFT and policy steps (one
rollout batch) in GRPO: every minibatch update of a GRPO step uses that step's rate, so `warmup_steps`
means the same thing in both stages.
"""

from __future__ import annotations

import math

from .seams.base import OptimConfig


def lr_at(step: int, total_steps: int, cfg: OptimConfig) -> float:
    """Rate for step `step` (0-based) of `total_steps`."""
    if cfg.warmup_steps > 0 and step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    span = max(1, total_steps - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1.0 + math.cos(math.pi * progress))
