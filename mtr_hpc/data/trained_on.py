"""Which benchmark questions a training run learned from, recorded in its run directory, so evaluation can
tell when it would score a model on questions it was trained on.

SFT and GRPO write `trained_on.json` when they start: the `benchmark:id` keys of the questions behind
their training data (SFT: the traces it trains on, not its held-out traces; GRPO: its prompts) and the
model they started from. A model that came out of a chain of runs (SFT, then GRPO from SFT's export) has
learned from every run of the chain: `trained_keys` follows `model_from` back through run directories.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ..io import atomic_write_json, read_json

FILENAME = "trained_on.json"


def write_trained_on(run_dir: str | Path, stage: str, keys: Iterable[str], model_from: str) -> Path:
    """Record `keys`; `model_from` (a model name, or a path, stored absolute so the chain survives a
    change of working directory) is where the run's model came from."""
    origin = Path(model_from).expanduser()
    model_from = str(origin.resolve()) if origin.exists() else model_from
    path = Path(run_dir) / FILENAME
    atomic_write_json(path, {"stage": stage, "model_from": model_from, "examples": sorted(set(keys))})
    return path


def run_dir_of(path: str | Path) -> Path | None:
    """The training run directory that `path` (a run directory or its `hf/` export) belongs to."""
    p = Path(path)
    for candidate in (p, p.parent if p.name == "hf" else None):
        if candidate is not None and (candidate / FILENAME).is_file():
            return candidate
    return None


def trained_keys(path: str | Path) -> dict[str, set[str]]:
    """{run directory: its trained `benchmark:id` keys} for the run `path` names and the runs its model
    came from; empty when `path` is not a training run."""
    found: dict[str, set[str]] = {}
    run = run_dir_of(path)
    while run is not None and str(run) not in found:
        data = read_json(run / FILENAME)
        found[str(run)] = set(data.get("examples", []))
        run = run_dir_of(data["model_from"]) if data.get("model_from") else None
    return found
