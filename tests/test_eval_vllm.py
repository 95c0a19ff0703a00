"""`mtr eval` with `engine: vllm`: the same greedy answers as the transformers engine, fp32, on CPU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mtr_hpc.config import load_config
from mtr_hpc.eval.config import EvalConfig
from mtr_hpc.eval.harness import run_eval

pytest.importorskip("vllm", reason="vLLM is installed by `tools/setup.sh --test`")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A random 2-layer Llama with heads of 32 (vLLM's CPU attention needs 32 or more) and SmolLM2's
    tokenizer; its end of turn ends generation."""
    from mtr_hpc.models.registry import load_tokenizer
    from mtr_hpc.models.tiny import tiny_hf_model

    path = tmp_path_factory.mktemp("tiny-h32")
    tok = load_tokenizer("smollm2-135m")
    model = tiny_hf_model(
        seed=1, model_type="llama", vocab_size=49152, hidden_size=64, num_heads=2, num_kv_heads=2,
        intermediate_size=128,
    )  # fmt: skip
    model.config.max_position_embeddings = 4096
    model.config.eos_token_id = tok.convert_tokens_to_ids("<|im_end|>")
    model.save_pretrained(path, safe_serialization=True)
    tok.save_pretrained(path)
    return path


def _eval(out: Path, model: Path, engine: str) -> list[dict]:
    data = {
        "out": str(out),
        "models": [{"name": "tiny", "path": str(model)}],
        "benchmarks": [{"name": "hotpotqa", "limit": 3}, {"name": "2wiki", "limit": 3}],
        "modes": ["direct", "tools"],
        "envs": ["grounded", "retrieval"],
        "generation": {"max_turns": 2, "max_new_tokens": 12, "max_tokens": 2048, "probe": 0},
        "batch_size": 4,
        "progress": False,
        "dtype": "fp32",
        "engine": engine,
    }
    path = out.parent / f"{out.name}.yaml"
    path.write_text(json.dumps(data), encoding="utf-8")
    summary = run_eval(load_config(EvalConfig, path))
    lines = (Path(summary["out"]) / "predictions.jsonl").read_text().splitlines()
    return sorted(
        (json.loads(line) for line in lines), key=lambda r: (r["mode"], r["env"], r["benchmark"], r["id"])
    )


def test_vllm_answers_as_the_transformers_engine(tmp_path, model_dir):
    """Direct answers, the grounded simulator and real BM25 retrieval (which loads numba and llvmlite
    before the vLLM engine builds: vLLM 0.32's kernel-rebinding scan used to fail on llvmlite)."""
    hf = _eval(tmp_path / "hf", model_dir, "hf")
    vllm = _eval(tmp_path / "vllm", model_dir, "vllm")
    assert len(hf) == len(vllm) == 18  # 3 settings x 2 benchmarks x 3 questions
    for a, b in zip(hf, vllm, strict=True):
        assert (a["mode"], a["env"], a["id"]) == (b["mode"], b["env"], b["id"])
        assert a["messages"] == b["messages"], (a["mode"], a["id"])
        assert a["n_generated"] == b["n_generated"] > 0
