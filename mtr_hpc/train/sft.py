"""Stage 1: supervised fine-tuning on synthesized traces (`mtr sft`).

Reads like the algorithm: render and pack traces, build the Megatron model on this rank, then for each
step take a global batch of packed rows, run forward/backward over microbatches through the device
seam, step the optimizer on the warmup-cosine schedule, log, evaluate, checkpoint. A killed run resumes
from its newest checkpoint with the same model, optimizer, RNG and data position, so its losses are
those of an uninterrupted run.
"""

from __future__ import annotations

import glob
import math
import time
from pathlib import Path

from ..config import to_dict
from ..data.example import example_key
from ..data.trained_on import write_trained_on
from ..errors import ConfigError, RunFailure
from ..models.parallel import init_parallel
from ..models.registry import load_tokenizer
from ..rundir import prepare_run_dir, write_manifest
from ..trace.io import read_traces
from ..trace.render import ChatRenderer
from ..tracking import MetricsLogger
from . import checkpoint as ckpt
from .batches import microbatches, uses_thd
from .grammar import measure as grammar_measure
from .grammar import turn_prompts
from .model_io import build_policy, export_hf, policy_source
from .positions import selects_rows
from .preempt import PreemptionFlag
from .schedule import lr_at
from .seams import get_seam
from .sft_config import SFTConfig, SFTDataConfig
from .sft_data import DataPosition, RowSampler, SFTDataError, build_rows, split_heldout
from .step import sft_forward_step, sft_loss_positions_step


def run_sft(cfg: SFTConfig) -> dict:
    import torch.distributed as dist
    from megatron.core import parallel_state as ps

    init_parallel(cfg.model.tp, cfg.model.pp, seed=cfg.train.seed, timeout_min=cfg.train.dist_timeout_min)
    rank0 = dist.get_rank() == 0
    dp_rank, dp_size = ps.get_data_parallel_rank(), ps.get_data_parallel_world_size()
    _check_batch(cfg, dp_size)
    seam = get_seam(
        cfg.device, dtype=cfg.model.dtype, use_distributed_optimizer=cfg.optim.use_distributed_optimizer
    )
    thd = uses_thd(cfg.model.layer_spec, cfg.train.micro_batch_rows)

    run_dir = Path(cfg.out)
    if rank0:
        prepare_run_dir(
            run_dir,
            cfg,
            ignore_keys=("train.steps", "train.dist_timeout_min", "resume", "export_hf", "wandb"),
        )
    dist.barrier()

    # Data: traces -> token ids + loss masks -> packed rows.
    src = policy_source(cfg.model)
    tokenizer = load_tokenizer(cfg.tokenizer or cfg.model.hf)
    renderer = ChatRenderer(tokenizer, cfg.data.system_prompt, cfg.data.tools_format)
    traces, bad_lines = load_traces(cfg.data)
    train_traces, held_traces = split_heldout(traces, cfg.data.heldout_fraction, cfg.train.seed)
    if rank0:
        keys = (example_key(t.benchmark, t.example_id) for t in train_traces)
        write_trained_on(run_dir, "sft", keys, cfg.model.hf)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else renderer.end_of_turn_id
    rows, stats = build_rows(train_traces, renderer, cfg.data.seq_len, pad_id, cfg.data.overflow)
    eval_rows = []
    if held_traces:
        eval_rows, _ = build_rows(held_traces, renderer, cfg.data.seq_len, pad_id, cfg.data.overflow)
        eval_rows = eval_rows[: cfg.train.eval_rows]
    sampler = RowSampler(rows, cfg.train.global_batch_rows, cfg.train.seed)

    grammar_prompts = turn_prompts(held_traces, renderer, cfg.grammar.prompts) if cfg.grammar.prompts else []
    grammar_before = None
    if (
        rank0
        and grammar_prompts
        and cfg.init == "pretrained"
        and not (run_dir / "checkpoints" / "latest").exists()
    ):
        grammar_before = grammar_measure(src.hf_dir, renderer, grammar_prompts, cfg.grammar, _engine_device())

    # Model and optimizer, then resume if a checkpoint exists.
    model = seam.wrap_model(build_policy(cfg.model, src, cfg.init, seam.device))
    optimizer = seam.build_optimizer(model, cfg.optim)
    ckpt_root = run_dir / "checkpoints"
    topo = ckpt.topology(cfg.model, dp_size)
    start_step, pos, _ = ckpt.resume(seam, model, optimizer, ckpt_root, topo, cfg.resume)
    position = DataPosition(**pos) if pos else DataPosition()

    logger = (
        MetricsLogger(run_dir, "sft", cfg.wandb, to_dict(cfg), resume_step=start_step - 1) if rank0 else None
    )
    batches = sampler.batches(position)
    bar = ckpt.progress_bar(rank0, start_step, cfg.train.steps, "sft")
    preempt = PreemptionFlag()
    last, preempted = {}, False
    for step in range(start_step, cfg.train.steps):
        t0 = time.perf_counter()
        step_rows, position = next(batches)
        local_rows = step_rows[dp_rank::dp_size]
        model.train()
        mbs = [seam.to_device(b) for b in microbatches(local_rows, cfg.train.micro_batch_rows, thd)]
        loss_sum, tokens, _ = seam.forward_backward(model, _forward_step(seam), mbs)
        lr = lr_at(step, cfg.train.steps, cfg.optim)
        grad_norm, skipped = seam.optimizer_step(model, optimizer, lr, cfg.optim.clip_grad)
        dt = time.perf_counter() - t0
        loss = loss_sum / max(tokens, 1)
        if not math.isfinite(loss):
            raise RunFailure(f"SFT loss is {loss} at step {step}; lower optim.lr or check the data")
        real = sum(sum(1 for s in r.segment_ids if s >= 0) for r in step_rows)
        last = {
            "sft/loss": loss,
            "sft/lr": lr,
            "sft/grad_norm": grad_norm,
            "sft/skipped_step": int(skipped),
            "sft/tokens_per_s": real / dt,
            "sft/masked_fraction": tokens / max(real, 1),
            "sft/epoch": position.epoch + position.index / len(rows),
            "timing_s/step": dt,
        }
        done = step + 1
        if eval_rows and (done % cfg.train.eval_every == 0 or done == cfg.train.steps):
            last["sft/eval_loss"] = evaluate(seam, model, eval_rows[dp_rank::dp_size], cfg, thd)
        if logger is not None:
            logger.log(step, last)
        preempted = preempt.agreed()
        if done % cfg.train.save_every == 0 or done == cfg.train.steps or preempted:
            ckpt.save_step(seam, model, optimizer, ckpt_root, done, position, topo, cfg.train.keep_last)
        _tick(bar, last)
        if preempted:
            break

    if bar is not None:
        bar.close()
    preempt.restore()
    hf_dir = None
    if cfg.export_hf and not preempted:
        hf_dir = export_hf(seam.unwrap(model), src, tokenizer, run_dir / "hf", renderer.tools_format)
    grammar_after = None
    if rank0 and hf_dir is not None and grammar_prompts:
        grammar_after = grammar_measure(str(hf_dir), renderer, grammar_prompts, cfg.grammar, _engine_device())
    summary = {
        "steps": cfg.train.steps,
        "grammar_valid_before": grammar_before,
        "grammar_valid_after": grammar_after,
        "traces": len(traces),
        "bad_trace_lines": len(bad_lines),
        "train_traces": len(train_traces),
        "heldout_traces": len(held_traces),
        "rows": stats.rows,
        "truncated": stats.truncated,
        "dropped": stats.dropped,
        "packed_fraction": stats.packed_fraction,
        "padded_fraction": stats.padded_fraction,
        "final": last,
        "hf_dir": str(hf_dir) if hf_dir else None,
        "preempted": preempted,
    }
    if logger is not None:
        logger.summary(last)
        logger.close()
        write_manifest(run_dir, "sft", **summary)
    return summary


def evaluate(seam, model, rows, cfg: SFTConfig, thd: bool) -> float:
    model.eval()
    mbs = [seam.to_device(b) for b in microbatches(rows, cfg.train.micro_batch_rows, thd)]
    loss_sum, tokens, _ = seam.forward_backward(model, _forward_step(seam), mbs, forward_only=True)
    return loss_sum / max(tokens, 1)


def load_traces(cfg: SFTDataConfig):
    files = expand_trace_paths(cfg.traces)
    traces, bad = [], []
    for f in files:
        got, errors = read_traces(f, skip_bad=cfg.skip_bad)
        traces += got
        bad += errors
    if not traces:
        raise SFTDataError(f"no traces found in {', '.join(map(str, files))} (empty files?)")
    return traces, bad


def expand_trace_paths(specs: list[str]) -> list[Path]:
    if not specs:
        raise ConfigError("data.traces", "no trace files given")
    files: list[Path] = []
    for spec in specs:
        p = Path(spec)
        if p.is_dir():
            found = (
                sorted((p / "traces").glob("*.jsonl"))
                if (p / "traces").is_dir()
                else sorted(p.glob("*.jsonl"))
            )
        elif any(ch in spec for ch in "*?["):
            found = [Path(x) for x in sorted(glob.glob(spec))]
        else:
            found = [p] if p.is_file() else []
        if not found:
            raise ConfigError("data.traces", f"'{spec}' matches no trace file")
        files += found
    return files


def _forward_step(seam):
    return sft_loss_positions_step if selects_rows(seam) else sft_forward_step


def _engine_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _check_batch(cfg: SFTConfig, dp: int) -> None:
    g, m = cfg.train.global_batch_rows, cfg.train.micro_batch_rows
    if g % dp:
        raise ConfigError("train.global_batch_rows", f"{g} is not divisible by the data-parallel size {dp}")
    if (g // dp) % m:
        raise ConfigError("train.micro_batch_rows", f"{m} does not divide the {g // dp} rows per DP rank")
    if cfg.model.layer_spec == "te" and m != 1:
        raise ConfigError("train.micro_batch_rows", "the te spec packs one row per microbatch (THD layout)")


def _tick(bar, metrics: dict) -> None:
    if bar is not None:
        bar.set_postfix(loss=f"{metrics['sft/loss']:.4f}", lr=f"{metrics['sft/lr']:.2e}", refresh=False)
        bar.update(1)
