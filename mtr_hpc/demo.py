"""`mtr demo`: the embedded default end to end (synth -> SFT -> GRPO -> eval) in one run directory.

Each stage reads its section of `configs/demo.yaml`; the demo only fills in what chains them (every
stage's `out` under the demo's run directory, the SFT traces, the GRPO start model, the eval models and
training curves, one W&B group). A stage whose `manifest.json` exists is skipped, so a rerun after a
kill continues where it stopped (a stage itself resumes from its checkpoints).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from .config import load_config
from .io import atomic_write_json

STAGES = ("synth", "sft", "grpo", "eval")


def stage_overrides(run: Path, group: str) -> dict[str, list[str]]:
    """The keys that chain the stages, per stage (user overrides come after and win).

    Every stage logs to one W&B project under one group (offline unless an API key is configured).
    """
    wandb = [f"wandb.group={group}", "wandb.mode=auto"]
    return {
        "synth": [f"out={run / 'synth'}", *wandb],
        "sft": [f"out={run / 'sft'}", f"data.traces=[{run / 'synth'}]", *wandb],
        "grpo": [f"out={run / 'grpo'}", f"model.hf={run / 'sft' / 'hf'}", *wandb],
        "eval": [
            f"out={run / 'eval'}",
            "models=[{name: untrained, path: smollm2-135m}, "
            f"{{name: sft, path: {run / 'sft'}}}, {{name: grpo, path: {run / 'grpo'}}}]",
            f"training_runs=[{run / 'sft'}, {run / 'grpo'}]",
            *wandb,
        ],
    }


def run_demo(config: str | Path, out: str | Path, overrides: list[str], log: Callable[[str], None]) -> dict:
    run = Path(out)
    run.mkdir(parents=True, exist_ok=True)
    chained = stage_overrides(run, group=run.resolve().name)
    timings_path = run / "demo.json"
    timings = json.loads(timings_path.read_text()) if timings_path.exists() else {}
    for stage in STAGES:
        user = [o.split(".", 1)[1] for o in overrides if o.startswith(stage + ".")]
        if (run / stage / "manifest.json").exists():
            log(f"[demo] {stage}: done already ({run / stage}), skipped")
            continue
        log(f"[demo] {stage}: starting -> {run / stage}")
        t0 = time.perf_counter()
        RUNNERS[stage](config, chained[stage] + user)
        timings[stage] = round(time.perf_counter() - t0, 1)
        atomic_write_json(timings_path, timings)
        log(f"[demo] {stage}: finished in {timings[stage]:.0f}s")
    return {"run": str(run), "timings_s": timings, "report": str(run / "eval" / "report.md")}


def _synth(config, overrides):
    from .synth.merge import merge_run
    from .synth.run_config import SynthRunConfig
    from .synth.runner import run_shards
    from .synth.shards import ShardSpec

    cfg = load_config(SynthRunConfig, config, overrides, section="synth")
    run_shards(cfg, [ShardSpec(i, cfg.num_shards) for i in range(cfg.num_shards)])
    merge_run(cfg.out)


def _eval(config, overrides):
    from .eval.config import EvalConfig
    from .eval.harness import run_eval

    run_eval(load_config(EvalConfig, config, overrides, section="eval"))


def _sft(config, overrides):
    from .launch.train_task import run_sft

    run_sft(config, overrides)


def _grpo(config, overrides):
    from .launch.train_task import run_grpo

    run_grpo(config, overrides)


RUNNERS = {"synth": _synth, "sft": _sft, "grpo": _grpo, "eval": _eval}


def results_table(report_md: Path) -> str:
    """The first table of the eval report (models x modes, EM/F1 per benchmark)."""
    if not report_md.exists():
        return ""
    lines, started = [], False
    for line in report_md.read_text(encoding="utf-8").splitlines():
        if line.startswith("|"):
            started = True
            lines.append(line)
        elif started:
            break
    return "\n".join(lines)
