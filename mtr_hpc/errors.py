"""Typed errors of the project.

Every error a user can cause (a bad file, a bad config key, a missing optional dependency) is an
`MtrError`; the CLI prints its message and exits with status 2 instead of showing a traceback. A run
that fails at run time through no fault of its input (a non-finite loss or reward, a rollout engine that
breaks its contract) raises a `RunFailure` instead, and the CLI exits with status 3 (design §7).
"""

from __future__ import annotations

from pathlib import Path


class MtrError(Exception):
    """Base class of every user-facing error."""


class RunFailure(MtrError):
    """A run failed at run time: a non-finite loss or reward, or an engine broke its contract."""


class ConfigError(MtrError):
    """A config file or override is wrong; `key` is the dotted key at fault."""

    def __init__(self, key: str, message: str):
        self.key, self.message = key, message
        super().__init__(f"config key '{key}': {message}" if key else message)


class DataError(MtrError):
    """A record of an input file is malformed.

    `where` is "line N" for JSONL files and "record N" for JSON arrays (both 1-based for lines,
    0-based for record indices, as an editor and `json.load(...)[i]` show them).
    """

    def __init__(self, path: str | Path | None, where: str | None, field: str | None, message: str):
        self.path = str(path) if path is not None else None
        self.where = where
        self.field = field
        parts = [p for p in (self.path, where) if p]
        loc = ", ".join(parts)
        fld = f" field '{field}'" if field else ""
        super().__init__(f"{loc}:{fld} {message}" if loc else f"{fld.strip()} {message}".strip())


class MissingDependencyError(MtrError):
    """An optional dependency (vLLM, Transformer Engine, apex, ...) is needed but not installed."""

    def __init__(self, package: str, feature: str, hint: str = ""):
        self.package = package
        msg = f"{feature} needs the optional package '{package}', which is not installed"
        if hint:
            msg += f"; {hint}"
        super().__init__(msg)


def require(module: str, feature: str, hint: str = ""):
    """Import an optional module lazily, turning its absence into a `MissingDependencyError`."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(module.split(".")[0], feature, hint) from exc
