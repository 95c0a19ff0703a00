"""HF model I/O and the conversion check: HF logits vs Megatron logits on a fixed prompt, in fp32.

The Megatron side is built at TP=1 from the merged checkpoint (the TP forward itself is covered by the
tests), with the `sdpa` layer spec (CPU or GPU).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from ..errors import MtrError
from .config import Arch, ModelConfig
from .convert import Layout, rename_for_spec

PROMPT = "The capital of France is Paris. The capital of Germany is"


def hf_config_dict(hf_dir: str | Path) -> dict[str, Any]:
    path = Path(hf_dir) / "config.json"
    if not path.is_file():
        raise MtrError(f"{hf_dir} has no config.json")
    return json.loads(path.read_text(encoding="utf-8"))


def load_hf_state_dict(hf_dir: str | Path, names: Iterable[str] | None = None) -> dict[str, torch.Tensor]:
    """The tensors of a HF directory (all, or those in `names`), read from its safetensors files without
    instantiating a model; with `names` only those tensors are read, so a pipeline stage of a large
    model never holds the whole checkpoint."""
    from safetensors import safe_open

    wanted = set(names) if names is not None else None
    files = sorted(Path(hf_dir).glob("*.safetensors"))
    if not files:
        state = {k: v.detach().clone() for k, v in load_hf_model(hf_dir).state_dict().items()}
        return state if wanted is None else {k: v for k, v in state.items() if k in wanted}
    state: dict[str, torch.Tensor] = {}
    for f in files:
        with safe_open(str(f), framework="pt") as fh:
            for key in fh.keys():
                if wanted is None or key in wanted:
                    state[key] = fh.get_tensor(key)
    return state


def load_hf_model(hf_dir: str | Path, dtype: torch.dtype = torch.float32):
    import transformers

    major = int(transformers.__version__.split(".")[0])
    key = "dtype" if major >= 5 else "torch_dtype"
    model = transformers.AutoModelForCausalLM.from_pretrained(str(hf_dir), **{key: dtype})
    return model.eval()


def hf_model_from_state(hf_config: Mapping[str, Any], state: Mapping[str, torch.Tensor]):
    """A HF model (fp32, eval) from a config dict and a state dict, without touching disk."""
    import transformers

    cfg = transformers.AutoConfig.for_model(**dict(hf_config))
    model = transformers.AutoModelForCausalLM.from_config(cfg).float().eval()
    missing, unexpected = model.load_state_dict(dict(state), strict=False)
    missing = [m for m in missing if not (cfg.tie_word_embeddings and m == "lm_head.weight")]
    if missing or unexpected:
        raise MtrError(f"HF state does not fit the model: missing {missing[:3]}, unexpected {unexpected[:3]}")
    if cfg.tie_word_embeddings:
        model.tie_weights()
    return model


def prompt_ids(hf_dir: str | Path | None, vocab_size: int, length: int = 12) -> torch.Tensor:
    """The tokenized fixed prompt, or fixed pseudo-random ids when the model has no tokenizer."""
    if hf_dir is not None and (Path(hf_dir) / "tokenizer_config.json").is_file():
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(str(hf_dir))(PROMPT, return_tensors="pt")["input_ids"]
    gen = torch.Generator().manual_seed(0)
    return torch.randint(0, vocab_size, (1, length), generator=gen)


@torch.no_grad()
def megatron_logits(arch: Arch, layout: Layout, state: Mapping[str, torch.Tensor], ids: torch.Tensor):
    """Logits of a TP=1 Megatron model holding `state` (merged, any naming), fp32."""
    from .checkpoint import load_into_model
    from .gpt import build_gpt, forward_logits
    from .parallel import init_parallel

    cfg = ModelConfig(
        hf="", layer_spec="sdpa", make_vocab_size_divisible_by=layout.make_vocab_size_divisible_by
    )
    init_parallel(1, 1, seed=cfg.seed)
    model = build_gpt(arch, cfg, init_weights=False).eval()
    load_into_model(model, rename_for_spec(state, arch, te_names=False), "converted checkpoint")
    return forward_logits(model, ids, arch.vocab_size).float().cpu()


@torch.no_grad()
def hf_logits(model, ids: torch.Tensor) -> torch.Tensor:
    return model(input_ids=ids).logits.float()


def compare_logits(reference: torch.Tensor, other: torch.Tensor) -> dict[str, Any]:
    agree = (reference.argmax(-1) == other.argmax(-1)).float().mean().item()
    return {
        "max_abs_logit_diff": (reference - other).abs().max().item(),
        "argmax_agree": agree,
        "argmax_all_agree": agree == 1.0,
        "tokens": int(reference.shape[1]),
    }


def states_equal(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> bool:
    """Exact equality of two state dicts: same names, dtypes, shapes and values."""
    return set(a) == set(b) and all(a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in a)
