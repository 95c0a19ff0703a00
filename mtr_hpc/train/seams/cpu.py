"""CPU seam: plain torch around the same Megatron model (gloo for TP and DP).

Departures from the GPU seam, all numerically equivalent: gradients are all-reduced over the
data-parallel group by hand (one flattened buffer) instead of Megatron DDP's buckets; the optimizer is
torch's fused AdamW instead of Megatron's (distributed) optimizer; microbatches run in a plain loop (no
pipeline parallelism on CPU); checkpoints are one torch file per rank.

Precision: `dtype="bf16"` trains under `torch.autocast("cpu", bfloat16)` over fp32 weights, where the GPU
seam holds bf16 weights with fp32 main parameters in its optimizer. Both keep fp32 master weights and
optimizer state; here the gradients are fp32 too, and checkpoints are the same files as in fp32.
Forward-only passes (GRPO's log-probs and reference policy) run under the same autocast as training, so
the trainer scores tokens in the precision it trains in.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from ...errors import ConfigError
from ..checkpoint import check_shapes, rng_state, set_rng_state
from .base import OptimConfig, recording, summed


class CpuSeam:
    name = "cpu"
    device = "cpu"  # where models for this seam are built

    def __init__(self, dtype: str = "fp32", **_: Any):
        if dtype not in ("fp32", "bf16"):
            raise ConfigError(
                "model.dtype", f"'{dtype}' on a CPU: train in fp32 or bf16 (fp16 needs a GPU's loss scaling)"
            )
        self.dtype = dtype
        self.params_dtype = "fp32"  # bf16 is autocast over fp32 weights

    @contextlib.contextmanager
    def _precision(self):
        if self.dtype != "bf16":
            yield
            return
        with torch.autocast("cpu", dtype=torch.bfloat16), warnings.catch_warnings():
            # RMSNorm meets a bf16 activation and its fp32 weight under autocast; torch then takes its
            # composite kernel (in fp32, as autocast intends) and warns on every layer of every step.
            warnings.filterwarnings("ignore", message="Mismatch dtype between input and weight")
            yield

    def wrap_model(self, model):
        from megatron.core import parallel_state as ps

        if ps.get_pipeline_model_parallel_world_size() > 1:
            raise ConfigError("model.pp", "pipeline parallelism needs the GPU seam (Megatron schedules)")
        return model

    def wrap_frozen(self, model):
        return self.wrap_model(model).eval().requires_grad_(False)

    def unwrap(self, model):
        return model

    def build_optimizer(self, model, cfg: OptimConfig):
        decay, no_decay = [], []
        for name, p in model.named_parameters():
            if not p.requires_grad:
                continue
            (no_decay if p.dim() < 2 or name.endswith(".bias") else decay).append(p)
        groups = [
            {"params": decay, "weight_decay": cfg.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
        # Fused: one kernel over every parameter, where the per-parameter loop took about a tenth of
        # a 135M model's step on 2 cores.
        return torch.optim.AdamW(
            groups, lr=cfg.lr, betas=(cfg.adam_beta1, cfg.adam_beta2), eps=cfg.adam_eps, fused=True
        )

    def to_device(self, batch: dict[str, Any]) -> dict[str, Any]:
        return batch

    def forward_backward(
        self, model, forward_step: Callable, microbatches: list[dict], forward_only: bool = False
    ) -> tuple[float, int, list]:
        """See `base` for the contract."""
        it = iter(microbatches)
        reports, recorded = [], []
        step = recording(forward_step, recorded)
        with torch.no_grad() if forward_only else torch.enable_grad(), self._precision():
            for _ in microbatches:
                output, loss_func = step(it, model)
                loss_sum, _, report = loss_func(output)
                reports.append(report)
                if not forward_only:
                    loss_sum.backward()
        totals = summed(recorded, "cpu")
        group = _dp_group()
        if group is not None:
            dist.all_reduce(totals, group=group)
        if not forward_only:
            self._finalize_grads(model, totals[1].item())
        return totals[0].item(), int(totals[1].item()), reports

    def _finalize_grads(self, model, step_tokens: float) -> None:
        params = [p for p in model.parameters() if p.requires_grad]
        group = _dp_group()
        if group is not None:
            # A rank with an empty slice (or a parameter its microbatches did not reach) holds no
            # gradient; it still sends zeros, so every rank reduces buffers of the same layout.
            for p in params:
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
        grads = [p.grad for p in params if p.grad is not None]
        if not grads:
            return
        if group is not None:
            flat = torch.cat([g.reshape(-1) for g in grads])
            dist.all_reduce(flat, group=group)
            offset = 0
            for g in grads:
                g.copy_(flat[offset : offset + g.numel()].view_as(g))
                offset += g.numel()
        scale = 1.0 / max(step_tokens, 1.0)
        for g in grads:
            g.mul_(scale)

    def zero_grads(self, model, optimizer) -> None:
        optimizer.zero_grad(set_to_none=True)

    def optimizer_step(self, model, optimizer, lr: float, clip_grad: float) -> tuple[float, bool]:
        for group in optimizer.param_groups:
            group["lr"] = lr
        norm = grad_norm(model)
        if not torch.isfinite(torch.tensor(norm)):
            optimizer.zero_grad(set_to_none=True)
            return norm, True
        if clip_grad > 0 and norm > clip_grad:
            grads = [p.grad for p in model.parameters() if p.grad is not None]
            torch._foreach_mul_(grads, clip_grad / (norm + 1e-6))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return norm, False

    def save(self, path: Path, model, optimizer, extra: dict[str, Any]) -> None:
        path.mkdir(parents=True, exist_ok=True)
        state = {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict() if optimizer is not None else None,
            "rng": rng_state(),
            "extra": extra,
        }
        tmp = path / f".rank_{_rank():05d}.pt.tmp"
        torch.save(state, tmp)
        tmp.rename(path / f"rank_{_rank():05d}.pt")

    def load(self, path: Path, model, optimizer) -> dict[str, Any]:
        file = path / f"rank_{_rank():05d}.pt"
        if not file.is_file():
            from ..checkpoint import CheckpointError

            raise CheckpointError(
                f"{path} has no shard for rank {_rank()} (written with another world size?)"
            )
        state = torch.load(file, map_location="cpu", weights_only=False)
        model_state = model.state_dict()
        check_shapes({k: v for k, v in model_state.items() if hasattr(v, "shape")}, state["model"], path)
        model.load_state_dict(state["model"], strict=False)
        if optimizer is not None and state.get("optimizer") is not None:
            optimizer.load_state_dict(state["optimizer"])
        set_rng_state(state["rng"])
        return state["extra"]


def grad_norm(model) -> float:
    """Global L2 norm of gradients: TP shards counted once each, TP-replicated params once in all."""
    from megatron.core import parallel_state as ps
    from megatron.core.tensor_parallel import param_is_not_tensor_parallel_duplicate

    grads = [
        p.grad.detach()
        for p in model.parameters()
        if p.grad is not None and param_is_not_tensor_parallel_duplicate(p)
    ]
    # Each parameter's norm in its own dtype (one fused pass), their squares summed in float64.
    norms = torch._foreach_norm(grads) if grads else []
    sq = torch.stack(norms).double().pow(2).sum() if norms else torch.zeros((), dtype=torch.float64)
    if ps.get_tensor_model_parallel_world_size() > 1:
        dist.all_reduce(sq, group=ps.get_tensor_model_parallel_group())
    return sq.sqrt().item()


def _dp_group():
    from megatron.core import parallel_state as ps

    if ps.get_data_parallel_world_size() <= 1:
        return None
    return ps.get_data_parallel_group()


def _rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0
