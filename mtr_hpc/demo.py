"""`mtr demo`: the embedded default end to end (synth -> SFT -> GRPO -> eval) in one run directory.

Each stage reads its section of `configs/demo.yaml`; the demo only fills in what chains them (every
stage's `out` under the demo's run directory, the SFT traces, the GRPO start model, the eval models and
training curves, one W&B group). A stage whose `manifest.json` exists is skipped, so a rerun after a
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

import yaml

from .config import load_config, read_yaml
from .errors import ConfigError
from .io import atomic_write_json

STAGES = ("synth", "sft", "grpo", "eval")
DEFAULT_PROFILE = "quick"


def stage_dirs(profile: str = DEFAULT_PROFILE) -> dict[str, str]:
    """Each stage's directory under the run: synth and SFT are shared by every profile."""
    suffix = "" if profile == DEFAULT_PROFILE else f"-{profile}"
    return {"synth": "synth", "sft": "sft", "grpo": f"grpo{suffix}", "eval": f"eval{suffix}"}


def stage_overrides(run: Path, group: str, dirs: dict[str, str]) -> dict[str, list[str]]:
    """The keys that chain the stages, per stage (profile and user overrides come after and win).

    Every stage logs to one W&B project under one group (offline unless an API key is configured).
    """
    wandb = [f"wandb.group={group}", "wandb.mode=auto"]
    synth, sft, grpo = (run / dirs[k] for k in ("synth", "sft", "grpo"))
    return {
        "synth": [f"out={synth}", *wandb],
        "sft": [f"out={sft}", f"data.traces=[{synth}]", *wandb],
        "grpo": [f"out={grpo}", f"model.hf={sft / 'hf'}", *wandb],
        "eval": [
            f"out={run / dirs['eval']}",
            "models=[{name: untrained, path: smollm2-135m}, "
            f"{{name: sft, path: {sft}}}, {{name: grpo, path: {grpo}}}]",
            f"training_runs=[{sft}, {grpo}]",
            *wandb,
        ],
    }


def profile_overrides(config: str | Path, profile: str) -> dict[str, list[str]]:
    """`profiles.<profile>` of the config as dotted overrides per stage (none for the default profile)."""
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
    out: dict[str, list[str]] = {}
    for stage, keys in stages.items():
        if stage not in STAGES:
            raise ConfigError(f"profiles.{profile}.{stage}", f"unknown stage (expected one of {STAGES})")
        if not isinstance(keys, dict):
            raise ConfigError(f"profiles.{profile}.{stage}", "must be a mapping of the stage's keys")
        out[stage] = list(_dotted(keys))
    return out


def _dotted(keys: dict, prefix: str = ""):
    """`key=value` overrides; strings go as written (string fields take an override's text verbatim),
    other values as YAML flow text, which the config loader parses back."""
    for key, value in keys.items():
        if isinstance(value, dict):
            yield from _dotted(value, f"{prefix}{key}.")
        elif isinstance(value, str):
            yield f"{prefix}{key}={value}"
        else:
            flow = yaml.safe_dump(value, default_flow_style=True, width=10**6)
            yield f"{prefix}{key}={flow.removesuffix(chr(10)).removesuffix('...').strip()}"


def run_demo(
    config: str | Path,
    out: str | Path,
    overrides: list[str],
    log: Callable[[str], None],
    profile: str = DEFAULT_PROFILE,
) -> dict:
    run = Path(out)
    profiled = profile_overrides(config, profile)
    run.mkdir(parents=True, exist_ok=True)
    dirs = stage_dirs(profile)
    chained = stage_overrides(run, run.resolve().name, dirs)
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
        RUNNERS[stage](config, chained[stage] + profiled.get(stage, []) + user)
        timings[dirs[stage]] = round(time.perf_counter() - t0, 1)
        atomic_write_json(timings_path, timings)
        log(f"[demo] {dirs[stage]}: finished in {timings[dirs[stage]]:.0f}s")
    return {
        "run": str(run),
        "profile": profile,
        "timings_s": {dirs[s]: timings[dirs[s]] for s in STAGES if dirs[s] in timings},
        "report": str(run / dirs["eval"] / "report.md"),
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
    """The first table of the eval report (models x settings, EM/F1 per benchmark)."""
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
