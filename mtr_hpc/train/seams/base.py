"""The seam protocol and the optimizer config both implementations read."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol


@dataclass
class OptimConfig:
    lr: float = 1e-5
    min_lr: float = 0.0
    warmup_steps: int = 0
    weight_decay: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.95
    adam_eps: float = 1e-8
    clip_grad: float = 1.0
    use_distributed_optimizer: bool = True  # GPU seam only


@dataclass
class StepResult:
    loss: float  # masked token mean over the whole step
    tokens: int  # masked-in tokens of the step (all DP ranks)
    grad_norm: float
    skipped: bool = False
    extra: dict[str, float] = field(default_factory=dict)


class DeviceSeam(Protocol):
    name: str

    def wrap_model(self, model): ...

    def build_optimizer(self, model, cfg: OptimConfig): ...

    def forward_backward(
        self, model, forward_step: Callable, microbatches: list[dict], forward_only: bool = False
    ) -> tuple[float, int, list[dict]]:
        """Run every microbatch; return (summed masked loss, masked tokens, per-microbatch reports).

        Loss and tokens are summed over all DP ranks; the reports are this rank's (last pipeline stage),
        whatever the loss function put in its third return value. With `forward_only=False` gradients
        are accumulated and already divided by the token count of the whole step.
        """
        ...

    def optimizer_step(self, model, optimizer, lr: float, clip_grad: float) -> tuple[float, bool]:
        """Clip, step, zero grads; return (grad norm, skipped)."""
        ...

    def to_device(self, batch: dict[str, Any]) -> dict[str, Any]: ...

    def save(self, path: Path, model, optimizer, extra: dict[str, Any]) -> None: ...

    def load(self, path: Path, model, optimizer) -> dict[str, Any]: ...

    def unwrap(self, model): ...


MicrobatchIter = Iterator[dict[str, Any]]
