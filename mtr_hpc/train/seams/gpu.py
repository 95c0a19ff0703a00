"""GPU seam: Megatron-Core's own DDP, (distributed) optimizer, pipeline schedules and dist_checkpointing.

Gradients are reduced in Megatron DDP buckets (overlapped with backward), the optimizer is
`get_megatron_optimizer` (ZeRO-1 sharding with `use_distributed_optimizer`, one flag read by DDP and
the optimizer alike: a DDP that reduce-scatters under an optimizer that reads whole gradients trains
on unreduced shards), forward/backward goes through `get_forward_backward_func()` (1F1B when pipeline
parallel), and checkpoints are `dist_checkpointing` sharded state dicts. A resume refuses a checkpoint
written under another parallel topology (`checkpoint.check_topology`), though the format could reshard:
the data position and the per-rank RNG states are kept per rank. Loss normalization uses `calculate_per_token_loss`: the schedule backpropagates each
microbatch's loss sum and `finalize_model_grads` divides the gradients by the token count of the whole
step, as the CPU seam does.

Checked against megatron-core 0.16.1 and 0.19 (`pipeline_parallel/schedules.py` `forward_step_calc_loss`,
`forward_backward_no_pipelining`; `distributed/finalize_model_grads.py`; `optimizer/__init__.py`
`_get_param_groups`; `optimizer_param_scheduler.py` `step`; `dist_checkpointing/serialization.py` `save`):

- the schedules run without `torch.no_grad` even when `forward_only`: forward-only passes are wrapped here;
- Megatron tags biases and norm weights `wd_mult=0`, but only its `OptimizerParamScheduler` turns the
  tag into a group's `weight_decay`; this seam sets each group's `lr` and `weight_decay` itself;
- `dist_checkpointing.save` needs its directory to exist (no rank creates it);
- the schedule keeps only the loss function's report, so the seam records loss sums and token counts
  through `base.recording`, never through a report key.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ...errors import ConfigError
from ..checkpoint import rng_state, set_rng_state
from .base import OptimConfig, recording, summed


class GpuSeam:
    name = "gpu"
    device = "cuda"  # where models for this seam are built

    def __init__(self, dtype: str = "bf16", use_distributed_optimizer: bool = True, **_: Any):
        if dtype not in ("fp32", "bf16", "fp16"):
            raise ConfigError("model.dtype", f"'{dtype}' is not one of fp32, bf16, fp16")
        self.dtype = dtype
        self.params_dtype = dtype  # Megatron's bf16/fp16: half-precision weights, fp32 main params
        self.use_distributed_optimizer = use_distributed_optimizer
        self.weight_decay = 0.0

    def wrap_model(self, model):
        from megatron.core import parallel_state as ps
        from megatron.core.distributed import DistributedDataParallel, DistributedDataParallelConfig
        from megatron.core.distributed.finalize_model_grads import finalize_model_grads
        from megatron.core.transformer.module import Float16Module

        config = model.config
        config.calculate_per_token_loss = True
        config.finalize_model_grads_func = finalize_model_grads
        # GRPO pads each microbatch to its own length: stages must exchange shapes, not assume one.
        config.variable_seq_lengths = ps.get_pipeline_model_parallel_world_size() > 1
        model = model.cuda()
        if self.dtype != "fp32":
            model = Float16Module(config, model)
        ddp_config = DistributedDataParallelConfig(
            grad_reduce_in_fp32=True,
            overlap_grad_reduce=True,
            use_distributed_optimizer=self.use_distributed_optimizer,
            check_for_nan_in_grad=True,
        )
        ddp = DistributedDataParallel(config=config, ddp_config=ddp_config, module=model)
        config.no_sync_func = ddp.no_sync
        config.grad_sync_func = ddp.start_grad_sync
        return ddp

    def wrap_frozen(self, model):
        """Like the trained model, less DDP: Megatron's torch norms build fp32 weights whatever the
        config's dtype (`transformer/torch_norm.py` `WrappedTorchNorm.__new__` passes no dtype), and only
        `Float16Module` casts the whole module to bf16/fp16 and its last stage's logits back to fp32
        (`transformer/module.py` `Float16Module.__init__` / `forward`, megatron-core 0.16.1 and 0.19).
        A bare model would run fp32 norms into bf16 linears and give the KL term bf16 logits."""
        from megatron.core.transformer.module import Float16Module

        model = model.cuda()
        if self.dtype != "fp32":
            model = Float16Module(model.config, model)
        return model.eval().requires_grad_(False)

    def unwrap(self, model):
        while hasattr(model, "module"):
            model = model.module
        return model

    def build_optimizer(self, model, cfg: OptimConfig):
        from megatron.core.optimizer import OptimizerConfig, get_megatron_optimizer

        if cfg.use_distributed_optimizer != self.use_distributed_optimizer:
            raise ConfigError(
                "optim.use_distributed_optimizer",
                "must be the value the model was wrapped with (build the seam from the same config)",
            )
        ocfg = OptimizerConfig(
            optimizer="adam",
            lr=cfg.lr,
            min_lr=cfg.min_lr,
            weight_decay=cfg.weight_decay,
            adam_beta1=cfg.adam_beta1,
            adam_beta2=cfg.adam_beta2,
            adam_eps=cfg.adam_eps,
            clip_grad=cfg.clip_grad,
            bf16=self.dtype == "bf16",
            fp16=self.dtype == "fp16",
            params_dtype={"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[self.dtype],
            use_distributed_optimizer=self.use_distributed_optimizer,
        )
        optimizer = get_megatron_optimizer(ocfg, [model])
        self.weight_decay = cfg.weight_decay
        self._set_hyperparams(optimizer, cfg.lr)
        if self.dtype == "fp16":
            self.unwrap(model).config.grad_scale_func = optimizer.scale_loss
        return optimizer

    def _set_hyperparams(self, optimizer, lr: float) -> None:
        for group in optimizer.param_groups:
            group["lr"] = lr
            group["weight_decay"] = self.weight_decay * group.get("wd_mult", 1.0)

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
    ) -> tuple[float, int, list]:
        """See `base` for the contract."""
        from megatron.core import parallel_state as ps

        recorded: list[torch.Tensor] = []
        with torch.no_grad() if forward_only else torch.enable_grad():
            if microbatches:
                reports = self._schedule(model, recording(forward_step, recorded), microbatches, forward_only)
            else:
                reports = []
                if not forward_only:
                    self._empty_backward(model)
        totals = summed(recorded, "cuda")
        # The loss lives on the last pipeline stage; every rank of the step learns the totals.
        torch.distributed.all_reduce(totals, group=ps.get_data_parallel_group())
        if ps.get_pipeline_model_parallel_world_size() > 1:
            torch.distributed.all_reduce(totals, group=ps.get_pipeline_model_parallel_group())
        return totals[0].item(), int(totals[1].item()), list(reports)

    def _schedule(self, model, forward_step: Callable, microbatches: list[dict], forward_only: bool):
        from megatron.core import parallel_state as ps
        from megatron.core.pipeline_parallel import get_forward_backward_func

        # The contract's loss sums and variable shapes between stages, also for models this seam did not
        # wrap (GRPO's reference policy has a config of its own).
        config = self.unwrap(model).config
        config.calculate_per_token_loss = True
        config.variable_seq_lengths = ps.get_pipeline_model_parallel_world_size() > 1
        tokens = microbatches[0]["tokens"]
        return get_forward_backward_func()(
            forward_step_func=forward_step,
            data_iterator=iter(microbatches),
            model=model,
            num_microbatches=len(microbatches),
            seq_length=tokens.shape[-1],
            micro_batch_size=tokens.shape[0],
            forward_only=forward_only,
        )

    def _empty_backward(self, model) -> None:
        """An empty data-parallel slice: a zero loss that reaches every parameter, so DDP's gradient
        hooks fire and its bucket reduce runs as for a real microbatch, then the schedule's own
        finalization (gradient reduce, embedding sync, token count) with zero tokens."""
        from megatron.core.distributed.finalize_model_grads import finalize_model_grads

        # A forward-only 1F1B pass enters DDP's no_sync and leaves restoring the flag to garbage collection.
        for group in getattr(model, "bucket_groups", []) + getattr(
            model, "expert_parallel_bucket_groups", []
        ):
            group.is_last_microbatch = True
        params = [p for p in model.parameters() if p.requires_grad]
        torch.stack([(p * 0).sum().float() for p in params]).sum().backward()
        finalize_model_grads([model], torch.zeros((), dtype=torch.int, device="cuda"))

    def zero_grads(self, model, optimizer) -> None:
        model.zero_grad_buffer()
        optimizer.zero_grad()

    def optimizer_step(self, model, optimizer, lr: float, clip_grad: float) -> tuple[float, bool]:
        # `clip_grad` is the optimizer's own (OptimizerConfig.clip_grad, the same config value).
        self._set_hyperparams(optimizer, lr)
        ok, norm, _zeros = optimizer.step()
        model.zero_grad_buffer()
        optimizer.zero_grad()
        return float(norm if norm is not None else "nan"), not ok

    def save(self, path: Path, model, optimizer, extra: dict[str, Any]) -> None:
        from megatron.core import dist_checkpointing

        dist_dir = path / "dist"
        dist_dir.mkdir(parents=True, exist_ok=True)  # every rank: the directory must exist before save
        torch.distributed.barrier()
        model_sd = self.unwrap(model).sharded_state_dict(prefix="")
        state = {"model": model_sd}
        if optimizer is not None:
            state["optimizer"] = optimizer.sharded_state_dict(model_sd)
        dist_checkpointing.save(state, str(dist_dir))
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
            self._set_hyperparams(optimizer, optimizer.param_groups[0]["lr"])
        local = torch.load(path / f"rank_{torch.distributed.get_rank():05d}.pt", weights_only=False)
        set_rng_state(local["rng"])
        return local["extra"]
