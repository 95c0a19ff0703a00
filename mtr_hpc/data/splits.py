"""The project's own train / held-out split of a benchmark file, stable across stages and runs.

An example belongs to the held-out part when the sha256 of `benchmark:id` falls in the first
`fraction` of the hash space, so synthesis, GRPO and evaluation agree on the split without sharing
any file, and adding or removing other examples never moves one across it.
"""

from __future__ import annotations

import hashlib

from ..errors import ConfigError
from .example import QAExample

PARTS = ("all", "train", "heldout")
DEFAULT_HELDOUT_FRACTION = 0.25


def is_heldout(example: QAExample, fraction: float = DEFAULT_HELDOUT_FRACTION) -> bool:
    return is_heldout_id(example.benchmark, example.id, fraction)


def is_heldout_id(benchmark: str, example_id: str, fraction: float = DEFAULT_HELDOUT_FRACTION) -> bool:
    digest = hashlib.sha256(f"{benchmark}:{example_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def require_training_part(part: str | None, key: str) -> str:
    """`part` of a source a stage trains on; such a source must name it, so that no run trains on
    held-out questions by default."""
    if part is None:
        raise ConfigError(
            key,
            "say which part of this benchmark source the stage trains on: `train` (the project's train "
            "split of a file that evaluation also reads), or `all` (a whole file that evaluation never "
            "reads, such as a benchmark's official train split)",
        )
    return part


def select_part(
    examples: list[QAExample], part: str, fraction: float = DEFAULT_HELDOUT_FRACTION, key: str = "part"
) -> list[QAExample]:
    """The examples of `part` (all | train | heldout)."""
    if part not in PARTS:
        raise ConfigError(key, f"must be one of {', '.join(PARTS)}, got {part!r}")
    if not 0.0 < fraction < 1.0:
        raise ConfigError(key, f"held-out fraction must be in (0, 1), got {fraction}")
    if part == "all":
        return list(examples)
    want = part == "heldout"
    return [ex for ex in examples if is_heldout(ex, fraction) == want]
