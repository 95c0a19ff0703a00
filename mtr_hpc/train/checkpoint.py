"""Checkpoint layout shared by the seams, and the RNG/data state every checkpoint holds.

    CKPT_ROOT/
      latest                    text: name of the newest complete checkpoint ("step_000100")
      step_000100/
        meta.json               step, data position, topology (tp, pp, dp), model arch, seam
        ...                     the seam's own files (per-rank torch files on CPU; dist_checkpointing on GPU)

A checkpoint directory is written under a temporary name and renamed when every rank has finished,
then `latest` is replaced atomically: a run killed mid-save resumes from the previous checkpoint.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import torch

from ..errors import MtrError
from ..io import atomic_write_json, atomic_write_text


class CheckpointError(MtrError):
    pass


def step_name(step: int) -> str:
    return f"step_{step:06d}"


def latest_checkpoint(root: str | Path) -> Path | None:
    root = Path(root)
    pointer = root / "latest"
    if not pointer.is_file():
        return None
    path = root / pointer.read_text().strip()
    if not (path / "meta.json").is_file():
        raise CheckpointError(f"{pointer} names {path.name}, which is not a complete checkpoint")
    return path


def read_meta(path: str | Path) -> dict[str, Any]:
    meta = Path(path) / "meta.json"
    if not meta.is_file():
        raise CheckpointError(f"{path} is not a checkpoint (no meta.json)")
    return json.loads(meta.read_text())


def staging_dir(root: str | Path, step: int) -> Path:
    return Path(root) / f".{step_name(step)}.partial"


def commit(root: str | Path, step: int, meta: dict[str, Any], keep_last: int = 0) -> Path:
    """Called by rank 0 after all ranks wrote into the staging dir: publish it and prune old ones."""
    root = Path(root)
    stage = staging_dir(root, step)
    atomic_write_json(stage / "meta.json", meta)
    final = root / step_name(step)
    if final.exists():
        shutil.rmtree(final)
    stage.rename(final)
    atomic_write_text(root / "latest", final.name + "\n")
    if keep_last > 0:
        done = sorted(p for p in root.glob("step_*") if p.is_dir())
        for old in done[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def check_topology(meta: dict[str, Any], expected: dict[str, Any], path: Path) -> None:
    for key, value in expected.items():
        if key in meta and meta[key] != value:
            raise CheckpointError(
                f"checkpoint {path} was written with {key}={meta[key]}, this run has {key}={value}; "
                f"convert it (mtr convert) or run with the same {key}"
            )


def rng_state() -> dict[str, Any]:
    import numpy as np
    from megatron.core import tensor_parallel

    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "tracker": tensor_parallel.get_cuda_rng_tracker().get_states(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    import numpy as np
    from megatron.core import tensor_parallel

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    tensor_parallel.get_cuda_rng_tracker().set_states(state["tracker"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def check_shapes(model_state: dict[str, torch.Tensor], loaded: dict[str, Any], path: Path) -> None:
    """Name the first tensor whose shape differs, instead of load_state_dict's wall of text."""
    missing = sorted(set(model_state) - set(loaded))
    if missing:
        raise CheckpointError(
            f"checkpoint {path} lacks tensor '{missing[0]}' ({len(missing)} missing in all)"
        )
    for name, tensor in model_state.items():
        other = loaded[name]
        if hasattr(other, "shape") and tuple(other.shape) != tuple(tensor.shape):
            raise CheckpointError(
                f"checkpoint {path} is of another model shape: tensor '{name}' is {tuple(other.shape)} there, "
                f"{tuple(tensor.shape)} in this model"
            )


def topology(model_cfg, dp: int) -> dict[str, Any]:
    """What a checkpoint must match to be resumed as is: parallel sizes and the model it came from."""
    return {"tp": model_cfg.tp, "pp": model_cfg.pp, "dp": dp, "hf": model_cfg.hf}


def save_step(
    seam, model, optimizer, root: Path, step: int, position, topo: dict, keep_last: int, extra=None
) -> None:
    """Every rank writes its part into the staging dir; rank 0 publishes it once all are done."""
    import torch.distributed as dist

    seam.save(staging_dir(root, step), model, optimizer, {"step": step, **(extra or {})})
    dist.barrier()
    if dist.get_rank() == 0:
        meta = {"step": step, "position": position.to_dict(), "seam": seam.name, **topo}
        commit(root, step, meta, keep_last=keep_last)
    dist.barrier()


def progress_bar(enabled: bool, start: int, total: int, desc: str):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=start, desc=desc, unit="step", dynamic_ncols=True)


def resume(seam, model, optimizer, root: Path, topo: dict, enabled: bool = True):
    """(step, data position dict, extra) of the newest checkpoint loaded into model and optimizer,
    or (0, None, {}) when there is none (or `enabled` is False)."""
    latest = latest_checkpoint(root) if enabled else None
    if latest is None:
        return 0, None, {}
    meta = read_meta(latest)
    check_topology(meta, topo, latest)
    extra = seam.load(latest, model, optimizer)
    return meta["step"], meta["position"], extra
