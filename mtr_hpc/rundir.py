"""A stage's run directory (design §6): resolved config, manifest, metrics, logs, outputs.

`prepare_run_dir` writes `config.yaml` at the start of a run and refuses to reuse a directory whose
stored config differs in keys that change results (unless told to), so a resume never silently mixes
two configurations. `write_manifest` records counts, timings and package versions.
"""

from __future__ import annotations

import importlib.metadata
import platform
import sys
import time
from pathlib import Path
from typing import Any

from .config import dump_yaml, read_yaml, to_dict
from .errors import MtrError
from .io import atomic_write_json, atomic_write_text

_VERSIONED = ("mtr-hpc", "torch", "megatron-core", "transformers", "vllm", "transformer-engine", "wandb")


class RunDirError(MtrError):
    pass


def prepare_run_dir(out: str | Path, cfg: Any, ignore_keys: tuple[str, ...] = ()) -> Path:
    """Create `out`, write the resolved config; on an existing run check it is the same config."""
    run = Path(out)
    run.mkdir(parents=True, exist_ok=True)
    path = run / "config.yaml"
    new = to_dict(cfg)
    if path.exists():
        old = read_yaml(path)
        diff = _diff(old, new, ignore_keys)
        if diff:
            shown = ", ".join(diff[:5])
            raise RunDirError(
                f"{run} holds a run with a different config (keys: {shown}); use another --out, or delete "
                f"the directory to start over"
            )
    atomic_write_text(path, dump_yaml(cfg))
    return run


def versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for pkg in _VERSIONED:
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def write_manifest(run_dir: str | Path, stage: str, **fields: Any) -> Path:
    path = Path(run_dir) / "manifest.json"
    record = {"stage": stage, "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **fields}
    record["versions"] = versions()
    atomic_write_json(path, record)
    return path


def _diff(old: Any, new: Any, ignore: tuple[str, ...], prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        keys = sorted(set(old) | set(new))
        out: list[str] = []
        for k in keys:
            key = f"{prefix}.{k}" if prefix else str(k)
            if key in ignore:
                continue
            out += _diff(old.get(k), new.get(k), ignore, key)
        return out
    return [] if old == new else [prefix]
