"""`mtr demo`: the embedded default end to end (synth -> SFT -> GRPO -> eval) in one run directory.

Each stage (`mtr_hpc.stages`) reads its section of `configs/demo.yaml`; the demo only fills in, as typed
values by dotted key, what chains them: every stage's `out` under the demo's run directory, the SFT
traces, the GRPO start model, the eval models and training curves, one W&B group. A stage whose `manifest.json` exists is skipped, so a rerun after a
kill continues where it stopped (a stage itself resumes from its checkpoints).

A profile other than the default (`profiles.<name>` of the config: per-stage keys laid over the stage
sections) shares synth and SFT with the default one and has its own GRPO and eval directories
(`grpo-<name>`, `eval-<name>`), so `--profile full` after the default run trains only what differs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .config import read_yaml
from .errors import ConfigError
from .io import atomic_write_json
from .stages import get_stage, resolve

STAGES = ("synth", "sft", "grpo", "eval")
DEFAULT_PROFILE = "quick"


def stage_dirs(profile: str = DEFAULT_PROFILE) -> dict[str, str]:
    """Each stage's directory under the run: synth and SFT are shared by every profile."""
    suffix = "" if profile == DEFAULT_PROFILE else f"-{profile}"
    return {"synth": "synth", "sft": "sft", "grpo": f"grpo{suffix}", "eval": f"eval{suffix}"}


def chain_values(run: Path, group: str, dirs: dict[str, str]) -> dict[str, dict[str, Any]]:
    """The keys that chain the stages, per stage, as dotted keys with typed values (profile keys and
    the user's overrides come after and win).

    Every stage logs to one W&B project under one group (offline unless an API key is configured).
    """
    wandb = {"wandb.group": group, "wandb.mode": "auto"}
    synth, sft, grpo = (str(run / dirs[k]) for k in ("synth", "sft", "grpo"))
    models = [("untrained", "smollm2-135m"), ("sft", sft), ("grpo", grpo)]
    return {
        "synth": {"out": synth, **wandb},
        "sft": {"out": sft, "data.traces": [synth], **wandb},
        "grpo": {"out": grpo, "model.hf": str(Path(sft) / "hf"), **wandb},
        "eval": {
            "out": str(run / dirs["eval"]),
            "models": [{"name": name, "path": path} for name, path in models],
            "training_runs": [sft, grpo],
            **wandb,
        },
    }


def profile_values(config: str | Path, profile: str) -> dict[str, dict[str, Any]]:
    """`profiles.<profile>` of the config as dotted keys per stage (none for the default profile)."""
    if profile == DEFAULT_PROFILE:
        return {}
    profiles = read_yaml(config).get("profiles") or {}
    if not isinstance(profiles, dict):
        raise ConfigError("profiles", f"must be a mapping of profile names in {config}")
    if profile not in profiles:
        known = ", ".join([DEFAULT_PROFILE, *profiles])
        raise ConfigError("profile", f"unknown demo profile {profile!r} (profiles of {config}: {known})")
    stages = profiles[profile] or {}
    if not isinstance(stages, dict):
        raise ConfigError(f"profiles.{profile}", f"must be a mapping of stages ({', '.join(STAGES)})")
    out: dict[str, dict[str, Any]] = {}
    for stage, keys in stages.items():
        if stage not in STAGES:
            raise ConfigError(f"profiles.{profile}.{stage}", f"unknown stage (expected one of {STAGES})")
        if not isinstance(keys, dict):
            raise ConfigError(f"profiles.{profile}.{stage}", "must be a mapping of the stage's keys")
        out[stage] = dict(_dotted(keys))
    return out


def _dotted(keys: dict, prefix: str = ""):
    """(dotted key, value) pairs of a nested mapping; the values stay as YAML read them."""
    for key, value in keys.items():
        if isinstance(value, dict):
            yield from _dotted(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def run_demo(
    config: str | Path,
    out: str | Path,
    overrides: list[str],
    log: Callable[[str], None],
    profile: str = DEFAULT_PROFILE,
) -> dict:
    run = Path(out)
    profiled = profile_values(config, profile)
    run.mkdir(parents=True, exist_ok=True)
    dirs = stage_dirs(profile)
    chained = chain_values(run, run.resolve().name, dirs)
    timings_path = run / "demo.json"
    timings = json.loads(timings_path.read_text()) if timings_path.exists() else {}
    for stage in STAGES:
        user = [o.split(".", 1)[1] for o in overrides if o.startswith(stage + ".")]
        where = run / dirs[stage]
        if (where / "manifest.json").exists():
            log(f"[demo] {dirs[stage]}: done already ({where}), skipped")
            continue
        log(f"[demo] {dirs[stage]}: starting -> {where}")
        t0 = time.perf_counter()
        run_chained(stage, config, {**chained[stage], **profiled.get(stage, {})}, user)
        timings[dirs[stage]] = round(time.perf_counter() - t0, 1)
        atomic_write_json(timings_path, timings)
        log(f"[demo] {dirs[stage]}: finished in {timings[dirs[stage]]:.0f}s")
    return {
        "run": str(run),
        "profile": profile,
        "timings_s": {dirs[s]: timings[dirs[s]] for s in STAGES if dirs[s] in timings},
        "report": str(run / dirs["eval"] / "report.md"),
        "results": str(run / dirs["eval"] / "results.json"),
        "grpo_reward": reward_trend(run / dirs["grpo"]),
    }


def reward_trend(grpo_dir: Path, key: str = "grpo/reward/total") -> dict[str, float] | None:
    """Mean `key` over the first and the last third of the GRPO steps (None under 3 steps)."""
    from .tracking import read_metrics

    if not (grpo_dir / "metrics.jsonl").is_file():
        return None
    values = [r[key] for r in read_metrics(grpo_dir) if isinstance(r.get(key), int | float)]
    third = len(values) // 3
    if third == 0:
        return None
    return {
        "steps": len(values),
        "first_third": sum(values[:third]) / third,
        "last_third": sum(values[-third:]) / third,
    }


def run_chained(name: str, config: str | Path, values: dict[str, Any], overrides: list[str]) -> Any:
    """One stage in this process: its section of `config`, the chaining `values`, the user's overrides;
    an array stage runs every shard, then merges them."""
    stage = get_stage(name)
    cfg = stage.load(config, overrides, values)
    summary = stage.run(cfg)
    if stage.merge:
        resolve(stage.merge)(cfg.out)
    return summary


def results_table(results_json: Path) -> str:
    """The eval report's main table (models x settings, EM / F1 per benchmark), from results.json."""
    from .eval.report import em_f1_table

    if not results_json.is_file():
        return ""
    return "\n".join(em_f1_table(json.loads(results_json.read_text(encoding="utf-8"))))
