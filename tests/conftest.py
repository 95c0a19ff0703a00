"""Shared fixtures.

The real benchmark files live in `shared/data` beside the repository (a clone with `shared/` next to
it, as CI has); `MTR_SHARED_DATA` points elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from _paths import REPO

# The `slurm_cluster` fixture: a real single-node Slurm cluster on localhost (tools/slurm_cluster.py).
pytest_plugins = ["slurm_fixture"]


def shared_data_dir() -> Path:
    return Path(os.environ.get("MTR_SHARED_DATA") or REPO.parent / "shared" / "data")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if not path.is_dir():
        pytest.fail(f"shared benchmark data not found at {path}; set MTR_SHARED_DATA")
    return path


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO
