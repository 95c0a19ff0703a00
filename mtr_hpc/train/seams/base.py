"""The seam protocol, the contract of the loss functions it runs, and the optimizer config.

Contract (both seams, every pass):

- `forward_step(data_iterator, model) -> (output, loss_func)` and `loss_func(output) -> (loss_sum,
  num_tokens, report)`: the summed loss of the microbatch (a scalar tensor carrying the gradient), its
  token count (an integer tensor) and the caller's report (anything). This is Megatron's three-value
  form under `calculate_per_token_loss=True`.
- `forward_backward` returns (loss, tokens, reports): `loss` and `tokens` summed over the microbatches
  and data-parallel ranks and known on every rank (the seam records them as the loss functions return
  them; it never looks inside a report); `reports` are this rank's reports, one per microbatch, on the
  last pipeline stage (empty on the others).
- Training passes leave gradients of `sum(loss_sum) / sum(num_tokens)` over the whole step (all
  microbatches and data-parallel ranks). Forward-only passes build no autograd graph.
- A rank may get no microbatches (an empty data-parallel slice): it contributes zero loss, zero tokens
  and zero gradients, and joins every collective the other ranks make.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch


@dataclass
class OptimConfig:
    lr: float = 1e-5
    min_lr: float = 0.0
    warmup_steps: int = 0
    weight_decay: float = 0.0  # not applied to biases and norm weights (1-D parameters)
    adam_beta1: float = 0.9
    adam_beta2: float = 0.95
    adam_eps: float = 1e-8
    clip_grad: float = 1.0
    use_distributed_optimizer: bool = True  # GPU seam only: ZeRO-1 sharding of the optimizer state

    def __post_init__(self) -> None:
        from ...config import check_min
        from ...errors import ConfigError

        check_min(
            "optim.", self, lr=0.0, min_lr=0.0, warmup_steps=0, weight_decay=0.0, adam_eps=0.0, clip_grad=0.0
        )
        if self.min_lr > self.lr:
            raise ConfigError("optim.min_lr", f"{self.min_lr} is above optim.lr={self.lr}")
        for key in ("adam_beta1", "adam_beta2"):
            if not 0.0 <= getattr(self, key) < 1.0:
                raise ConfigError(f"optim.{key}", f"must be in [0, 1), got {getattr(self, key)}")


class DeviceSeam(Protocol):
    name: str
    device: str  # where the models it trains are built: cpu | cuda
    dtype: str  # the precision it computes in: fp32 | bf16 | fp16
    params_dtype: str  # the dtype its models are built in (fp32 under the CPU seam's bf16 autocast)

    def wrap_model(self, model): ...

    def wrap_frozen(self, model):
        """A model that is only evaluated (GRPO's reference policy), in the trained model's precision and
        output dtype, without data-parallel wrapping or gradients."""
        ...

    def build_optimizer(self, model, cfg: OptimConfig): ...

    def forward_backward(
        self, model, forward_step: Callable, microbatches: list[dict], forward_only: bool = False
    ) -> tuple[float, int, list[Any]]: ...

    def optimizer_step(self, model, optimizer, lr: float, clip_grad: float) -> tuple[float, bool]:
        """Clip, step, zero grads; return (grad norm before clipping, skipped)."""
        ...

    def zero_grads(self, model, optimizer) -> None:
        """Drop the accumulated gradients without stepping (a pass that saw no token on any rank)."""
        ...

    def to_device(self, batch: dict[str, Any]) -> dict[str, Any]: ...

    def save(self, path: Path, model, optimizer, extra: dict[str, Any]) -> None: ...

    def load(self, path: Path, model, optimizer) -> dict[str, Any]: ...

    def unwrap(self, model): ...


def recording(forward_step: Callable, totals: list[torch.Tensor]) -> Callable:
    """`forward_step` whose loss functions also append [loss_sum, num_tokens] (float64, detached) to
    `totals`: how a seam learns the sums without reading the caller's reports."""

    def step(data_iterator, model):
        output, loss_func = forward_step(data_iterator, model)

        def recorded(output_tensor):
            loss_sum, num_tokens, report = loss_func(output_tensor)
            totals.append(torch.stack([loss_sum.detach().double(), num_tokens.detach().double()]))
            return loss_sum, num_tokens, report

        return output, recorded

    return step


def summed(totals: list[torch.Tensor], device) -> torch.Tensor:
    """[loss, tokens] of the recorded microbatches (zeros for none), float64 on `device`."""
    if not totals:
        return torch.zeros(2, dtype=torch.float64, device=device)
    return torch.stack(totals).to(device).sum(0)
