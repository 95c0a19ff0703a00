"""GPU seam: Megatron-Core's own DDP, (distributed) optimizer, pipeline schedules and dist_checkpointing.

Gradients are reduced in Megatron DDP buckets (overlapped with backward), the optimizer is
`get_megatron_optimizer` (ZeRO-1 sharding with `use_distributed_optimizer`), forward/backward goes
through `get_forward_backward_func()` (1F1B when pipeline parallel), and checkpoints are
`dist_checkpointing` sharded state dicts, resharded on load when the topology changes.
Loss normalization uses `calculate_per_token_loss`, so gradients are divided by the masked token
count of the whole step, as on the CPU seam.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..checkpoint import rng_state, set_rng_state
from .base import OptimConfig


class GpuSeam:
    name = "gpu"

    def __init__(self, bf16: bool = True, seq_length: int = 4096, micro_batch_size: int = 1, **_: Any):
        self.bf16 = bf16
        self.seq_length = seq_length
        self.micro_batch_size = micro_batch_size

    def wrap_model(self, model):
        from megatron.core.distributed import DistributedDataParallel, DistributedDataParallelConfig
        from megatron.core.distributed.finalize_model_grads import finalize_model_grads
        from megatron.core.transformer.module import Float16Module

        config = model.config
        config.calculate_per_token_loss = True
        config.finalize_model_grads_func = finalize_model_grads
        model = model.cuda()
        if self.bf16:
            model = Float16Module(config, model)
        ddp_config = DistributedDataParallelConfig(
            grad_reduce_in_fp32=True,
            overlap_grad_reduce=True,
            use_distributed_optimizer=True,
            check_for_nan_in_grad=True,
        )
        ddp = DistributedDataParallel(config=config, ddp_config=ddp_config, module=model)
        config.no_sync_func = ddp.no_sync
        config.grad_sync_func = ddp.start_grad_sync
        return ddp

    def unwrap(self, model):
        while hasattr(model, "module"):
            model = model.module
        return model

    def build_optimizer(self, model, cfg: OptimConfig):
        from megatron.core.optimizer import OptimizerConfig, get_megatron_optimizer

        ocfg = OptimizerConfig(
            optimizer="adam",
            lr=cfg.lr,
            min_lr=cfg.min_lr,
            weight_decay=cfg.weight_decay,
            adam_beta1=cfg.adam_beta1,
            adam_beta2=cfg.adam_beta2,
            adam_eps=cfg.adam_eps,
            clip_grad=cfg.clip_grad,
            bf16=self.bf16,
            params_dtype=torch.bfloat16 if self.bf16 else torch.float32,
            use_distributed_optimizer=cfg.use_distributed_optimizer,
        )
        return get_megatron_optimizer(ocfg, [model])

    def to_device(self, batch: dict[str, Any]) -> dict[str, Any]:
        out = {}
        for k, v in batch.items():
            out[k] = v.cuda(non_blocking=True) if isinstance(v, torch.Tensor) else v
        if out.get("packed_seq_params") is not None:
            p = out["packed_seq_params"]
            for name in ("cu_seqlens_q", "cu_seqlens_kv"):
                setattr(p, name, getattr(p, name).cuda())
        return out

    def forward_backward(
        self, model, forward_step: Callable, microbatches: list[dict], forward_only: bool = False
    ) -> tuple[float, int, list[dict]]:
        from megatron.core import parallel_state as ps
        from megatron.core.pipeline_parallel import get_forward_backward_func

        fb = get_forward_backward_func()
        seq = microbatches[0]["tokens"].shape[-1]
        mbs = microbatches[0]["tokens"].shape[0]
        stats = fb(
            forward_step_func=forward_step,
            data_iterator=iter(microbatches),
            model=model,
            num_microbatches=len(microbatches),
            seq_length=seq,
            micro_batch_size=mbs,
            forward_only=forward_only,
        )
        totals = torch.zeros(2, dtype=torch.float64, device="cuda")
        if ps.is_pipeline_last_stage():
            for rep in stats:
                totals += rep["lm loss"].double()
        # Loss lives on the last pipeline stage; share it with every rank for logging.
        torch.distributed.all_reduce(totals, group=ps.get_data_parallel_group())
        if ps.get_pipeline_model_parallel_world_size() > 1:
            torch.distributed.all_reduce(totals, group=ps.get_pipeline_model_parallel_group())
        return totals[0].item(), int(totals[1].item()), list(stats)

    def optimizer_step(self, model, optimizer, lr: float, clip_grad: float) -> tuple[float, bool]:
        for group in optimizer.param_groups:
            group["lr"] = lr
        ok, norm, _zeros = optimizer.step()
        model.zero_grad_buffer()
        optimizer.zero_grad()
        return float(norm if norm is not None else 0.0), not ok

    def save(self, path: Path, model, optimizer, extra: dict[str, Any]) -> None:
        from megatron.core import dist_checkpointing

        path.mkdir(parents=True, exist_ok=True)
        model_sd = self.unwrap(model).sharded_state_dict(prefix="")
        state = {"model": model_sd}
        if optimizer is not None:
            state["optimizer"] = optimizer.sharded_state_dict(model_sd)
        dist_checkpointing.save(state, str(path / "dist"))
        torch.save({"rng": rng_state(), "extra": extra}, path / f"rank_{torch.distributed.get_rank():05d}.pt")

    def load(self, path: Path, model, optimizer) -> dict[str, Any]:
        from megatron.core import dist_checkpointing

        model_sd = self.unwrap(model).sharded_state_dict(prefix="")
        state = {"model": model_sd}
        if optimizer is not None:
            state["optimizer"] = optimizer.sharded_state_dict(model_sd, is_loading=True)
        loaded = dist_checkpointing.load(state, str(path / "dist"))
        self.unwrap(model).load_state_dict(loaded["model"])
        if optimizer is not None:
            optimizer.load_state_dict(loaded["optimizer"])
        local = torch.load(path / f"rank_{torch.distributed.get_rank():05d}.pt", weights_only=False)
        set_rng_state(local["rng"])
        return local["extra"]
