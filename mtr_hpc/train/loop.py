"""The training scaffolding that SFT and GRPO share: set up once, loop over steps, finish.

`TrainRun.setup(stage, cfg)` does what both stages do before training:
- starts the parallel groups, picks the device seam and the precision (`model.dtype: auto` follows the
  machine: `mtr_hpc.precision`; the choice is printed and goes in the manifest);
- prepares the run directory;
- resolves the policy's source model and loads its tokenizer.

Each stage then loads its own data. `TrainRun.start()` builds the model and the optimizer, resumes them
from the newest checkpoint, and opens the metrics logger.

`TrainRun.loop(batches, step_fn)` runs the steps. Each step takes the next batch and its data position,
runs the stage's `step_fn(step, batch) -> metrics`, logs, and checkpoints on the save cadence or when
the job must stop (`preempt`: a signal, or the job's time limit near). A step may also stop itself
between its phases (`check_stop`, GRPO between rollout and update): the checkpoint is then the state
before that step, whose batch a resume takes again. A stopped run exits with the checkpoint saved.

`TrainRun.finish(...)` exports the Hugging Face model, writes the manifest and returns the summary.

A killed run resumes from its newest checkpoint with the same model, optimizer, RNG states and data
position, so its metrics are those of an uninterrupted run. Both stages' configs carry `out`, `device`,
`init`, `tokenizer`, `resume`, `export_hf`, `model`, `optim`, `train` (`steps`, `save_every`,
`keep_last`, `seed`, `dist_timeout_min`, `time_limit_margin_s`) and `wandb`.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import to_dict
from ..data.trained_on import write_trained_on
from ..models.parallel import init_parallel
from ..models.registry import load_tokenizer
from ..precision import Precision, resolve_dtype
from ..rundir import prepare_run_dir, write_manifest
from ..tracking import MetricsLogger
from . import checkpoint as ckpt
from .model_io import PolicySource, build_policy, export_hf, policy_source
from .preempt import JobDeadline, PreemptionFlag
from .seams import get_seam, seam_device
from .sft_data import DataPosition

# Config keys a run may change between a run and its resume.
RESUMABLE_KEYS = (
    "train.steps", "train.dist_timeout_min", "train.time_limit_margin_s", "resume", "export_hf", "wandb",
    *(f"retrieval.{k}" for k in ("url", "timeout_s", "max_retries", "threads", "batch_rounds", "encoder", "device")),
)  # fmt: skip


class StepInterrupted(Exception):
    """Raised on every rank inside a step (`TrainRun.check_stop`) when the run must stop before the
    step is done."""


@dataclass
class TrainRun:
    """One training stage's run on this rank: what is set up once, then the model and its state."""

    stage: str  # sft | grpo: the metric namespace, the manifest's stage
    cfg: Any
    seam: Any
    run_dir: Path
    src: PolicySource
    tokenizer: Any
    rank0: bool
    dp_rank: int
    dp_size: int
    precision: Precision
    model: Any = None
    optimizer: Any = None
    logger: MetricsLogger | None = None
    start_step: int = 0
    position: DataPosition = field(default_factory=DataPosition)  # after the current step's batch
    step_start: DataPosition = field(default_factory=DataPosition)  # before it
    # While `loop` runs: what asks it to stop, and when the current step started.
    _preempt: PreemptionFlag | None = None
    _deadline: JobDeadline | None = None
    _step_t0: float = 0.0

    @classmethod
    def setup(cls, stage: str, cfg: Any, check: Callable[[], None] | None = None) -> TrainRun:
        """`check()`: config checks that need the parallel layout, run once it is up and before the run
        directory is written (so a rejected config leaves nothing behind)."""
        import torch.distributed as dist
        from megatron.core import parallel_state as ps

        train = cfg.train
        init_parallel(cfg.model.tp, cfg.model.pp, seed=train.seed, timeout_min=train.dist_timeout_min)
        if check is not None:
            check()
        rank0 = dist.get_rank() == 0
        device = seam_device(cfg.device)
        precision = resolve_dtype(cfg.model.dtype, device, key="model.dtype")
        seam = get_seam(
            device, dtype=precision.dtype, use_distributed_optimizer=cfg.optim.use_distributed_optimizer
        )
        run_dir = Path(cfg.out)
        if rank0:
            prepare_run_dir(run_dir, cfg, ignore_keys=RESUMABLE_KEYS)
        dist.barrier()
        src = policy_source(cfg.model)
        tokenizer = load_tokenizer(cfg.tokenizer or cfg.model.hf)
        dp = (ps.get_data_parallel_rank(), ps.get_data_parallel_world_size())
        if rank0:
            print(f"{stage}: {precision.describe()}", file=sys.stderr)
        return cls(stage, cfg, seam, run_dir, src, tokenizer, rank0, *dp, precision)

    def pad_id(self, renderer) -> int:
        pad = self.tokenizer.pad_token_id
        return pad if pad is not None else renderer.end_of_turn_id

    def record_trained_on(self, keys) -> None:
        """The questions this stage trains on (evaluation refuses to score them unless told to)."""
        if self.rank0:
            write_trained_on(self.run_dir, self.stage, keys, self.cfg.model.hf)

    def new_policy(self):
        """A fresh model of this rank: the source's weights (`init=pretrained`) or random ones."""
        model_cfg = dataclasses.replace(self.cfg.model, dtype=self.seam.params_dtype)
        return build_policy(model_cfg, self.src, self.cfg.init, self.seam.device)

    def start(self, with_reference: bool = False):
        """Model and optimizer, resumed from the newest checkpoint; the metrics logger. With
        `with_reference`, returns a frozen copy of the initial policy (else None)."""
        self.model = self.seam.wrap_model(self.new_policy())
        self.optimizer = self.seam.build_optimizer(self.model, self.cfg.optim)
        reference = None
        if with_reference:
            # Checkpoints do not hold it: a resumed run builds the same initial weights (the same
            # source, or the same seeds for `init=random`) and copies them before loading its checkpoint.
            reference = self.seam.wrap_frozen(self.new_policy())
            self.seam.unwrap(reference).load_state_dict(self.policy.state_dict())
        topo = ckpt.topology(self.cfg.model, self.dp_size)
        step, pos, _ = ckpt.resume(
            self.seam, self.model, self.optimizer, self.checkpoints, topo, self.cfg.resume
        )
        self.start_step, self.position = step, DataPosition(**pos) if pos else DataPosition()
        self.step_start = self.position
        if self.rank0:
            config = to_dict(self.cfg)
            self.logger = MetricsLogger(
                self.run_dir, self.stage, self.cfg.wandb, config, resume_step=step - 1
            )
        return reference

    @property
    def checkpoints(self) -> Path:
        return self.run_dir / "checkpoints"

    @property
    def policy(self):
        """The model without its data-parallel wrapper."""
        return self.seam.unwrap(self.model)

    def save(self, step_done: int) -> None:
        """A checkpoint after `step_done` steps, at the current data position (every rank calls it)."""
        self._save(step_done, self.position)

    def save_failed_step(self, step: int) -> None:
        """A checkpoint of the state before `step`, which failed: its batch is not consumed, so a resume
        retries that step instead of skipping its batch."""
        self._save(step, self.step_start)

    def _save(self, step_done: int, position: DataPosition) -> None:
        topo = ckpt.topology(self.cfg.model, self.dp_size)
        keep = self.cfg.train.keep_last
        ckpt.save_step(
            self.seam, self.model, self.optimizer, self.checkpoints, step_done, position, topo, keep
        )

    def loop(
        self,
        batches: Iterator[tuple[Any, DataPosition]],
        step_fn: Callable[[int, Any], dict],
        postfix: Callable[[dict], dict[str, str]],
    ) -> tuple[dict, bool]:
        """Run the steps from `start_step`; (the last step's metrics, whether the run was stopped early)."""
        total, save_every = self.cfg.train.steps, self.cfg.train.save_every
        bar = ckpt.progress_bar(self.rank0, self.start_step, total, self.stage)
        self._preempt = preempt = PreemptionFlag()
        self._deadline = deadline = JobDeadline.from_slurm(self.cfg.train.time_limit_margin_s)
        metrics: dict = {}
        preempted = False
        try:
            for step in range(self.start_step, total):
                self.step_start = self.position
                batch, self.position = next(batches)
                self._step_t0 = time.perf_counter()
                try:
                    metrics = step_fn(step, batch)
                except StepInterrupted:
                    self._timed_save(step, self.step_start)
                    self._say_stopped(step)
                    preempted = True
                    break
                deadline.step_s = max(deadline.step_s, time.perf_counter() - self._step_t0)
                if self.logger is not None:
                    self.logger.log(step, metrics)
                done = step + 1
                preempted = preempt.agreed(also=deadline.near(ahead_s=deadline.step_s)) and done < total
                if done % save_every == 0 or done == total or preempted:
                    self._timed_save(done, self.position)
                if bar is not None:
                    bar.set_postfix(**postfix(metrics), refresh=False)
                    bar.update(1)
                if preempted:
                    self._say_stopped(done)
                    break
        finally:
            if bar is not None:
                bar.close()
            preempt.restore()
            self._preempt = self._deadline = None
        return metrics, preempted

    def check_stop(self) -> None:
        """Inside a step, on every rank at the same point: raise `StepInterrupted` when a signal came or
        the rest of the step (the longest step so far, less what this one has run), a save and the
        margin would not fit before the job's end."""
        if self._preempt is None or self._deadline is None:
            return
        rest = max(self._deadline.step_s - (time.perf_counter() - self._step_t0), 0.0)
        if self._preempt.agreed(also=self._deadline.near(ahead_s=rest)):
            raise StepInterrupted

    def _timed_save(self, step_done: int, position: DataPosition) -> None:
        t0 = time.perf_counter()
        self._save(step_done, position)
        if self._deadline is not None:
            self._deadline.save_s = max(self._deadline.save_s, time.perf_counter() - t0)

    def _say_stopped(self, step_done: int) -> None:
        if not self.rank0 or self._preempt is None:
            return
        import signal

        sig = self._preempt.signum
        why = f"signal {signal.Signals(sig).name}" if sig is not None else "the job's time limit is near"
        left = self._deadline.seconds_left() if self._deadline is not None else None
        left_s = f", {left:.0f} s left" if left is not None else ""
        print(
            f"{self.stage}: stopped after step {step_done} ({why}{left_s}); checkpoint saved", file=sys.stderr
        )

    def finish(self, metrics: dict, preempted: bool, tools_format: str, **summary: Any) -> dict:
        """Export the model (unless preempted or `export_hf=false`), write the manifest (which marks a
        finished run: not when preempted); the summary."""
        hf_dir = None
        if self.cfg.export_hf and not preempted:
            hf_dir = export_hf(self.policy, self.src, self.tokenizer, self.run_dir / "hf", tools_format)
        out = {
            "steps": self.cfg.train.steps,
            "precision": self.precision.to_dict(),
            **summary,
            "final": metrics,
            "hf_dir": str(hf_dir) if hf_dir else None,
            "preempted": preempted,
        }
        if self.logger is not None:
            self.logger.summary(metrics)
            self.logger.close()
            if not preempted:
                write_manifest(self.run_dir, self.stage, **out)
        return out
