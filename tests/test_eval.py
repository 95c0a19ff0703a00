"""`mtr eval` end to end: a tiny random Llama through both modes, a scripted engine that answers
correctly (EM/F1 = 1 and results.json == `mtr score`), resuming, and bad input refused up front."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from mtr_hpc.cli import main as mtr_main
from mtr_hpc.config import load_config
from mtr_hpc.data import load_sample
from mtr_hpc.errors import ConfigError, DataError, MtrError
from mtr_hpc.eval.config import EvalConfig, ModelSpec
from mtr_hpc.eval.harness import run_eval
from mtr_hpc.eval.report import find_cell
from mtr_hpc.rollout.protocol import Generation
from mtr_hpc.tracking import read_metrics

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
N_PER_BENCH = 3


@pytest.fixture(scope="module")
def tokenizer():
    from mtr_hpc.models.registry import load_tokenizer

    return load_tokenizer("smollm2-135m")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory, tokenizer) -> Path:
    """A randomly initialized 2-layer Llama with SmolLM2's tokenizer saved beside it."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    path = tmp_path_factory.mktemp("tiny-llama")
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
    )
    LlamaForCausalLM(cfg).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """A JSONL corpus of the HotpotQA sample's context paragraphs (gold pages included)."""
    path = tmp_path_factory.mktemp("corpus") / "corpus.jsonl"
    seen, lines = set(), []
    for ex in load_sample("hotpotqa"):
        for p in ex.evidence.get("paragraphs", []):
            if p["title"] not in seen:
                seen.add(p["title"])
                lines.append(json.dumps({"title": p["title"], "text": p["text"]}))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def gold_file(tmp_path: Path, source: Path, n: int) -> Path:
    """The first `n` records of a benchmark file in its own format (a gold file for `mtr score`)."""
    records = json.loads(source.read_text(encoding="utf-8"))[:n]
    out = tmp_path / source.name
    out.write_text(json.dumps(records), encoding="utf-8")
    return out


def make_cfg(out: Path, model: Path, benchmarks: list[dict], **over) -> EvalConfig:
    data = {
        "out": str(out),
        "models": [{"name": "tiny", "path": str(model)}],
        "benchmarks": benchmarks,
        "modes": ["direct", "tools"],
        "generation": {"max_turns": 2, "max_new_tokens": 8, "max_tokens": 2048},
        "batch_size": 4,
        "progress": False,
    }
    data.update(over)
    path = out.parent / f"{out.name}.yaml"
    path.write_text(json.dumps(data), encoding="utf-8")
    return load_config(EvalConfig, path)


class ScriptedEngine:
    """Implements the rollout protocol; reads the question off the prompt and answers it correctly.

    `tools` episodes first call `search` once (a real query against the retrieval environment), then
    answer after the observation; `direct` prompts are answered at once.
    """

    def __init__(self, tokenizer, answers: dict[str, str]):
        self.tokenizer = tokenizer
        self.answers = answers
        self.vocab_size = len(tokenizer)
        self.eot = tokenizer.convert_tokens_to_ids("<|im_end|>")
        self.calls = 0

    def _reply(self, prompt: str) -> str:
        # The last user turn is the question (direct mode shows a worked exchange before it).
        users = re.findall(r"<\|im_start\|>user\n(.*?)<\|im_end\|>", prompt, re.DOTALL)
        question = [u for u in users if not u.startswith("<tool_response>")][-1]
        answer = self.answers[question]
        if "<tools>" in prompt and "<tool_response>" not in prompt:
            call = json.dumps({"name": "search", "arguments": {"query": question, "top_k": 2}})
            return f"<think>I should search.</think>\n<tool_call>\n{call}\n</tool_call>"
        return f"<think>I know it.</think><answer>{answer}</answer>"

    def generate(self, prompts, params):
        self.calls += 1
        out = []
        for ids in prompts:
            text = self.tokenizer.decode(ids, skip_special_tokens=False)
            reply = self.tokenizer.encode(self._reply(text), add_special_tokens=False) + [self.eot]
            out.append(Generation(reply, [0.0] * len(reply), "stop", self.eot))
        return out

    def update_weights(self, named_tensors):
        return {}

    def sleep(self):
        pass

    def logits(self, token_ids):
        raise NotImplementedError


def test_scripted_engine_scores_one_and_matches_mtr_score(tmp_path, tiny_model, tokenizer, corpus, capsys):
    from mtr_hpc.data import sample_path
    from mtr_hpc.rollout.protocol import RolloutEngine

    gold = {b: gold_file(tmp_path, sample_path(b), N_PER_BENCH) for b in ("hotpotqa", "bamboogle")}
    answers = {ex.question: ex.answers[0] for b in gold for ex in load_sample(b)}
    engine = ScriptedEngine(tokenizer, answers)
    assert isinstance(engine, RolloutEngine)
    cfg = make_cfg(
        tmp_path / "run",
        tiny_model,
        [{"name": b, "source": str(p)} for b, p in gold.items()],
        envs=["retrieval"],
        retrieval={"corpus": str(corpus), "results": {"top_k": 3}},
        batch_size=2 * N_PER_BENCH,
    )
    summary = run_eval(cfg, engine_factory=lambda path, c: (engine, tokenizer))
    assert summary["answered"] == 2 * 2 * N_PER_BENCH
    # Both benchmarks share each batch: one direct generate, then two tools rounds.
    assert engine.calls == 3
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert len(results["cells"]) == 4
    for cell in results["cells"]:
        assert (cell["n"], cell["em"], cell["f1"], cell["format_valid_rate"]) == (N_PER_BENCH, 1.0, 1.0, 1.0)
        assert cell["mean_tool_calls"] == (1.0 if cell["setting"] == "tools/retrieval" else 0.0)
        assert cell["mean_turns"] == (2.0 if cell["setting"] == "tools/retrieval" else 1.0)
        assert cell["invalid_call_rate"] == 0.0
    preds = [json.loads(line) for line in (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()]
    tool_rec = next(r for r in preds if r["mode"] == "tools")
    assert tool_rec["env"] == "retrieval"
    # The observation came from the real BM25 index over the corpus.
    obs = json.loads(next(m for m in tool_rec["messages"] if m["role"] == "tool")["content"])
    assert len(obs["results"]) == 2 and all(r["title"] for r in obs["results"])
    # The tools of training (the ToolMaker's for the question), answered by the real engine.
    assert tool_rec["finish"] == "answer" and tool_rec["tools"][:2] == ["search", "open_page"]
    # Fidelity of what the episode observed: the gold answer stated in the observation, tokens counted.
    fid = tool_rec["fidelity"]
    assert fid["obs"] == 1 and fid["tool_messages"] == 1 and fid["obs_tokens"] > 50
    assert isinstance(fid["answer_seen"], bool) and len(fid["gold_found"]) >= 1

    for bench, path in gold.items():
        for mode in ("direct", "tools"):
            pred_file = tmp_path / f"{bench}-{mode}.jsonl"
            pred_file.write_text(
                "".join(
                    json.dumps({"id": r["id"], "prediction": r["prediction"]}) + "\n"
                    for r in preds
                    if (r["benchmark"], r["mode"]) == (bench, mode)
                )
            )
            capsys.readouterr()
            assert (
                mtr_main(["score", "--benchmark", bench, "--gold", str(path), "--pred", str(pred_file)]) == 0
            )
            scored = json.loads(capsys.readouterr().out)
            cell = find_cell(results, "tiny", "direct" if mode == "direct" else "tools/retrieval", bench)
            assert (scored["n"], scored["em"], scored["f1"]) == (cell["n"], cell["em"], cell["f1"])
            assert scored["by_type"] == cell["by_type"]


class Babbler(ScriptedEngine):
    """Never writes a turn that parses (an untrained model), in either mode."""

    def _reply(self, prompt: str) -> str:
        return "I think the answer is probably somewhere."


def test_a_model_whose_turns_never_parse_is_probed_and_the_rest_marked_not_run(
    tmp_path, tiny_model, tokenizer
):
    from mtr_hpc.data import sample_path

    gold = {b: gold_file(tmp_path, sample_path(b), N_PER_BENCH) for b in ("hotpotqa", "bamboogle")}
    answers = {ex.question: ex.answers[0] for b in gold for ex in load_sample(b)}
    benches = [{"name": b, "source": str(p)} for b, p in gold.items()]
    gen = {"max_turns": 2, "max_new_tokens": 8, "max_tokens": 2048, "probe": 2}
    engine = Babbler(tokenizer, answers)
    cfg = make_cfg(tmp_path / "run", tiny_model, benches, generation=gen, batch_size=8)
    summary = run_eval(cfg, engine_factory=lambda path, c: (engine, tokenizer))
    assert summary["answered"] == 2 * 2 * N_PER_BENCH
    preds = [json.loads(line) for line in (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()]
    tools = [r for r in preds if r["mode"] == "tools"]
    ran = [r for r in tools if r["finish"] != "not_run"]
    # The probe: one question of each benchmark, in one engine call after the direct one.
    assert sorted(r["benchmark"] for r in ran) == ["bamboogle", "hotpotqa"] and engine.calls == 2
    assert all(r["finish"] == "parse_error" for r in ran)
    assert all(r["finish"] == "not_run" and "probe" in r["error"] for r in tools if r not in ran)
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    cell = find_cell(results, "tiny", "tools/grounded", "hotpotqa")
    assert (cell["em"], cell["not_run"], cell["answered"]) == (0.0, N_PER_BENCH - 1, 1)
    assert len(cell["em_per_question"]) == N_PER_BENCH
    report = (tmp_path / "run" / "report.md").read_text()
    assert "0.0 / 0.0 †" in report and "were not run and score 0" in report
    assert find_cell(results, "tiny", "direct", "hotpotqa")["not_run"] == 0  # direct is never probed

    # A model whose probe parses runs every question, the probe's included once.
    engine = ScriptedEngine(tokenizer, answers)
    cfg = make_cfg(tmp_path / "ok", tiny_model, benches, generation=gen, envs=["grounded"], batch_size=8)
    run_eval(cfg, engine_factory=lambda path, c: (engine, tokenizer))
    results = json.loads((tmp_path / "ok" / "results.json").read_text())
    assert all(c["not_run"] == 0 and c["answered"] == N_PER_BENCH for c in results["cells"])
    preds = [json.loads(line) for line in (tmp_path / "ok" / "predictions.jsonl").read_text().splitlines()]
    assert len(preds) == 2 * 2 * N_PER_BENCH and all(r["finish"] == "answer" for r in preds)


def test_the_retrieval_environment_reads_an_index_directory_or_a_server_alike(
    tmp_path, tiny_model, tokenizer, corpus
):
    """The same episodes against the corpus file (indexed into the cache), an index directory built
    ahead, and that index behind `mtr serve-retriever`'s server (a turn round's searches in one request)."""
    from mtr_hpc.retrievers.bm25_index import BM25Index, build_index
    from mtr_hpc.retrievers.server import RetrieverServeConfig, RetrieverServer

    bench = [{"name": "hotpotqa", "limit": N_PER_BENCH}]
    answers = {ex.question: ex.answers[0] for ex in load_sample("hotpotqa")}
    build_index(corpus, tmp_path / "ix", progress=False)
    server = RetrieverServer(BM25Index(tmp_path / "ix"), RetrieverServeConfig(port=0)).start()
    observed = {}
    try:
        for name, retrieval in (
            ("file", {"corpus": str(corpus)}),
            ("dir", {"corpus": str(tmp_path / "ix")}),
            ("http", {"backend": "http", "url": server.url}),
        ):
            engine = ScriptedEngine(tokenizer, answers)
            cfg = make_cfg(
                tmp_path / name, tiny_model, bench, envs=["retrieval"], modes=["tools"], retrieval=retrieval
            )
            run_eval(cfg, engine_factory=lambda path, c, e=engine: (e, tokenizer))
            preds = [json.loads(x) for x in (tmp_path / name / "predictions.jsonl").read_text().splitlines()]
            observed[name] = [[m["content"] for m in r["messages"] if m["role"] == "tool"] for r in preds]
        assert server.requests >= 1
    finally:
        server.close()
    assert observed["file"] == observed["dir"] == observed["http"]
    assert all(len(obs) == 1 for obs in observed["http"])


def test_three_environments_side_by_side_with_tools_played_over_http(tmp_path, tiny_model, tokenizer, corpus):
    """grounded, llm (the tool model behind `mtr serve` on 127.0.0.1) and retrieval in one run, and
    the report's simulation-gap table over them."""
    from mtr_hpc.llm.server import LLMServer, ServeConfig

    answers = {ex.question: ex.answers[0] for ex in load_sample("hotpotqa")}
    engine = ScriptedEngine(tokenizer, answers)
    with LLMServer(ServeConfig(backend="echo", port=0)).start() as server:
        cfg = make_cfg(
            tmp_path / "run",
            tiny_model,
            [{"name": "hotpotqa", "limit": N_PER_BENCH}],
            modes=["tools"],
            envs=["grounded", "llm", "retrieval"],
            retrieval={"corpus": str(corpus), "results": {"top_k": 3}},
            llm={"backend": "openai", "base_url": server.url, "model": "echo"},
        )
        run_eval(cfg, engine_factory=lambda path, c: (engine, tokenizer))
        served = server.stats.requests
    assert served == N_PER_BENCH  # one search per question in the llm environment, each one request
    preds = [json.loads(line) for line in (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()]
    llm_obs = [
        json.loads(m["content"])
        for r in preds
        if r["env"] == "llm"
        for m in r["messages"]
        if m["role"] == "tool"
    ]
    assert len(llm_obs) == N_PER_BENCH and all(o["query"] == "echo" for o in llm_obs)
    report = (tmp_path / "run" / "report.md").read_text()
    assert "## Simulation gap" in report
    assert "| tiny | hotpotqa | 100.0 | 100.0 | 100.0 | +0.0 [+0.0, +0.0] | +0.0 [+0.0, +0.0] |" in report
    assert "## Tool environment fidelity" in report


@pytest.mark.slow
def test_tiny_model_both_modes_outputs_and_resume(tmp_path, tiny_model, shared_data):
    out = tmp_path / "run"
    train_run = tmp_path / "sft-run"
    train_run.mkdir()
    (train_run / "metrics.jsonl").write_text(
        "".join(
            json.dumps({"step": s, "sft/loss": 3.0 / s, "sft/eval_loss": 3.5 / s}) + "\n" for s in (1, 2, 3)
        )
    )
    cfg = make_cfg(
        out,
        tiny_model,
        [{"name": "hotpotqa", "limit": N_PER_BENCH, "seed": 1}, {"name": "2wiki", "limit": N_PER_BENCH}],
        envs=["grounded"],
        training_runs=[str(train_run)],
    )
    assert run_eval(cfg)["answered"] == 2 * 2 * N_PER_BENCH
    # A finished run gains an environment: only its questions are run (retrieval over the shipped corpus).
    cfg = make_cfg(
        out,
        tiny_model,
        [{"name": "hotpotqa", "limit": N_PER_BENCH, "seed": 1}, {"name": "2wiki", "limit": N_PER_BENCH}],
        envs=["grounded", "retrieval"],
        training_runs=[str(train_run)],
    )
    first = run_eval(cfg)
    assert first["answered"] == 2 * N_PER_BENCH and first["questions"] == 3 * 2 * N_PER_BENCH
    lines = (out / "predictions.jsonl").read_text().splitlines()
    assert len(lines) == first["questions"]
    rec = json.loads(lines[-1])
    for key in (
        "model",
        "mode",
        "env",
        "benchmark",
        "id",
        "prediction",
        "messages",
        "turns",
        "tool_calls",
        "finish",
    ):
        assert key in rec
    settings = ("direct", "tools/grounded", "tools/retrieval")
    assert {(json.loads(x)["mode"], json.loads(x)["env"]) for x in lines} == {
        ("direct", ""),
        ("tools", "grounded"),
        ("tools", "retrieval"),
    }
    retrieval = [json.loads(x) for x in lines if json.loads(x)["env"] == "retrieval"]
    grounded = {r["id"]: r["tools"] for r in (json.loads(x) for x in lines) if r["env"] == "grounded"}
    assert all(r["tools"] == grounded[r["id"]] for r in retrieval)  # the same tools in both
    results = json.loads((out / "results.json").read_text())
    assert results["settings"] == list(settings)
    assert {(c["setting"], c["benchmark"]) for c in results["cells"]} == {
        (m, b) for m in settings for b in ("hotpotqa", "2wiki")
    }
    for cell in results["cells"]:
        assert cell["n"] == N_PER_BENCH and 0.0 <= cell["em"] <= cell["f1"] + 1e-12 <= 1.0 + 1e-12
    report = (out / "report.md").read_text()
    assert (
        "| tiny | direct |" in report
        and "| tiny | tools/grounded |" in report
        and "| tiny | tools/retrieval |" in report
        and "2wiki by question type" in report
    )
    assert "![training_curves.png](training_curves.png)" in report
    for png in ("scores.png", "training_curves.png"):
        data = (out / png).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 1000
    metrics = read_metrics(out)
    assert len(metrics) == 1 and "eval/tiny/tools/retrieval/hotpotqa/em" in metrics[0]

    # Rerun: nothing left to do, nothing loaded.
    def no_engine(path, c):
        raise AssertionError("a finished run must not load a model")

    assert run_eval(cfg, engine_factory=no_engine)["answered"] == 0
    assert (out / "predictions.jsonl").read_text().splitlines() == lines
    # A kill mid-write: the last record is cut short; the rerun redoes exactly that question.
    (out / "predictions.jsonl").write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:25])
    again = run_eval(cfg)
    assert again["answered"] == 1
    assert (out / "predictions.jsonl").read_text().splitlines() == lines
    assert json.loads((out / "results.json").read_text())["cells"] == results["cells"]
    assert len(read_metrics(out)) == 1


def _never(path, cfg):
    raise AssertionError("bad input must be refused before any model is loaded")


def test_bad_model_paths_refused_up_front(tmp_path, tiny_model):
    bench = [{"name": "bamboogle", "limit": 2}]
    with pytest.raises(ConfigError, match="does not exist"):
        run_eval(make_cfg(tmp_path / "a", tmp_path / "nope", bench), engine_factory=_never)
    weird = tmp_path / "weird"
    weird.mkdir()
    (weird / "notes.txt").write_text("hi")
    with pytest.raises(ConfigError, match="is not a model"):
        run_eval(make_cfg(tmp_path / "b", weird, bench), engine_factory=_never)
    (weird / "config.json").write_text(json.dumps({"hidden_size": 4}))
    with pytest.raises(ConfigError, match="no model_type"):
        run_eval(make_cfg(tmp_path / "c", weird, bench), engine_factory=_never)
    no_tok = tmp_path / "no_tok"
    no_tok.mkdir()
    (no_tok / "config.json").write_text((tiny_model / "config.json").read_text())
    with pytest.raises(ConfigError, match="no tokenizer"):
        run_eval(make_cfg(tmp_path / "d", no_tok, bench), engine_factory=_never)
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "mcore_config.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(MtrError, match="format"):
        run_eval(make_cfg(tmp_path / "e", ckpt, bench), engine_factory=_never)
    for name in "abcde":
        assert not (tmp_path / name).exists()


def test_bad_benchmark_and_corpus_refused_up_front(tmp_path, tiny_model, corpus):
    empty = tmp_path / "empty.json"
    empty.write_text("[]")
    with pytest.raises(DataError, match="no records"):
        run_eval(
            make_cfg(tmp_path / "a", tiny_model, [{"name": "hotpotqa", "source": str(empty)}]),
            engine_factory=_never,
        )
    with pytest.raises(ConfigError, match="does not exist"):
        run_eval(
            make_cfg(tmp_path / "b", tiny_model, [{"name": "hotpotqa", "source": str(tmp_path / "x.json")}]),
            engine_factory=_never,
        )
    bad = tmp_path / "bad_corpus.jsonl"
    good = corpus.read_text().splitlines()
    bad.write_text("\n".join([*good[:3], '{"title": "Broken", "text": ', *good[3:6]]) + "\n")
    bench = [{"name": "bamboogle", "limit": 2}]
    with pytest.raises(DataError, match=r"bad_corpus.jsonl.*line 4"):
        run_eval(
            make_cfg(tmp_path / "c", tiny_model, bench, envs=["retrieval"], retrieval={"corpus": str(bad)}),
            engine_factory=_never,
        )
    for d, corpus_path in (("d", ""), ("f", str(tmp_path / "none.jsonl"))):
        with pytest.raises(ConfigError, match="retrieval.corpus"):
            cfg = make_cfg(
                tmp_path / d, tiny_model, bench, envs=["retrieval"], retrieval={"corpus": corpus_path}
            )
            run_eval(cfg, engine_factory=_never)
    with pytest.raises(ConfigError, match="unknown benchmark"):
        run_eval(make_cfg(tmp_path / "e", tiny_model, [{"name": "squad"}]), engine_factory=_never)
    for name in "abcdef":
        assert not (tmp_path / name).exists()


def test_cli_eval_direct_only(tmp_path, tiny_model, capsys):
    cfg_path = tmp_path / "eval.yaml"
    cfg_path.write_text(
        json.dumps(
            {
                "models": [{"name": "tiny", "path": str(tiny_model)}],
                "benchmarks": [{"name": "musique", "limit": 2}],
                "modes": ["direct"],
                "generation": {"max_new_tokens": 4},
                "progress": False,
            }
        )
    )
    out = tmp_path / "run"
    assert mtr_main(["eval", "--config", str(cfg_path), "--out", str(out), "batch_size=2"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["answered"] == 2 and Path(summary["report"]).is_file()
    assert mtr_main(["eval", "--config", str(cfg_path), "--out", str(out), "modes=[bogus]"]) == 2
    assert "modes[0]" in capsys.readouterr().err


def test_sampled_subset_is_stable(tmp_path, tiny_model):
    from mtr_hpc.eval.plan import build_plan

    def ids(seed):
        cfg = make_cfg(tmp_path / "p", tiny_model, [{"name": "2wiki", "limit": 5, "seed": seed}])
        return [ex.id for ex in build_plan(cfg).examples["2wiki"]]

    assert ids(3) == ids(3) and len(set(ids(3))) == 5
    assert ids(3) != ids(4)


def test_run_dir_and_megatron_checkpoint_give_the_source_predictions(tmp_path, tiny_model):
    """An SFT run dir (its hf/) and a Megatron checkpoint (converted on the fly) are the same weights as
    the HF directory: greedy direct-mode outputs must agree token for token."""
    import shutil

    from mtr_hpc.models.pipeline import hf_to_mcore

    run_dir = tmp_path / "sft-run"
    shutil.copytree(tiny_model, run_dir / "hf")
    (run_dir / "checkpoints").mkdir()
    ckpt = tmp_path / "mcore"
    hf_to_mcore(tiny_model, ckpt)
    cfg = make_cfg(tmp_path / "run", tiny_model, [{"name": "bamboogle", "limit": 2}], modes=["direct"])
    cfg.models += [ModelSpec("sft", str(run_dir)), ModelSpec("mcore", str(ckpt))]
    run_eval(cfg)
    assert (tmp_path / "run" / "converted" / "mcore" / "config.json").is_file()
    preds = [json.loads(x) for x in (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()]
    outputs = {}
    for r in preds:
        outputs.setdefault(r["model"], {})[r["id"]] = r["messages"][-1]["content"]
    assert set(outputs) == {"tiny", "sft", "mcore"}
    assert outputs["tiny"] == outputs["sft"] == outputs["mcore"]
    assert any(outputs["tiny"].values())


def _training_run(root: Path, name: str, examples: list[str], model_from: str) -> Path:
    from mtr_hpc.data.trained_on import write_trained_on

    run = root / name
    (run / "hf").mkdir(parents=True)
    (run / "metrics.jsonl").write_text(json.dumps({"step": 0, "sft/loss": 1.0}) + "\n")
    write_trained_on(run, name, examples, model_from)
    return run


def test_questions_a_training_run_learned_from_are_refused_or_marked(tmp_path, tiny_model, tokenizer):
    from mtr_hpc.data.splits import select_part

    held = select_part(load_sample("bamboogle"), "heldout")
    # SFT trained on one held-out question; GRPO started from SFT's export and trained on another.
    sft = _training_run(tmp_path, "sft", [f"bamboogle:{held[0].id}", "hotpotqa:x"], "smollm2-135m")
    grpo = _training_run(tmp_path, "grpo", [f"bamboogle:{held[1].id}"], str(sft / "hf"))
    bench = [{"name": "bamboogle", "source": "sample", "part": "heldout"}]
    with pytest.raises(
        ConfigError, match=r"benchmarks\[0\].*of 'bamboogle' were trained on by the run .*sft"
    ):
        run_eval(make_cfg(tmp_path / "a", tiny_model, bench, training_runs=[str(sft)]))
    # The chain is followed from the GRPO run alone.
    with pytest.raises(ConfigError, match="trained on by the run"):
        run_eval(make_cfg(tmp_path / "b", tiny_model, bench, training_runs=[str(grpo)]))
    answers = {ex.question: ex.answers[0] for ex in held}
    engine = ScriptedEngine(tokenizer, answers)
    cfg = make_cfg(
        tmp_path / "c", tiny_model, bench, modes=["direct"],
        training_runs=[str(grpo)], allow_train_overlap=True,
    )  # fmt: skip
    run_eval(cfg, engine_factory=lambda path, c: (engine, tokenizer))
    results = json.loads((tmp_path / "c" / "results.json").read_text())
    assert results["train_overlap"] == {"bamboogle": {str(sft): 1, str(grpo): 1}}
    report = (tmp_path / "c" / "report.md").read_text()
    assert report.count("**Trained-on questions:** 1 of") == 2
    # Questions no run trained on are evaluated without complaint.
    clean = make_cfg(tmp_path / "d", tiny_model, [{**bench[0], "part": "train", "limit": 2}], modes=["direct"],
                     training_runs=[str(grpo)])  # fmt: skip
    from mtr_hpc.eval.plan import build_plan

    assert build_plan(clean).train_overlap == {}
