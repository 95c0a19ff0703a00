"""`mtr score`: JSON on stdout, missing/extra ids, per-type means, typed errors for bad prediction files."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mtr_hpc.cli import main
from mtr_hpc.cli.score import read_predictions
from mtr_hpc.data import load_benchmark
from mtr_hpc.errors import DataError

HOTPOT = "hotpotqa/hotpot_dev_distractor_first100.json"
MUSIQUE = "musique/musique_ans_v1.0_dev_noparagraphs.json"


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _score(capsys, *argv):
    code = main(["score", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_gold_answers_score_one(shared_data, tmp_path, capsys):
    gold = shared_data / HOTPOT
    examples = load_benchmark("hotpotqa", gold).examples
    pred = _write_jsonl(tmp_path / "pred.jsonl", [{"id": e.id, "prediction": e.answers[0]} for e in examples])
    code, out, err = _score(capsys, "--benchmark", "hotpotqa", "--gold", str(gold), "--pred", str(pred))
    assert code == 0, err
    result = json.loads(out)
    assert result["n"] == len(examples) == 100
    assert result["em"] == 1.0 and result["f1"] == 1.0
    assert result["missing"] == 0 and result["extra"] == 0
    assert set(result["by_type"]) == {"bridge", "comparison"}
    assert sum(t["n"] for t in result["by_type"].values()) == 100
    assert all(t["em"] == 1.0 for t in result["by_type"].values())
    assert "EM=1.0000" in err


def test_missing_ids_score_zero_and_extra_ids_are_counted(shared_data, tmp_path, capsys):
    gold = shared_data / MUSIQUE
    examples = load_benchmark("musique", gold).examples
    # every 4th example has no prediction; predictions use the last alias where there is one
    rows = [{"id": e.id, "prediction": e.answers[-1]} for i, e in enumerate(examples) if i % 4]
    rows += [{"id": "not-a-gold-id", "prediction": "x"}, {"id": 12345, "prediction": "y"}]
    pred = _write_jsonl(tmp_path / "pred.jsonl", rows)
    code, out, _ = _score(capsys, "--benchmark", "musique", "--gold", str(gold), "--pred", str(pred))
    assert code == 0
    result = json.loads(out)
    n_missing = len(range(0, len(examples), 4))
    assert result["n"] == len(examples) and result["missing"] == n_missing and result["extra"] == 2
    assert result["em"] == pytest.approx((len(examples) - n_missing) / len(examples))
    assert result["f1"] == pytest.approx(result["em"])
    assert set(result["by_type"]) == {"2hop", "3hop", "4hop"}
    assert sum(t["n"] for t in result["by_type"].values()) == len(examples)


def test_hand_checked_flashrag_file(tmp_path, capsys):
    gold = _write_jsonl(
        tmp_path / "gold.jsonl",
        [
            {"id": "a", "question": "q1?", "golden_answers": ["Paris France Europe", "Lutetia"]},
            {"id": "b", "question": "q2?", "golden_answers": ["yes"]},
            {"id": "c", "question": "q3?", "golden_answers": ["Rome"]},
        ],
    )
    pred = _write_jsonl(
        tmp_path / "pred.jsonl",
        [{"id": "a", "prediction": "Paris, Texas"}, {"id": "b", "prediction": "Yes!"}],
    )
    code, out, _ = _score(capsys, "--benchmark", "bamboogle", "--gold", str(gold), "--pred", str(pred))
    assert code == 0
    result = json.loads(out)
    assert (result["n"], result["missing"], result["extra"]) == (3, 1, 0)
    assert result["em"] == pytest.approx(1 / 3)
    assert result["f1"] == pytest.approx((0.4 + 1.0 + 0.0) / 3)
    assert set(result) == {"n", "em", "f1", "by_type", "missing", "extra"}


@pytest.mark.parametrize(
    "line, fragment",
    [
        ("not json", "not valid JSON"),
        ('["a", "b"]', "expected a JSON object"),
        ('{"prediction": "x"}', "field 'id' is missing"),
        ('{"id": "a"}', "field 'prediction' is missing"),
        ('{"id": "a", "prediction": 3}', "field 'prediction' must be a string"),
        ('{"id": null, "prediction": "x"}', "field 'id' must be a string"),
        ('{"id": "first", "prediction": "again"}', "duplicate id 'first' (first on line 1)"),
    ],
)
def test_bad_prediction_line_names_file_and_line(tmp_path, line, fragment):
    path = tmp_path / "pred.jsonl"
    path.write_text('{"id": "first", "prediction": "x"}\n\n' + line + "\n", encoding="utf-8")
    with pytest.raises(DataError) as info:
        read_predictions(path)
    msg = str(info.value)
    assert str(path) in msg and "line 3" in msg and fragment in msg


def test_bad_prediction_file_exits_2(shared_data, tmp_path, capsys):
    pred = tmp_path / "pred.jsonl"
    pred.write_text('{"id": "SYNTH_dev_0", "prediction": "yes"}\n{"id": "SYNTH_dev_1"}\n', encoding="utf-8")
    code, out, err = _score(
        capsys, "--benchmark", "hotpotqa", "--gold", str(shared_data / HOTPOT), "--pred", str(pred)
    )
    assert code == 2 and out == ""
    assert "line 2" in err and "prediction" in err and str(pred) in err


def test_missing_pred_file_exits_2(shared_data, tmp_path, capsys):
    code, out, err = _score(
        capsys, "--benchmark", "hotpotqa", "--gold", str(shared_data / HOTPOT), "--pred", str(tmp_path / "no")
    )
    assert code == 2 and out == "" and "cannot read file" in err


def test_skip_bad_gold_records(tmp_path, capsys):
    gold = tmp_path / "gold.jsonl"
    gold.write_text('{"id": "a", "question": "q?", "golden_answers": ["Rome"]}\n{broken\n', encoding="utf-8")
    pred = _write_jsonl(tmp_path / "pred.jsonl", [{"id": "a", "prediction": "rome"}])
    argv = ["--benchmark", "bamboogle", "--gold", str(gold), "--pred", str(pred)]
    code, out, err = _score(capsys, *argv)
    assert code == 2 and out == "" and "line 2" in err
    code, out, err = _score(capsys, *argv, "--skip-bad")
    assert code == 0 and json.loads(out)["em"] == 1.0 and "skipped=1" in err


def test_console_entry_prints_one_json_object(shared_data, tmp_path, repo_root):
    gold = shared_data / HOTPOT
    pred = _write_jsonl(tmp_path / "pred.jsonl", [{"id": "SYNTH_dev_0", "prediction": "yes"}])
    proc = subprocess.run(
        [sys.executable, "-m", "mtr_hpc", "score", "--benchmark", "2wiki", "--gold", str(gold)]
        + ["--pred", str(pred)],
        capture_output=True,
        text=True,
        cwd=repo_root,
    )
    # a HotpotQA file is not a 2Wiki file: the loader's typed error exits 2, nothing on stdout
    assert proc.returncode == 2 and proc.stdout == "" and "mtr score: error" in proc.stderr
    proc = subprocess.run(
        [sys.executable, "-m", "mtr_hpc", "score", "--benchmark", "hotpotqa", "--gold", str(gold)]
        + ["--pred", str(pred)],
        capture_output=True,
        text=True,
        cwd=repo_root,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1
    result = json.loads(lines[0])
    assert result["n"] == 100 and result["missing"] == 99 and result["em"] == pytest.approx(0.01)
