"""Stage 1: supervised fine-tuning on synthesized traces (`mtr sft`).

Reads like the algorithm: render the traces and pack them into rows, build the Megatron model on this
rank, then for each step take a global batch of packed rows, run forward/backward over microbatches
through the device seam, step the optimizer on the warmup-cosine schedule, and evaluate on held-out
rows on the `eval_every` cadence. Setup, resume, logging, checkpoints and the export are the shared
loop's (`train.loop`).
"""

from __future__ import annotations

import glob
import math
import time
from functools import partial
from pathlib import Path

from ..data.example import example_key
from ..errors import ConfigError, RunFailure
from ..trace.io import read_traces
from ..trace.render import ChatRenderer
from .batches import microbatches, uses_thd
from .loop import TrainRun
from .positions import selects_rows
from .schedule import lr_at
from .sft_config import SFTConfig, SFTDataConfig
from .sft_data import RowSampler, SFTDataError, build_rows, split_heldout
from .step import sft_forward_step, sft_loss_positions_step


def run_sft(cfg: SFTConfig) -> dict:
    run = TrainRun.setup("sft", cfg, check=partial(_check_batch, cfg))
    thd = uses_thd(cfg.model.layer_spec, cfg.train.micro_batch_rows)

    # Data: traces -> token ids + loss masks -> packed rows.
    renderer = ChatRenderer(run.tokenizer, cfg.data.system_prompt, cfg.data.tools_format)
    traces, bad_lines = load_traces(cfg.data)
    train_traces, held_traces = split_heldout(traces, cfg.data.heldout_fraction, cfg.train.seed)
    run.record_trained_on(example_key(t.benchmark, t.example_id) for t in train_traces)
    pad_id = run.pad_id(renderer)
    rows, stats = build_rows(train_traces, renderer, cfg.data.seq_len, pad_id, cfg.data.overflow)
    eval_rows = []
    if held_traces:
        eval_rows = build_rows(held_traces, renderer, cfg.data.seq_len, pad_id, cfg.data.overflow)[0]
        eval_rows = eval_rows[: cfg.train.eval_rows]

    run.start()
    forward_step = sft_loss_positions_step if selects_rows(run.seam) else sft_forward_step

    def step_fn(step: int, step_rows) -> dict:
        t0 = time.perf_counter()
        run.model.train()
        local = step_rows[run.dp_rank :: run.dp_size]
        mbs = [run.seam.to_device(b) for b in microbatches(local, cfg.train.micro_batch_rows, thd)]
        loss_sum, tokens, _ = run.seam.forward_backward(run.model, forward_step, mbs)
        lr = lr_at(step, cfg.train.steps, cfg.optim)
        grad_norm, skipped = run.seam.optimizer_step(run.model, run.optimizer, lr, cfg.optim.clip_grad)
        dt = time.perf_counter() - t0
        loss = loss_sum / max(tokens, 1)
        if not math.isfinite(loss):
            raise RunFailure(f"SFT loss is {loss} at step {step}; lower optim.lr or check the data")
        real = sum(sum(1 for s in r.segment_ids if s >= 0) for r in step_rows)
        metrics = {
            "sft/loss": loss,
            "sft/lr": lr,
            "sft/grad_norm": grad_norm,
            "sft/skipped_step": int(skipped),
            "sft/tokens_per_s": real / dt,
            "sft/masked_fraction": tokens / max(real, 1),
            "sft/epoch": run.position.epoch + run.position.index / len(rows),
            "timing_s/step": dt,
        }
        done = step + 1
        if eval_rows and (done % cfg.train.eval_every == 0 or done == cfg.train.steps):
            # Every rank evaluates (the seam reduces over data-parallel ranks), each on its share.
            metrics["sft/eval_loss"] = evaluate(run, eval_rows[run.dp_rank :: run.dp_size], forward_step, thd)
        return metrics

    batches = RowSampler(rows, cfg.train.global_batch_rows, cfg.train.seed).batches(run.position)
    metrics, preempted = run.loop(batches, step_fn, _postfix)
    return run.finish(
        metrics,
        preempted,
        renderer.tools_format,
        traces=len(traces),
        bad_trace_lines=len(bad_lines),
        train_traces=len(train_traces),
        heldout_traces=len(held_traces),
        rows=stats.rows,
        truncated=stats.truncated,
        dropped=stats.dropped,
        packed_fraction=stats.packed_fraction,
        padded_fraction=stats.padded_fraction,
    )


def evaluate(run: TrainRun, rows, forward_step, thd: bool) -> float:
    """Mean loss per loss token over this rank's held-out rows."""
    run.model.eval()
    mbs = [run.seam.to_device(b) for b in microbatches(rows, run.cfg.train.micro_batch_rows, thd)]
    loss_sum, tokens, _ = run.seam.forward_backward(run.model, forward_step, mbs, forward_only=True)
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


def _check_batch(cfg: SFTConfig) -> None:
    """The batch checks that need the data-parallel size (the others run when the config loads)."""
    from megatron.core import parallel_state as ps

    dp = ps.get_data_parallel_world_size()
    g, m = cfg.train.global_batch_rows, cfg.train.micro_batch_rows
    if g % dp:
        raise ConfigError("train.global_batch_rows", f"{g} is not divisible by the data-parallel size {dp}")
    if (g // dp) % m:
        raise ConfigError("train.micro_batch_rows", f"{m} does not divide the {g // dp} rows per DP rank")


def _postfix(metrics: dict) -> dict[str, str]:
    return {"loss": f"{metrics['sft/loss']:.4f}", "lr": f"{metrics['sft/lr']:.2e}"}
